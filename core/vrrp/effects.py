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

from ..config.model import Route, Rule, VirtualAddress
from .rtnl import Rtnl, RtnlError

log = logging.getLogger("pykeepalived.vrrp")

ETH_P_ARP = 0x0806
ICMPV6_NA = 136
ALL_NODES6 = "ff02::1"
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200


class Netlink:
    """The kernel operations of VRRP instances, in the daemon's namespace.

    Addresses go through :class:`~.rtnl.Rtnl` (a small rtnetlink client,
    opened on first use) rather than pyroute2, which a VRRP-only daemon
    then never imports.
    """

    def __init__(self) -> None:
        self.rtnl = Rtnl()
        self._gratuitous: GratuitousSender | None = None

    def gratuitous(self, dev: str, mac: bytes, addresses: Iterable[str]) -> int:
        """GARP/NA for ``addresses`` on ``dev`` through shared sockets."""
        if self._gratuitous is None:
            self._gratuitous = GratuitousSender()
        return self._gratuitous.send(dev, mac, addresses)

    def forget_device(self, dev: str) -> None:
        """``dev`` is going away (a VMAC being deleted): close its sockets."""
        if self._gratuitous is not None:
            self._gratuitous.forget(dev)

    def close(self) -> None:
        if self._gratuitous is not None:
            self._gratuitous.close()
            self._gratuitous = None
        self.rtnl.close()

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
        try:
            found = self.rtnl.get_addresses(fam, idx)
        except OSError as exc:
            log.error("cannot list the addresses of %s: %s", name, exc)
            return None
        for info in found:
            addr = info.address
            if addr is None:
                continue
            if family == 6 and not ipaddress.ip_address(addr).is_link_local:
                continue
            return addr
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
        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            log.error("cannot add %s: no interface %s", vip.address, dev)
            return False
        flags = 0
        if vip.address.version == 6:
            flags |= IFA_F_NODAD  # a VIP is owned by VRRP, not by DAD
        if vip.noprefixroute:
            flags |= IFA_F_NOPREFIXROUTE
        scope = _scope_value(vip.scope)
        try:
            self.rtnl.add_address(
                idx,
                str(vip.address.ip),
                vip.address.network.prefixlen,
                label=vip.label or None,
                broadcast=str(vip.brd) if vip.brd is not None else None,
                scope=scope,
                flags=flags,
            )
        except RtnlError as exc:
            if exc.code != errno.EEXIST:
                log.error("cannot add %s to %s: %s", vip.address, dev, exc.strerror)
                return False
        except OSError as exc:
            log.error("cannot add %s to %s: %s", vip.address, dev, exc)
            return False
        return True

    def del_address(self, vip: VirtualAddress, default_dev: str) -> None:
        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            return
        try:
            self.rtnl.del_address(idx, str(vip.address.ip), vip.address.network.prefixlen)
        except RtnlError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                log.error("cannot remove %s from %s: %s", vip.address, dev, exc.strerror)
        except OSError as exc:
            log.error("cannot remove %s from %s: %s", vip.address, dev, exc)

    def has_address(self, address: str, dev: str) -> bool:
        idx = self.ifindex(dev)
        if idx is None:
            return False
        want = ipaddress.ip_address(address)
        return any(
            info.address is not None and ipaddress.ip_address(info.address) == want
            for info in self.rtnl.get_addresses(0, idx)
        )

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


_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


def _scope_value(scope: str | None) -> int:
    """An address scope as ip(8) names it (or its number), as rtnetlink wants it."""
    if scope is None:
        return 0
    if scope in _SCOPES:
        return _SCOPES[scope]
    try:
        value = int(scope, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        log.error("unknown address scope %r; using global", scope)
        return 0
    return value


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


class GratuitousSender:
    """GARP and unsolicited NA through one long-lived socket per interface.

    keepalived keeps a shared gratuitous ARP/NDISC channel for the same
    reason: closing an AF_PACKET socket waits for an RCU grace period (tens
    of milliseconds), so a socket per burst would block the event loop for
    seconds when hundreds of instances become MASTER together.
    """

    def __init__(self) -> None:
        self._arp: dict[str, socket.socket] = {}
        self._na: dict[str, tuple[socket.socket, int]] = {}

    def _arp_sock(self, dev: str) -> socket.socket:
        s = self._arp.get(dev)
        if s is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            try:
                s.bind((dev, ETH_P_ARP))
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            self._arp[dev] = s
        return s

    def _na_sock(self, dev: str) -> tuple[socket.socket, int]:
        entry = self._na.get(dev)
        if entry is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                idx = socket.if_nametoindex(dev)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            entry = self._na[dev] = (s, idx)
        return entry

    def send(self, dev: str, mac: bytes, addresses: Iterable[str]) -> int:
        """Send one GARP per IPv4 and one NA per IPv6 address on ``dev``."""
        sent = 0
        v4 = [a for a in addresses if ":" not in a]
        v6 = [a for a in addresses if ":" in a]
        # A socket of an interface that went away (and maybe came back with
        # another index) fails: drop it and retry once with a fresh one.
        for attempt in (0, 1):
            try:
                s = self._arp_sock(dev) if v4 else None
                for a in v4[sent:]:
                    assert s is not None
                    s.send(garp_frame(mac, a))
                    sent += 1
                break
            except OSError as exc:
                self._drop(self._arp, dev)
                if attempt:
                    log.warning("gratuitous ARP on %s failed: %s", dev, exc)
        done6 = 0
        for attempt in (0, 1):
            try:
                if v6:
                    s6, idx = self._na_sock(dev)
                    for a in v6[done6:]:
                        s6.sendto(na_packet(mac, a), (ALL_NODES6, 0, 0, idx))
                        done6 += 1
                break
            except OSError as exc:
                entry = self._na.pop(dev, None)
                if entry is not None:
                    entry[0].close()
                if attempt:
                    log.warning("unsolicited NA on %s failed: %s", dev, exc)
        return sent + done6

    def forget(self, dev: str) -> None:
        """Close the sockets of ``dev``."""
        self._drop(self._arp, dev)
        entry = self._na.pop(dev, None)
        if entry is not None:
            entry[0].close()

    @staticmethod
    def _drop(cache: dict[str, socket.socket], dev: str) -> None:
        s = cache.pop(dev, None)
        if s is not None:
            s.close()

    def close(self) -> None:
        for s in self._arp.values():
            s.close()
        for s, _ in self._na.values():
            s.close()
        self._arp.clear()
        self._na.clear()


def send_gratuitous(dev: str, mac: bytes, addresses: Iterable[str]) -> int:
    """One-shot :meth:`GratuitousSender.send` (opens and closes its sockets)."""
    sender = GratuitousSender()
    try:
        return sender.send(dev, mac, addresses)
    finally:
        sender.close()
