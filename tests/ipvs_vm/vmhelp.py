"""Helpers of the IPVS VM tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

#: Real servers and VIPs live on this dummy interface (the VM has no NIC).
DUMMY = "pka-ipvs0"


def run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def ipvsadm_rules() -> list[str]:
    """The IPVS table as ipvsadm's save format, sorted: the oracle we compare with."""
    return sorted(line.strip() for line in run("ipvsadm", "-Sn").splitlines() if line.strip())


def ipvsadm_conns(service: str) -> dict[str, int]:
    """Conns (connections scheduled since the real server was added) per real server."""
    out = run("ipvsadm", "-Ln", "--stats", "--exact", *service.split())
    conns = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "->" and parts[1][0].isdigit():
            conns[parts[1]] = int(parts[2])
    return conns


def start_keepalived(conf: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], IO[str]]:
    """keepalived's checker process only, in the foreground, logging to a file."""
    log = (workdir / "keepalived.log").open("w+")
    argv = ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--check"]
    argv += ["-f", str(conf), "-p", str(workdir / "ka.pid"), "-c", str(workdir / "kac.pid")]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log


def stop_keepalived(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def start_pykeepalived(conf: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], IO[str]]:
    """Our daemon, checker part only, in the foreground, debug log to a file
    (the debug log names every IPVS operation it performs)."""
    log = (workdir / "pykeepalived.log").open("w+")
    exe = Path(sys.executable).with_name("pykeepalived")
    argv = [str(exe), "-n", "-l", "-D", "-C", "-f", str(conf), "-p", str(workdir / "pka.pid")]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log


def read_log(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()
