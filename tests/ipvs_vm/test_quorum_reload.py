"""The pykeepalived daemon against real keepalived: quorum, sorry server, reload.

1. Quorum: three real servers of weight 1 behind one service with
   ``quorum 2``, ``hysteresis 0`` and a sorry server, TCP_CHECK every second.
   Their listeners stop one by one and come back.  keepalived (checker
   process) goes through the steps first and must reach each expected table
   (so the expectations are its behaviour); then our daemon
   (``pykeepalived -n -l -C``) goes through the same steps and must reach the
   same tables: the sorry server replaces the pool when quorum is lost and
   leaves when it is regained.  The quorum/sorry-server log lines of both
   must also match.
2. Reload (same daemon run: it takes ~25 s to start in the VM): it also runs
   a UDP service with two real servers; datagrams
   through the VIP create connection entries.  The configuration gains a
   third real server and one weight changes, then SIGHUP: the table must be
   the new one, reached with one edit and one add only (no delete + add of a
   kept real server), the kept real servers' counters and the connection
   entries must survive, and the log must show no "Removing service".
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from vmhelp import (
    ipvsadm_conns,
    ipvsadm_rules,
    read_log,
    run,
    start_keepalived,
    start_pykeepalived,
    stop_keepalived,
)

STEP_TIMEOUT = 30.0  # generous: Python is slow in the VM
HOLD = 1.5  # > delay_loop: a table that is reached must also stay

QUORUM_CONF = """
virtual_server 192.0.2.61 8082 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    quorum 2
    hysteresis 0
    sorry_server 198.51.100.11 8082
    real_server 198.51.100.20 8082 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 198.51.100.21 8082 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 198.51.100.22 8082 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
"""
Q_VIP, R_VIP = "192.0.2.61", "192.0.2.62"
Q_SERVICE = "-A -t 192.0.2.61:8082 -s rr"


def q_table(*reals: str) -> list[str]:
    return sorted([Q_SERVICE] + [f"-a -t 192.0.2.61:8082 -r {r}:8082 -m -w 1" for r in reals])


R20, R21, R22, SORRY = "198.51.100.20", "198.51.100.21", "198.51.100.22", "198.51.100.11"
#: (listener to stop (-) or start (+), table expected after it, hold it?)
QUORUM_STEPS: list[tuple[str, list[str], bool]] = [
    ("", q_table(R20, R21, R22), False),
    ("-" + R20, q_table(R21, R22), False),  # weight 2 >= quorum 2: kept
    ("-" + R21, q_table(SORRY), True),  # quorum lost: sorry server instead of the pool
    ("+" + R20, q_table(R20, R22), False),  # quorum regained: pool back, sorry gone
    ("+" + R21, q_table(R20, R21, R22), True),
]
#: keepalived's log lines about quorum and the sorry server (same wording).
QUORUM_LINE = re.compile(r"((?:Lost|Gained) quorum .*|.* sorry server .*|.* alive servers .*)$")


class Listeners:
    """One busybox httpd per real server address, to stop and start at will."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *addresses: str) -> None:
        for address in addresses:
            self.procs[address] = subprocess.Popen(
                ["busybox", "httpd", "-f", "-p", f"{address}:{self.port}", "-h", str(self.root)]
            )

    def stop(self, *addresses: str) -> None:
        for address in addresses:
            proc = self.procs.pop(address)
            proc.kill()
            proc.wait()


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    ls = Listeners(tmp_path, 8082)
    yield ls
    ls.stop(*list(ls.procs))


def reach(expected: list[str], what: str, log: IO[str], vip: str, hold: bool = False) -> None:
    """Poll the table of ``vip``'s service until it is ``expected`` (then,
    with ``hold``, check it stays so for a check period)."""

    def table() -> list[str]:
        return [r for r in ipvsadm_rules() if f" {vip}:" in r]

    deadline = time.monotonic() + STEP_TIMEOUT
    rules: list[str] = []
    while time.monotonic() < deadline:
        rules = table()
        if rules == expected:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(
            f"{what}: table never became {expected}; last {rules}\n{read_log(log)}"
        )
    if hold:
        time.sleep(HOLD)
        rules = table()
        assert rules == expected, f"{what}: table left {expected} for {rules}\n{read_log(log)}"


def quorum_steps(who: str, log: IO[str], listeners: Listeners) -> None:
    for change, expected, hold in QUORUM_STEPS:
        if change.startswith("-"):
            listeners.stop(change[1:])
        elif change.startswith("+"):
            listeners.start(change[1:])
        reach(expected, f"{who}, after {change or 'start'}", log, Q_VIP, hold)


def quorum_lines(text: str) -> list[str]:
    """The quorum/sorry-server lines of a log, without time stamp and name."""
    lines = []
    for line in text.splitlines():
        m = QUORUM_LINE.match(line.split(": ", 1)[-1])
        if m:
            lines.append(m.group(1))
    return lines


def stop_daemon(proc: subprocess.Popen[bytes], log: IO[str]) -> str:
    stop_keepalived(proc)
    text = read_log(log)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}"
    # Both remove their virtual servers when they stop.
    assert ipvsadm_rules() == [], f"left {ipvsadm_rules()}\n{text}"
    return text


RELOAD_CONF = """
virtual_server 192.0.2.62 53 {
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server 198.51.100.20 53 {
        weight %(w20)d
    }
    real_server 198.51.100.21 53 {
        weight 2
    }
%(more)s}
"""
MORE = """    real_server 198.51.100.22 53 {
        weight 1
    }
"""
R_SERVICE = "-u 192.0.2.62:53"


def send_udp(address: str, port: int, count: int) -> None:
    """Datagrams from distinct source ports: each is a new IPVS connection."""
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"q", (address, port))


def test_quorum_sorry_server_and_reload(listeners: Listeners, tmp_path: Path) -> None:
    # One daemon run for both parts: the daemon takes ~25 s to start in the VM.
    (tmp_path / "ka").mkdir()
    conf = tmp_path / "keepalived.conf"

    # 1a. keepalived: the expected tables are its tables.
    conf.write_text(QUORUM_CONF)
    listeners.start(R20, R21, R22)
    proc, log = start_keepalived(conf, tmp_path / "ka")
    try:
        quorum_steps("keepalived", log, listeners)
    finally:
        theirs = quorum_lines(stop_daemon(proc, log))

    # 1b. pykeepalived, same steps (plus the UDP service of part 2).
    conf.write_text(QUORUM_CONF + RELOAD_CONF % {"w20": 1, "more": ""})
    before_table = sorted(
        [
            f"-A {R_SERVICE} -s rr",
            f"-a {R_SERVICE} -r 198.51.100.20:53 -m -w 1",
            f"-a {R_SERVICE} -r 198.51.100.21:53 -m -w 2",
        ]
    )
    after_table = sorted(
        [
            f"-A {R_SERVICE} -s rr",
            f"-a {R_SERVICE} -r 198.51.100.20:53 -m -w 3",
            f"-a {R_SERVICE} -r 198.51.100.21:53 -m -w 2",
            f"-a {R_SERVICE} -r 198.51.100.22:53 -m -w 1",
        ]
    )
    proc, log = start_pykeepalived(conf, tmp_path)
    mark = 0
    try:
        quorum_steps("pykeepalived", log, listeners)

        # 2. Reload.
        reach(before_table, "pykeepalived, UDP service", log, R_VIP)
        send_udp(R_VIP, 53, 4)
        # The kernel's estimator folds per-CPU counters into what it reports
        # every 2 s.
        deadline = time.monotonic() + 10
        while sum((before := ipvsadm_conns(R_SERVICE)).values()) < 4:
            assert time.monotonic() < deadline, before
            time.sleep(0.25)
        assert before == {"198.51.100.20:53": 2, "198.51.100.21:53": 2}
        entries = run("ipvsadm", "-Lnc").count(f"{R_VIP}:53")
        assert entries == 4

        mark = len(read_log(log))
        conf.write_text(QUORUM_CONF + RELOAD_CONF % {"w20": 3, "more": MORE})
        proc.send_signal(signal.SIGHUP)
        reach(after_table, "pykeepalived, reloaded", log, R_VIP)
        deadline = time.monotonic() + STEP_TIMEOUT
        while "IPVS: add real server [198.51.100.22]" not in read_log(log)[mark:]:
            assert time.monotonic() < deadline, read_log(log)
            time.sleep(0.2)
        after = ipvsadm_conns(R_SERVICE)
        assert after == {**before, "198.51.100.22:53": 0}
        assert run("ipvsadm", "-Lnc").count(f"{R_VIP}:53") == entries
        # The quorum service went through the reload untouched.
        reach(QUORUM_STEPS[-1][1], "pykeepalived, quorum service after reload", log, Q_VIP)
    finally:
        text = stop_daemon(proc, log)

    reload_log = text[mark:].split("Shutting down service", 1)[0]
    assert "Reloading configuration" in reload_log, text
    assert "Removing service" not in reload_log, reload_log
    ops = sorted(re.findall(r"IPVS: (.*)$", reload_log, re.M))
    assert ops == [
        "add real server [198.51.100.22]:53 of [192.0.2.62]:udp:53",
        "edit real server [198.51.100.20]:53 of [192.0.2.62]:udp:53",
    ], reload_log

    vs = "[192.0.2.61]:tcp:8082"
    # Our run also has the UDP service of the reload part: compare this VS only.
    ours = [line for line in quorum_lines(text[:mark]) if vs in line]
    # keepalived 2.2.7 starts with quorum down and so logs a first "Gained
    # quorum" at start-up (weight sum already >= quorum); so do we.
    assert theirs[0] == f"Gained quorum 2+0=2 <= 3 for VS {vs}", theirs
    assert f"Lost quorum 2-0=2 > 1 for VS {vs}" in theirs, theirs
    assert ours == theirs, (theirs, ours)
