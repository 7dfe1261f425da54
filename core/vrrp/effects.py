"""What a VRRP instance does to the host: VIPs, routes, rules, GARP and NA.

Kernel operations are idempotent and branch on errno, never on message
text: adding an address that is already there, or deleting one that is
gone, is not an error (a restart after a crash finds its VIPs in place).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any

from ..config.model import Route, Rule, VirtualAddress

log = logging.getLogger("pykeepalived.vrrp")

ETH_P_ARP = 0x0806
ICMPV6_NA = 136
ALL_NODES6 = "ff02::1"


class _IPRouteProxy:
    """Runs pyroute2's synchronous IPRoute on a thread of its own.

    pyroute2 >= 0.9 drives its sync API with an event loop of its own, which
    cannot run inside the daemon's loop thread.  Netlink requests to the
    local kernel take well under a millisecond, so callers wait for them.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr: Any = None

    def _get(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            def run() -> Any:
                result = getattr(self._get(), name)(*args, **kwargs)
                return list(result) if name.startswith("get_") else result

            return self._pool.submit(run).result(timeout=10)

        return call

    def close(self) -> None:
        def run() -> None:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

        self._pool.submit(run).result(timeout=10)
        self._pool.shutdown(wait=False)


class Netlink:
    """pyroute2 IPRoute for the daemon's namespace, opened on first use."""

    def __init__(self) -> None:
        self._ipr: _IPRouteProxy | None = None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            self._ipr = _IPRouteProxy()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def ifindex(self, name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None

    def mac(self, name: str) -> bytes | None:
        try:
            with open(f"/sys/class/net/{name}/address") as fh:
                return bytes.fromhex(fh.read().strip().replace(":", ""))
        except OSError:
            return None

    def primary_address(self, name: str, family: int) -> str | None:
        """The interface's first address of ``family`` (link-local for IPv6)."""
        idx = self.ifindex(name)
        if idx is None:
            return None
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        for msg in self.ipr.get_addr(family=fam, index=idx):
            addr = msg.get_attr("IFA_ADDRESS")
            if family == 6 and not ipaddress.ip_address(addr).is_link_local:
                continue
            return str(addr)
        return None

    def link_up(self, name: str) -> bool:
        try:
            with open(f"/sys/class/net/{name}/operstate") as fh:
                state = fh.read().strip()
        except OSError:
            return False
        return state in ("up", "unknown")

    # -- addresses ---------------------------------------------------------------
    def add_address(self, vip: VirtualAddress, default_dev: str) -> bool:
        from pyroute2.netlink.exceptions import NetlinkError

        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            log.error("cannot add %s: no interface %s", vip.address, dev)
            return False
        kwargs: dict[str, Any] = {
            "index": idx,
            "address": str(vip.address.ip),
            "prefixlen": vip.address.network.prefixlen,
        }
        if vip.label:
            kwargs["label"] = vip.label
        if vip.brd is not None:
            kwargs["broadcast"] = str(vip.brd)
        if vip.scope is not None:
            kwargs["scope"] = _SCOPES.get(vip.scope, vip.scope)
        if vip.address.version == 6:
            flags = 0x02  # IFA_F_NODAD: a VIP is owned by VRRP, not by DAD
            if vip.noprefixroute:
                flags |= 0x200
            kwargs["flags"] = flags
        elif vip.noprefixroute:
            kwargs["flags"] = 0x200
        try:
            self.ipr.addr("add", **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                log.error("cannot add %s to %s: %s", vip.address, dev, exc)
                return False
        return True

    def del_address(self, vip: VirtualAddress, default_dev: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            return
        try:
            self.ipr.addr(
                "del",
                index=idx,
                address=str(vip.address.ip),
                prefixlen=vip.address.network.prefixlen,
            )
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                log.error("cannot remove %s from %s: %s", vip.address, dev, exc)

    def has_address(self, address: str, dev: str) -> bool:
        idx = self.ifindex(dev)
        if idx is None:
            return False
        return any(msg.get_attr("IFA_ADDRESS") == address for msg in self.ipr.get_addr(index=idx))

    # -- routes and rules: applied with ip(8) words, as keepalived documents them --
    def routes(self, action: str, routes: Iterable[Route], dev: str) -> None:
        import subprocess

        for r in routes:
            words = list(r.words)
            if "dev" not in words and r.via is None:
                words += ["dev", dev]
            words = [w for w in words if w != "no_track"]
            cmd = [
                "ip",
                "-6" if ":" in (r.dest or "") else "-4",
                "route",
                "replace" if action == "add" else "del",
                *words,
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0 and action == "add":
                log.error("%s: %s", " ".join(cmd), res.stderr.strip())

    def rules(self, action: str, rules: Iterable[Rule]) -> None:
        import subprocess

        for r in rules:
            words = [w for w in r.words if w != "no_track"]
            cmd = ["ip", "rule", action, *words]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0 and action == "add" and "File exists" not in res.stderr:
                log.error("%s: %s", " ".join(cmd), res.stderr.strip())


_SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


# -- gratuitous ARP / unsolicited NA ---------------------------------------------


def garp_frame(mac: bytes, ip4: str) -> bytes:
    """A broadcast gratuitous ARP request for ``ip4`` from ``mac`` (RFC 5227 s3)."""
    ip = socket.inet_aton(ip4)
    eth = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\xff" * 6 + ip
    return eth + arp


def na_packet(mac: bytes, ip6: str) -> bytes:
    """ICMPv6 unsolicited Neighbour Advertisement (RFC 4861 s4.4), override set.

    The kernel fills in the checksum for raw ICMPv6 sockets.
    """
    target = socket.inet_pton(socket.AF_INET6, ip6)
    flags = 0x20000000  # Override; not Router, not Solicited
    opt = struct.pack("!BB", 2, 1) + mac  # Target Link-Layer Address
    return struct.pack("!BBHI", ICMPV6_NA, 0, 0, flags) + target + opt


def send_gratuitous(dev: str, mac: bytes, addresses: Iterable[str]) -> int:
    """Send one GARP per IPv4 and one NA per IPv6 address on ``dev``."""
    sent = 0
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    if v4:
        try:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
                s.bind((dev, ETH_P_ARP))
                for a in v4:
                    s.send(garp_frame(mac, a))
                    sent += 1
        except OSError as exc:
            log.warning("gratuitous ARP on %s failed: %s", dev, exc)
    if v6:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                idx = socket.if_nametoindex(dev)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
                for a in v6:
                    s.sendto(na_packet(mac, a), (ALL_NODES6, 0, 0, idx))
                    sent += 1
        except OSError as exc:
            log.warning("unsolicited NA on %s failed: %s", dev, exc)
    return sent
