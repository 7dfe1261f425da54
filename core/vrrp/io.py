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
from typing import Any

from pykeepalived.core.vrrp.packet import (
    IPPROTO_AH,
    IPPROTO_VRRP,
    VRRP_MCAST_V4,
    VRRP_MCAST_V6,
    VRRP_TOS,
    VRRP_TTL,
)
from pykeepalived.core.vrrp.timers import EARLY, Timer, TimerQueue, timer_queue

log = logging.getLogger("pykeepalived.vrrp")

IP_MULTICAST_ALL = 49
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78  # linux/in6.h; not in Python's socket module
_MCAST_V6_PACKED = VRRP_MCAST_V6.packed
#: Larger than any VRRP packet (IPv6: 8 + 255 * 16 bytes; IPv4 with AH:
#: 20 + 24 + 8 + 255 * 4 + 8 bytes).
RECV_SIZE = 8192
#: See the comment above :meth:`Receiver._readable`.
BATCH_INTERVAL = 0.02
#: Receive buffer per socket: ~16k adverts, 0.4 s of a 40k packets/s flood.
RECV_BUFFER = 16 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
#: See :meth:`Receiver.drain`.
DRAIN_DEDUP = 0.0005


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
        "check",
        "datagram",
        "dst_raw",
        "family",
        "key",
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
        key: object = None,
        check: object = None,
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
        #: What a :class:`RepeatSlot` for this packet matches (None: never).
        self.key = key
        self.check = check
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


class RepeatSlot:
    """Exact repeats of one accepted advert, stamped instead of dispatched.

    A backup's steady state is its master's advert, every interval, for
    each instance.  Handled one by one, each would wake the instance's
    timer machinery for nothing but moving a deadline.  With a slot, a
    repeat costs one dictionary lookup and a time stamp, and one watchdog
    timer per receiver (:meth:`Receiver._watchdog`) stands in for the
    master-down timers of all its stamped instances: it fires only when
    the oldest stamp is about to run out, typically a few times a second
    whatever the number of instances.

    Registered by an instance whose state machine agreed
    (:meth:`~.fsm.VrrpMachine.offer_repeat`); the receiver matches arriving
    packets against ``key`` (IPv4: the datagram from the source address on;
    IPv6: source and payload) and ``check`` (IPv4: the TTL; IPv6: the
    ancillary data, hop limit and destination), and for a match only
    records the time and counts it.  When the machine withdraws the slot
    (``live`` false) the receiver forgets it and dispatches again.
    """

    __slots__ = ("applied", "check", "expire", "hits", "hold", "key", "live", "mdi", "seen")

    def __init__(
        self,
        key: object,
        check: object,
        now: float,
        expire: Callable[[float], None],
        mdi: float,
    ) -> None:
        self.key = key
        self.check = check
        self.seen = now
        self.applied = now
        self.hits = 0
        self.live = False
        #: While the slot is live the receiver's watchdog, not the instance,
        #: keeps the master-down deadline (:attr:`due`) and then calls
        #: ``expire(now)``.  The instance keeps ``mdi`` (its
        #: Master_Down_Interval) and ``hold`` (its machine's deadline, which
        #: includes the repeats up to ``applied``) current.
        self.mdi = mdi
        self.hold = 0.0
        self.expire = expire

    @property
    def due(self) -> float:
        """The machine's deadline, moved on by repeats it has not seen yet."""
        if self.seen > self.applied:
            due = self.seen + self.mdi
            if due > self.hold:
                return due
        return self.hold


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
        #: Packets no instance saw: too short to carry a VRID, or a VRID no
        #: instance here uses (keepalived ignores both without a counter).
        self.drops = {"short": 0, "unknown_vrid": 0}
        self._repeats: dict[object, RepeatSlot] = {}
        self._timers: TimerQueue | None = None
        self._watchdog_timer: Timer | None = None
        self._watchdog_when = float("inf")
        self.ifindex = socket.if_nametoindex(ifname)
        self.socks: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_interval = batch_interval
        self._batching = False
        self._last_wake = -1e9
        self._drained_at = -1e9
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
        # Reads are batched every BATCH_INTERVAL under load: the buffer must hold
        # what arrives meanwhile, or the master's adverts are dropped with the
        # junk of a flood (bench/hostile: 40k packets/s overflowed the 208 KiB
        # that net.core.rmem_max allows).  As root, SO_RCVBUFFORCE passes the cap.
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECV_BUFFER)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        s.setblocking(False)
        return s

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timers = timer_queue(loop)
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
        if self._watchdog_timer is not None:
            self._watchdog_timer.cancel()
            self._watchdog_timer = None
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
                self._attach(handler, self)

    @staticmethod
    def _attach(handler: Handler, receiver: Receiver | None) -> None:
        attach = getattr(getattr(handler, "__self__", None), "attach_receiver", None)
        if attach is not None:
            attach(receiver)

    def add(self, vrid: int, handler: Handler) -> None:
        self._handlers.setdefault(vrid, []).append(handler)
        self._attach(handler, self)

    def remove(self, vrid: int, handler: Handler) -> None:
        lst = self._handlers.get(vrid, [])
        if handler in lst:
            lst.remove(handler)
            self._attach(handler, None)
        if not lst:
            self._handlers.pop(vrid, None)

    @property
    def batching(self) -> bool:
        """True while the sockets are read on a timer (packets may be queued)."""
        return self._batching

    def add_repeat(self, slot: RepeatSlot) -> None:
        self._repeats[slot.key] = slot
        self.watch(slot.due)

    def drop_repeat(self, slot: RepeatSlot) -> None:
        if self._repeats.get(slot.key) is slot:
            del self._repeats[slot.key]

    def watch(self, due: float) -> None:
        """Make the watchdog look at the slots no later than ``due``."""
        if due < self._watchdog_when and self._timers is not None:
            if self._watchdog_timer is not None:
                self._watchdog_timer.cancel()
            self._watchdog_when = due
            self._watchdog_timer = self._timers.call_at(due, self._watchdog)

    def _watchdog(self) -> None:
        """Master-down deadlines of the stamped instances (see RepeatSlot)."""
        assert self._timers is not None
        self._watchdog_timer = None
        self._watchdog_when = float("inf")
        self.drain()  # stamps first: adverts may wait while reads are batched
        now = self._timers.now()
        limit = now + EARLY
        expired: list[RepeatSlot] = []
        nearest = float("inf")
        for slot in self._repeats.values():
            if not slot.live:
                continue
            due = slot.hold
            if slot.seen > slot.applied and slot.seen + slot.mdi > due:
                due = slot.seen + slot.mdi
            if due <= limit:
                expired.append(slot)
            elif due < nearest:
                nearest = due
        for slot in expired:
            try:
                slot.expire(now)
            except Exception:  # one instance's failure must not stop the others
                log.exception("VRRP master-down handling on %s failed", self.ifname)
            if slot.live and self._repeats.get(slot.key) is slot:
                # Still stamped (a sync-group member waiting for its group):
                # its instance has moved ``hold`` on.
                due = slot.due
                if due <= limit:  # defensive: never spin on a stuck slot
                    due = now + slot.mdi
                nearest = min(nearest, due)
        if nearest != float("inf"):
            self.watch(nearest)

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
        if self._read_all():
            self._poll_handle = self._loop.call_at(
                self._loop.time() + self.batch_interval, self._poll
            )
        else:
            self._last_wake = self._loop.time()
            self._listen()

    def drain(self) -> int:
        """Read and dispatch every packet queued on the sockets now.

        Instances' timers often fall due together (their masters' adverts
        arrived in one batch): a drain right after another (within
        ``DRAIN_DEDUP`` seconds) would only find the sockets empty and is
        skipped.
        """
        assert self._loop is not None
        if self._loop.time() - self._drained_at < DRAIN_DEDUP:
            return 0
        return self._read_all()

    def _read_all(self) -> int:
        n = 0
        for s in self.socks:
            n += self._read(s, 4096)
        assert self._loop is not None
        self._drained_at = self._loop.time()
        return n

    def _read(self, s: socket.socket, limit: int) -> int:
        # The hot path of a backup: most packets repeat an advert already
        # accepted (see RepeatSlot) and cost one dict lookup and a stamp.
        assert self._loop is not None
        now = self._loop.time()
        repeats = self._repeats
        v4 = self.family == 4
        recv = s.recv
        n = 0
        while n < limit:
            try:
                if v4:
                    data = recv(RECV_SIZE)
                    slot = repeats.get(data[12:])
                    if slot is not None:
                        if slot.live and data[8] == slot.check and data[0] == 0x45:
                            slot.seen = now
                            slot.hits += 1
                            n += 1
                            continue
                        if not slot.live:
                            del repeats[slot.key]
                    pkt = self._parse4(data)
                else:
                    data, anc, _flags, addr = s.recvmsg(RECV_SIZE, 256)
                    key = (addr[0], data)
                    slot = repeats.get(key)
                    if slot is not None:
                        if slot.live and anc == slot.check:
                            slot.seen = now
                            slot.hits += 1
                            n += 1
                            continue
                        if not slot.live:
                            del repeats[slot.key]
                    pkt = self._parse6(data, anc, addr, key)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("VRRP receive on %s failed: %s", self.ifname, exc)
                break
            n += 1
            if pkt is None:
                self.drops["short"] += 1
                continue
            lst = self._handlers.get(pkt.vrid)
            if not lst:
                self.drops["unknown_vrid"] += 1
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
        # AH packets never repeat (sequence number); options never match.
        repeatable = proto != IPPROTO_AH and ihl == 20
        return RawPacket(
            4,
            data[12:16],
            data[16:20],
            data[8],
            proto,
            data,
            data[off:],
            data[off + 1],
            data[12:] if repeatable else None,
            data[8],
        )

    def _parse6(
        self,
        data: bytes,
        anc: list[tuple[int, int, bytes]],
        addr: tuple[str, ...],
        key: object = None,
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
        return RawPacket(6, src, dst, ttl, IPPROTO_VRRP, data, data, data[1], key, anc)


def proto_receives(family: int, hdrincl: bool) -> bool:
    """Whether a sending socket would also be handed every VRRP packet received."""
    return family == 6 or not hdrincl


#: A classic BPF program of one instruction, "return 0": accept no packet.
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)
_drop_all_buf: Any = None


def receive_nothing(s: socket.socket) -> None:
    """Make a send-only raw socket refuse every packet in the kernel.

    A raw socket of protocol 112 gets a copy of every VRRP packet the host
    receives; a sender never reads them, so without this each one would be
    cloned and queued for nothing until the buffer overflows (half a core at
    a 40k packets/s flood, bench/hostile)."""
    global _drop_all_buf
    import ctypes

    if _drop_all_buf is None:
        _drop_all_buf = ctypes.create_string_buffer(_DROP_ALL, len(_DROP_ALL))
    prog = struct.pack("HL", 1, ctypes.addressof(_drop_all_buf))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    except OSError as exc:  # no BPF: the copies are only wasted, not harmful
        log.debug("cannot attach a drop-all filter to a sender socket: %s", exc)


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
                    # keepalived 2.3.3+: a source address not (yet) on the
                    # host still binds (a VIP, or an address DHCP brings later)
                    s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                    s.bind((src, 0))
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_VRRP)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            # The kernel computes the VRRP checksum over the IPv6 pseudo-header.
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
            # keepalived 2.2.7 sets only the multicast hop limit: unicast
            # adverts leave with the system's default (net.ipv6.conf.*.
            # hop_limit, 64), which its peers' min_ttl/max_ttl expect.
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            if src:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)  # as for IPv4
                s.bind((src, 0, 0, self.ifindex if ipaddress.IPv6Address(src).is_link_local else 0))
        if proto_receives(family, hdrincl):
            receive_nothing(s)
        s.setblocking(False)
        self.sock = s
        #: sendto addresses by destination (IPv6: with the scope worked out)
        self._addrs: dict[str, tuple[str, int] | tuple[str, int, int, int]] = {}
        #: set by :func:`shared_sender` for a socket instances share
        self._shared_key: tuple[str, int, int, str | None, bool] | None = None

    def _addr(self, dst: str) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.family == 4:
            addr: tuple[str, int] | tuple[str, int, int, int] = (dst, 0)
        else:
            scope = (
                self.ifindex
                if ipaddress.IPv6Address(dst).is_link_local or dst.startswith("ff02")
                else 0
            )
            addr = (dst, 0, 0, scope)
        if len(self._addrs) < 1024:  # the instances' groups and unicast peers
            self._addrs[dst] = addr
        return addr

    def send(self, payload: bytes, dst: str) -> None:
        try:
            addr = self._addrs.get(dst)
            self.sock.sendto(payload, addr if addr is not None else self._addr(dst))
        except (BlockingIOError, InterruptedError):
            log.warning("VRRP send buffer full on %s; advert dropped", self.ifname)
        except OSError as exc:
            log.warning("VRRP send to %s on %s failed: %s", dst, self.ifname, exc)

    def close(self) -> None:
        key = self._shared_key
        if key is not None:
            entry = _SHARED_SENDERS.get(key)
            if entry is not None and entry[0] is self:
                entry[1] -= 1
                if entry[1] > 0:
                    return  # other instances still send through it
                del _SHARED_SENDERS[key]
        self.sock.close()


#: (ifname, ifindex, family, src, hdrincl) -> [sender, users]
_SHARED_SENDERS: dict[tuple[str, int, int, str | None, bool], list[Any]] = {}


def shared_sender(ifname: str, family: int, src: str | None, *, hdrincl: bool = False) -> Sender:
    """The send socket of every instance on ``ifname`` with this family,
    source and header mode (keepalived shares its sockets the same way);
    :meth:`Sender.close` gives it back.

    A raw socket of protocol 112 gets a clone of every VRRP packet the host
    receives before its drop-all filter discards it: with one socket per
    instance, each advert reaching a host with 200 instances was cloned 200
    times in the receiving softirq (in a namespace lab, on the sender's CPU:
    most of a 0.1 s master's CPU in bench/scale).  Keyed by the interface's
    index too, so an interface created again gets a new socket."""
    key = (ifname, socket.if_nametoindex(ifname), family, src, hdrincl)
    entry = _SHARED_SENDERS.get(key)
    if entry is None:
        sender = Sender(ifname, family, src, hdrincl=hdrincl)
        sender._shared_key = key
        entry = _SHARED_SENDERS[key] = [sender, 0]
    entry[1] += 1
    sender = entry[0]
    assert isinstance(sender, Sender)
    return sender
