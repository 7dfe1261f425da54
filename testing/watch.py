"""A small observer inside a lab host: what the kernel there saw, stamped.

:class:`Watcher` runs a child process in the host's namespace with an
rtnetlink socket (addresses added and removed, IPv4 and IPv6) and, unless
told not to, raw VRRP sockets (adverts heard, with source, VRID and
priority).  Every event carries CLOCK_MONOTONIC, the clock of the caller's
``time.monotonic()``, so failover and ownership times are measured from the
kernel's point of view instead of by polling ``ip addr`` (the benchmarks'
failover times, the soak's VIP-ownership invariants).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from pykeepalived.testing.lab import Host

__all__ = ["Event", "Watcher"]

#: Runs in the host: "T ADV SRC VRID PRIO", "T ADDR+ ADDR", "T ADDR- ADDR".
_CHILD = r"""
import select, socket, struct, sys, time
dev, adverts = sys.argv[1], sys.argv[2] == "1"
out = sys.stdout
socks = {}
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # reload storms
nl.bind((0, 0x10 | 0x100))  # RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
socks[nl.fileno()] = ("nl", nl)
if adverts:
    ifindex = socket.if_nametoindex(dev)
    v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    v4.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    v4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                  socket.inet_aton("224.0.0.18") + socket.inet_aton("0.0.0.0")
                  + struct.pack("@i", ifindex))
    socks[v4.fileno()] = ("v4", v4)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
    v6.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                  socket.inet_pton(socket.AF_INET6, "ff02::12") + struct.pack("@I", ifindex))
    socks[v6.fileno()] = ("v6", v6)
print("READY", time.monotonic(), flush=True)
while True:
    for fd in select.select(list(socks), [], [])[0]:
        kind, s = socks[fd]
        if kind == "v4":
            data = s.recv(65535)
            now = time.monotonic()
            ihl = (data[0] & 15) * 4
            src = socket.inet_ntoa(data[12:16])
            out.write("%f ADV %s %d %d\n" % (now, src, data[ihl + 1], data[ihl + 2]))
        elif kind == "v6":
            data, addr = s.recvfrom(65535)
            now = time.monotonic()
            out.write("%f ADV %s %d %d\n" % (now, addr[0].split("%")[0], data[1], data[2]))
        else:
            data = s.recv(65535)
            now = time.monotonic()
            off = 0
            while off + 16 <= len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if ln < 16:
                    break
                if typ in (20, 21):
                    fam = data[off + 16]
                    a = off + 24
                    while a + 4 <= off + ln:
                        alen, atyp = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atyp == 1:  # IFA_ADDRESS
                            raw = data[a + 4 : a + alen]
                            text = socket.inet_ntop(socket.AF_INET if fam == 2 else socket.AF_INET6, raw)
                            out.write("%f %s %s\n" % (now, "ADDR+" if typ == 20 else "ADDR-", text))
                        a += (alen + 3) & ~3
                off += (ln + 3) & ~3
    out.flush()
"""


@dataclass
class Event:
    """``kind`` is ADV (``args``: source, VRID, priority), ADDR+ or ADDR- (the address)."""

    t: float
    kind: str
    args: list[str]


class Watcher:
    """Adverts and address changes seen in one host, with monotonic stamps."""

    def __init__(self, host: Host, dev: str = "eth0", *, adverts: bool = True) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self.proc = host.popen(
            [sys.executable, "-I", "-S", "-u", "-c", _CHILD, dev, "1" if adverts else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("READY"):
            raise RuntimeError(f"{host.name}: watcher failed to start: {first!r}")
        self._thread = threading.Thread(target=self._read, daemon=True, name="lab-watch")
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) < 2:
                continue
            ev = Event(float(parts[0]), parts[1], parts[2:])
            with self._lock:
                self.events.append(ev)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def has_addr(self, addr: str) -> bool:
        """Whether ``addr`` is on the host, by the last event about it."""
        present = False
        for ev in self.snapshot():
            if ev.kind in ("ADDR+", "ADDR-") and ev.args[0] == addr:
                present = ev.kind == "ADDR+"
        return present

    def wait_addr(self, addr: str, since: float, timeout: float, added: bool = True) -> Event:
        """The first ADDR+ (or ADDR-) of ``addr`` stamped after ``since``."""
        want = "ADDR+" if added else "ADDR-"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.snapshot():
                if ev.t >= since and ev.kind == want and ev.args[0] == addr:
                    return ev
            time.sleep(0.005)
        raise TimeoutError(f"{addr} not {'added' if added else 'removed'} within {timeout}s")

    def last_advert(self, src: str, before: float, vrid: int | None = None) -> Event | None:
        """The last advert from ``src`` heard before ``before``."""
        best = None
        for ev in self.snapshot():
            if (
                ev.kind == "ADV"
                and ev.args[0] == src
                and ev.t <= before
                and (vrid is None or int(ev.args[1]) == vrid)
            ):
                best = ev
        return best

    def first_advert(
        self, src: str, since: float, prio: int | None = None, vrid: int | None = None
    ) -> Event | None:
        """The first advert from ``src`` heard after ``since``."""
        for ev in self.snapshot():
            if (
                ev.kind == "ADV"
                and ev.args[0] == src
                and ev.t >= since
                and (prio is None or int(ev.args[2]) == prio)
                and (vrid is None or int(ev.args[1]) == vrid)
            ):
                return ev
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
