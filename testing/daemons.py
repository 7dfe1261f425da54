"""Shared helpers for the VRRP namespace tests and benchmarks.

A :class:`Node` is one VRRP daemon in one lab host: pykeepalived
(:class:`PyNode`) or the reference keepalived (:class:`KaNode`).  Both write
their console log to a file in the node's work directory, so tests can count
``Entering MASTER STATE`` lines, and both are started through
``host.popen`` so the lab kills them at teardown whatever happens.

:func:`instance` renders one ``vrrp_instance`` block; :func:`holders` /
:func:`wait_holder` tell which hosts hold a VIP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pykeepalived.testing.lab import Host

PYKEEPALIVED = str(Path(sys.executable).with_name("pykeepalived"))
KEEPALIVED = "/usr/sbin/keepalived"


def instance(
    name: str = "VI_1",
    *,
    vrid: int = 51,
    priority: int = 100,
    state: str = "BACKUP",
    interface: str = "eth0",
    advert_int: float = 1,
    version: int | None = None,
    vips: Sequence[str] = ("192.0.2.100/24",),
    auth: tuple[str, str] | None = None,
    nopreempt: bool = False,
    preempt_delay: float | None = None,
    unicast_src: str | None = None,
    unicast_peers: Sequence[str] = (),
    native_ipv6: bool = False,
    extra: str = "",
) -> str:
    """One ``vrrp_instance`` block, the same text for keepalived and for us."""
    lines = [
        f"vrrp_instance {name} {{",
        f"    state {state}",
        f"    interface {interface}",
        f"    virtual_router_id {vrid}",
        f"    priority {priority}",
        f"    advert_int {advert_int:g}",
    ]
    if version is not None:
        lines.append(f"    version {version}")
    if native_ipv6:
        lines.append("    native_ipv6")
    if nopreempt:
        lines.append("    nopreempt")
    if preempt_delay is not None:
        lines.append(f"    preempt_delay {preempt_delay:g}")
    if auth is not None:
        lines += [
            "    authentication {",
            f"        auth_type {auth[0]}",
            f"        auth_pass {auth[1]}",
            "    }",
        ]
    if unicast_src is not None:
        lines.append(f"    unicast_src_ip {unicast_src}")
    if unicast_peers:
        lines.append("    unicast_peer {")
        lines += [f"        {p}" for p in unicast_peers]
        lines.append("    }")
    lines.append("    virtual_ipaddress {")
    lines += [f"        {v}" for v in vips]
    lines.append("    }")
    if extra:
        lines.append(extra)
    lines.append("}")
    return "\n".join(lines) + "\n"


def sync_group(name: str, members: Iterable[str]) -> str:
    body = "\n".join(f"        {m}" for m in members)
    return f"vrrp_sync_group {name} {{\n    group {{\n{body}\n    }}\n}}\n"


def global_defs(router_id: str, extra: str = "") -> str:
    return f"global_defs {{\n    router_id {router_id}\n{extra}}}\n"


class Node:
    """One VRRP daemon in a lab host; subclasses say which program."""

    kind = "?"

    def __init__(self, host: Host, workdir: Path, label: str | None = None) -> None:
        self.host = host
        self.label = label or f"{self.kind}-{host.name}"
        self.dir = workdir / self.label
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "keepalived.conf"
        self.log = self.dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        #: More command-line options (``--http-listen ...``).
        self.extra_args: list[str] = []

    # -- lifecycle ------------------------------------------------------------
    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, config: str) -> Node:
        self.write(config)
        self.mark()
        with open(self.log, "ab") as logf:
            self.proc = self.host.popen(self.argv(), stdout=logf, stderr=subprocess.STDOUT)
        return self

    def write(self, config: str) -> None:
        self.conf.write_text(config)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9: no goodbye advert, VIPs stay on the dead host."""
        if self.running():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(5)

    def terminate(self, wait: float = 10.0) -> int | None:
        """SIGTERM and wait for the exit code."""
        if not self.running():
            return None if self.proc is None else self.proc.returncode
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(wait)

    def reload(self, config: str) -> None:
        self.write(config)
        self.mark()
        self.signal(signal.SIGHUP)

    # -- log ------------------------------------------------------------------
    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> None:
        """Start counting log lines from here (see :meth:`since`)."""
        self._log_offset = len(self.text())

    def since(self) -> str:
        return self.text()[self._log_offset :]

    def count(self, needle: str, *, since_mark: bool = True) -> int:
        text = self.since() if since_mark else self.text()
        return sum(needle in line for line in text.splitlines())

    def wait_log(self, needle: str, timeout: float = 10.0, *, since_mark: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(needle, since_mark=since_mark):
                return
            if not self.running():
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.label}: no {needle!r} in log within {timeout}s\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])


class PyNode(Node):
    """pykeepalived, with a status socket."""

    kind = "pyk"

    @property
    def status_socket(self) -> Path:
        return self.dir / "status.sock"

    def argv(self) -> list[str]:
        return [
            PYKEEPALIVED,
            "-n",
            "-l",
            "-f",
            str(self.conf),
            "-p",
            str(self.dir / "pid"),
            "--status-socket",
            str(self.status_socket),
            *self.extra_args,
        ]

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The daemon's JSON status (unix sockets work across namespaces)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(timeout)
                    s.connect(str(self.status_socket))
                    # name the request: otherwise the daemon waits 0.1 s for one
                    s.sendall(b"status\n")
                    buf = b""
                    while chunk := s.recv(65536):
                        buf += chunk
                data: dict[str, Any] = json.loads(buf)
                return data
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def instance_status(self, name: str) -> dict[str, Any]:
        for inst in self.status()["vrrp_instances"]:
            if inst["name"] == name:
                return dict(inst)
        raise KeyError(name)


class KaNode(Node):
    """The reference keepalived 2.2.7, VRRP only, pid files of its own."""

    kind = "ka"

    def argv(self) -> list[str]:
        return [
            KEEPALIVED,
            "-n",
            "-l",
            "-D",
            "--vrrp",
            "-f",
            str(self.conf),
            "-p",
            str(self.dir / "keepalived.pid"),
            "-r",
            str(self.dir / "vrrp.pid"),
        ]

    def start(self, config: str) -> Node:
        # After a kill -9 the pid files remain; keepalived would refuse to
        # start if a recycled pid in them looked alive ("already running").
        for name in ("keepalived.pid", "vrrp.pid"):
            (self.dir / name).unlink(missing_ok=True)
        return super().start(config)

    def kill(self) -> None:
        """kill -9 the whole process group (parent and VRRP child)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        # The VRRP child is reparented, not waited for by us: wait until gone.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)

    def terminate(self, wait: float = 10.0) -> int | None:
        if not self.running():
            return None if self.proc is None else self.proc.returncode
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(wait)


# -- VIPs ---------------------------------------------------------------------
def log_time(node: Node, needle: str, *, since_mark: bool = False) -> float:
    """Wall-clock time of the first log line containing ``needle`` (after
    the node's mark with ``since_mark``): a daemon's own time stamp, which a
    slow test process does not delay."""
    for line in (node.since() if since_mark else node.text()).splitlines():
        if needle in line:
            # "Sun Nov 22 06:45:54.602 pykeepalived[8234]: ..."
            stamp = " ".join(line.split()[:4])
            t = time.strptime(stamp.split(".")[0], "%a %b %d %H:%M:%S")
            base = time.mktime(time.localtime()[:1] + t[1:6] + (0, 0, -1))
            return base + float("0." + stamp.split(".")[1])
    raise AssertionError(f"{node.label}: no {needle!r} in log\n{node.tail()}")


def holders(hosts: Iterable[Host], vip: str, dev: str = "eth0") -> list[str]:
    """Names of the hosts that have ``vip`` (an address without prefix) on ``dev``."""
    return [h.name for h in hosts if vip in h.addresses(dev)]


def wait_holder(
    hosts: Sequence[Host],
    vip: str,
    want: str | None,
    timeout: float,
    interval: float = 0.02,
    dev: str = "eth0",
) -> float:
    """Seconds until exactly ``want`` (or nobody, for None) holds ``vip``."""
    t0 = time.monotonic()
    expected = [] if want is None else [want]
    last: list[str] = []
    while True:
        last = holders(hosts, vip, dev)
        if last == expected:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{vip}: holders {last}, expected {expected} within {timeout}s")
        time.sleep(interval)


def assert_single_holder(
    hosts: Sequence[Host], vip: str, want: str, duration: float = 2.0, interval: float = 0.1
) -> None:
    """``want`` and only ``want`` holds ``vip`` for ``duration`` seconds."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        got = holders(hosts, vip)
        assert got == [want], f"{vip}: holders {got}, expected only {want}"
        time.sleep(interval)


def bare(vip: str) -> str:
    return vip.split("/", 1)[0]


def dump_logs(nodes: Iterable[Node]) -> str:
    return "\n".join(f"--- {n.label}\n{n.tail(60)}" for n in nodes)
