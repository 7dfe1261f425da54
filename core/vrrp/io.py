"""VRRP sockets: one receiver per (interface, family), one sender per instance.

A receiver reads every VRRP packet arriving on its interface (multicast and
unicast) and hands it to the instances by VRID, so hundreds of instances on
one interface cost one socket and one read per packet, not hundreds.

IPv4 raw sockets deliver the IP header, which gives TTL and destination;
IPv6 raw sockets deliver them as ancillary data (hop limit, packet info).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from .packet import IPPROTO_AH, IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TOS, VRRP_TTL

log = logging.getLogger("pykeepalived.vrrp")

IP_MULTICAST_ALL = 49
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)
_MCAST_V6_PACKED = VRRP_MCAST_V6.packed
#: Larger than any VRRP packet (IPv6: 8 + 255 * 16 bytes; IPv4 with AH:
#: 20 + 24 + 8 + 255 * 4 + 8 bytes).
RECV_SIZE = 8192
#: See the comment above :meth:`Receiver._readable`.
BATCH_INTERVAL = 0.02


class RawPacket:
    """One received packet, before VRRP decoding.

    Addresses are kept as packed bytes; the :mod:`ipaddress` objects are
    built only when asked for (a rejection message, a first advert), since
    at hundreds of adverts per second building them for every packet is a
    noticeable share of the receive path.
    """

    __slots__ = (
        "_dst",
        "_src",
        "datagram",
        "dst_raw",
        "family",
        "payload",
        "proto",
        "src_raw",
        "ttl",
        "vrid",
    )

    def __init__(
        self,
        family: int,
        src_raw: bytes,
        dst_raw: bytes,
        ttl: int | None,
        proto: int,
        datagram: bytes,
        payload: bytes,
        vrid: int,
    ) -> None:
        self.family = family  # 4 or 6
        self.src_raw = src_raw
        self.dst_raw = dst_raw
        self.ttl = ttl
        self.proto = proto
        #: The whole IPv4 datagram (for AH) or the IPv6 payload.
        self.datagram = datagram
        #: The VRRP payload (after IP and AH headers).
        self.payload = payload
        self.vrid = vrid
        self._src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self._dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    @property
    def src(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if self._src is None:
            self._src = ipaddress.ip_address(self.src_raw)
        return self._src

    @property
    def dst(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if self._dst is None:
            self._dst = ipaddress.ip_address(self.dst_raw)
        return self._dst


Handler = Callable[[RawPacket], None]


class Receiver:
    """Reads VRRP (and AH) packets on one interface for one address family."""

    def __init__(
        self,
        ifname: str,
        family: int,
        groups: set[str],
        with_ah: bool,
        *,
        batch_interval: float = BATCH_INTERVAL,
    ) -> None:
        self.ifname = ifname
        self.family = family
        self._handlers: dict[int, list[Handler]] = {}
        self.ifindex = socket.if_nametoindex(ifname)
        self.socks: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_interval = batch_interval
        self._batching = False
        self._last_wake = -1e9
        self._poll_handle: asyncio.TimerHandle | None = None
        protos = [IPPROTO_VRRP, IPPROTO_AH] if (with_ah and family == 4) else [IPPROTO_VRRP]
        self.groups: set[str] = set()
        for proto in protos:
            self.socks.append(self._open(proto))
        for g in groups or {str(VRRP_MCAST_V4 if family == 4 else VRRP_MCAST_V6)}:
            self.join(g)

    def join(self, group: str) -> None:
        """Receive adverts sent to multicast ``group`` (instances may use
        their own group: vrrp_mcast_group4/6, mcast_dst_ip)."""
        if group in self.groups:
            return
        self.groups.add(group)
        for s in self.socks:
            if self.family == 4:
                req = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
                req += struct.pack("@i", self.ifindex)
                opt = (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP)
            else:
                req = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", self.ifindex)
                opt = (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP)
            with contextlib.suppress(OSError):  # EADDRINUSE: joined already
                s.setsockopt(*opt, req)

    def _open(self, proto: int) -> socket.socket:
        if self.family == 4:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        return s

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._listen()

    def _listen(self) -> None:
        assert self._loop is not None
        for s in self.socks:
            self._loop.add_reader(s.fileno(), self._readable, s)
        self._batching = False

    def close(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        for s in self.socks:
            if self._loop is not None and not self._batching:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(s.fileno())
            s.close()
        self.socks = []

    @property
    def handlers(self) -> dict[int, list[Handler]]:
        return self._handlers

    @handlers.setter
    def handlers(self, handlers: dict[int, list[Handler]]) -> None:
        # The manager moves the handlers of a receiver it replaces (to add
        # an AH socket): their instances must drain this one from now on.
        self._handlers = handlers
        for lst in handlers.values():
            for handler in lst:
                self._attach(handler, self.drain)

    @staticmethod
    def _attach(handler: Handler, drain: Callable[[], int] | None) -> None:
        attach = getattr(getattr(handler, "__self__", None), "attach_receiver", None)
        if attach is not None:
            attach(drain)

    def add(self, vrid: int, handler: Handler) -> None:
        self._handlers.setdefault(vrid, []).append(handler)
        self._attach(handler, self.drain)

    def remove(self, vrid: int, handler: Handler) -> None:
        lst = self._handlers.get(vrid, [])
        if handler in lst:
            lst.remove(handler)
            self._attach(handler, None)
        if not lst:
            self._handlers.pop(vrid, None)

    # -- reading ------------------------------------------------------------------
    #
    # Waking the loop costs far more than handling an advert (tens of
    # microseconds: the selector, the loop's bookkeeping, cold caches), and
    # with hundreds of instances adverts arrive one by one.  So while they
    # come closer together than ``batch_interval``, the receiver stops
    # watching its sockets and reads them on a timer instead, every
    # ``batch_interval``; when a timed read finds nothing it goes back to
    # waking per packet.  An advert therefore waits at most
    # ``batch_interval`` in the socket; an instance reads what is queued
    # (:meth:`drain`) before it declares its master down, so the wait never
    # causes a takeover, it can only make one later by that much.

    def _readable(self, s: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._read(s, 64)  # bounded batch, then yield to the loop
        if now - self._last_wake < self.batch_interval and not self._batching and self.socks:
            for sock in self.socks:
                loop.remove_reader(sock.fileno())
            self._batching = True
            self._poll_handle = loop.call_at(now + self.batch_interval, self._poll)
        self._last_wake = now

    def _poll(self) -> None:
        self._poll_handle = None
        if not self.socks:
            return
        assert self._loop is not None
        if self.drain():
            self._poll_handle = self._loop.call_at(
                self._loop.time() + self.batch_interval, self._poll
            )
        else:
            self._last_wake = self._loop.time()
            self._listen()

    def drain(self) -> int:
        """Read and dispatch every packet queued on the sockets now."""
        n = 0
        for s in self.socks:
            n += self._read(s, 4096)
        return n

    def _read(self, s: socket.socket, limit: int) -> int:
        handlers = self._handlers
        v4 = self.family == 4
        n = 0
        while n < limit:
            try:
                if v4:
                    pkt = self._parse4(s.recv(RECV_SIZE))
                else:
                    data, anc, _flags, addr = s.recvmsg(RECV_SIZE, 256)
                    pkt = self._parse6(data, anc, addr)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("VRRP receive on %s failed: %s", self.ifname, exc)
                break
            n += 1
            if pkt is None:
                continue
            lst = handlers.get(pkt.vrid)
            if not lst:
                continue
            for handler in lst if len(lst) == 1 else list(lst):
                try:
                    handler(pkt)
                except Exception:  # a handler bug must not stop the receiver
                    log.exception("VRRP handler for VRID %d on %s failed", pkt.vrid, self.ifname)
        return n

    def _parse4(self, data: bytes) -> RawPacket | None:
        if len(data) < 20:
            return None
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        off = ihl + (24 if proto == IPPROTO_AH else 0)
        if len(data) < off + 2:
            return None
        return RawPacket(
            4,
            data[12:16],
            data[16:20],
            data[8],
            proto,
            data,
            data[off:],
            data[off + 1],
        )

    def _parse6(
        self, data: bytes, anc: list[tuple[int, int, bytes]], addr: tuple[str, ...]
    ) -> RawPacket | None:
        if len(data) < 2:
            return None
        ttl: int | None = None
        dst = _MCAST_V6_PACKED
        for level, typ, cdata in anc:
            if level == socket.IPPROTO_IPV6 and typ == IPV6_HOPLIMIT and len(cdata) >= 4:
                ttl = struct.unpack("@i", cdata[:4])[0]
            elif level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(cdata) >= 16:
                dst = cdata[:16]
        src = socket.inet_pton(socket.AF_INET6, addr[0].split("%", 1)[0])
        return RawPacket(6, src, dst, ttl, IPPROTO_VRRP, data, data, data[1])


class Sender:
    """Sends one instance's adverts (multicast or to each unicast peer)."""

    def __init__(self, ifname: str, family: int, src: str | None, *, hdrincl: bool = False) -> None:
        self.ifname = ifname
        self.family = family
        self.src = src
        self.ifindex = socket.if_nametoindex(ifname)
        if family == 4:
            proto = socket.IPPROTO_RAW if hdrincl else IPPROTO_VRRP
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            if not hdrincl:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, VRRP_TOS)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                mreqn = (
                    socket.inet_aton("0.0.0.0")
                    + socket.inet_aton(src or "0.0.0.0")
                    + struct.pack("@i", self.ifindex)
                )
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                if src:
                    s.bind((src, 0))
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_VRRP)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            # The kernel computes the VRRP checksum over the IPv6 pseudo-header.
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            if src:
                s.bind((src, 0, 0, self.ifindex if ipaddress.IPv6Address(src).is_link_local else 0))
        s.setblocking(False)
        self.sock = s

    def send(self, payload: bytes, dst: str) -> None:
        try:
            if self.family == 4:
                self.sock.sendto(payload, (dst, 0))
            else:
                scope = (
                    self.ifindex
                    if ipaddress.IPv6Address(dst).is_link_local or dst.startswith("ff02")
                    else 0
                )
                self.sock.sendto(payload, (dst, 0, 0, scope))
        except (BlockingIOError, InterruptedError):
            log.warning("VRRP send buffer full on %s; advert dropped", self.ifname)
        except OSError as exc:
            log.warning("VRRP send to %s on %s failed: %s", dst, self.ifname, exc)

    def close(self) -> None:
        self.sock.close()
