"""Split brain: two MASTERs for one virtual router, found on the wire.

VRRP cannot see it: when adverts are lost one way (a firewall, a
partitioned bridge, a container network that drops multicast one way), the
side that hears nothing becomes MASTER, and the other side, hearing only
lower-priority adverts, stays MASTER (RFC 5798 6.4.3 makes it answer them
with an advert of its own, which is lost).  Nobody tells the operator.
A MASTER here looks for the other one in two ways:

* **Lower-priority adverts** (always on: it costs nothing, the state
  machine already reports each one as ``ReceivedLowerPriority``).  One is
  normal, when a higher-priority router preempts; a peer that keeps
  sending them is a MASTER that does not hear us.  Three from one source,
  none further apart than our Master_Down_Interval, make a split brain.
* **Probing the VIPs** (``split_brain_probe_interval``, off by default: it
  puts packets on the wire and reads ARP replies and NAs): every interval
  a MASTER sends an ARP probe (RFC 5227 2.1.1: sender address 0.0.0.0, so
  no cache is changed) for each IPv4 VIP and a Neighbour Solicitation with
  DAD semantics (RFC 4862 5.4.2: source ::, to the solicited-node group,
  so the holder answers to all-nodes) for each IPv6 VIP.  Only another
  holder of the address answers.  An answer in two probe rounds in a row
  (so that a previous MASTER still letting go is not counted) makes a split
  brain; the log names the other MAC.  With ``use_vmac`` both MASTERs
  answer from the same virtual MAC: an ARP answer still reveals the other
  one (our own replies are never read back), an NA does not.

With probes on, a unicast MASTER probes its unicast peers the same way:
a peer that answered and stops answering is named in a warning and in the
status (``silent_peers``).  It is not a split brain: a peer that is down and
one that is cut off (and maybe MASTER on its side) look alike from here.

It is reported once when it starts (``split_brain`` event: state
``SPLIT_BRAIN`` with the evidence as detail, a warning naming the other
MAC/address) and once when it ends (``SPLIT_BRAIN_CLEARED``): no evidence
for two probe intervals (lower-priority adverts: a Master_Down_Interval),
or this instance left MASTER.

The probes run on the VRRP loop, in a few microseconds per VIP on
non-blocking sockets that stay open (closing an AF_PACKET socket waits for
an RCU grace period, effects.py); the ARP socket has a BPF filter that
passes replies only, the ICMPv6 socket an ICMPv6 filter that passes NAs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pykeepalived.core.plugin.base import SPLIT_BRAIN, SPLIT_BRAIN_CLEARED, EventKind, StateEvent
from pykeepalived.core.vrrp.fsm import ReceivedLowerPriority, State, Transition

if TYPE_CHECKING:
    from pykeepalived.core.vrrp.instance import Instance

log = logging.getLogger("pykeepalived.vrrp")

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
ICMPV6_NS = 135
ICMPV6_NA = 136
ICMP6_FILTER = 1
SO_ATTACH_FILTER = 26
#: Lower-priority adverts from one source that make a split brain.
LOWER_PRIO_ADVERTS = 3
#: Probe rounds in a row with an answer that make a split brain.
PROBE_ROUNDS = 2

#: Where the configuration keeps ``split_brain_probe_interval`` (VrrpInstance.ext).
EXT_INTERVAL = "split_brain_probe_interval"


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def arp_probe(mac: bytes, ip4: str) -> bytes:
    """An ARP probe for ``ip4`` (RFC 5227 2.1.1): broadcast, sender IP 0."""
    eth = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes(4) + bytes(6)
    return eth + arp + socket.inet_aton(ip4)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dad_solicitation(ip6: str) -> tuple[bytes, bytes]:
    """(IPv6 packet, destination MAC) of a DAD Neighbour Solicitation for
    ``ip6`` (RFC 4862 5.4.2: from ::, to the solicited-node group, no
    source link-layer option, hop limit 255)."""
    target = socket.inet_pton(socket.AF_INET6, ip6)
    dst = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
    src = bytes(16)
    body = struct.pack("!BBHI", ICMPV6_NS, 0, 0, 0) + target
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    csum = _checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    return header + body, b"\x33\x33" + dst[12:]


def parse_arp_reply(frame: bytes) -> tuple[str, bytes] | None:
    """(sender IP, sender MAC) of an ARP reply frame, None otherwise."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    return socket.inet_ntoa(frame[28:32]), frame[22:28]


def parse_na(data: bytes) -> tuple[str, bytes | None] | None:
    """(target, target link-layer address) of an ICMPv6 NA, None otherwise."""
    if len(data) < 24 or data[0] != ICMPV6_NA:
        return None
    target = socket.inet_ntop(socket.AF_INET6, data[8:24])
    off = 24
    while off + 8 <= len(data):
        kind, units = data[off], data[off + 1]
        if units == 0:
            break
        if kind == 2:
            return target, data[off + 2 : off + 8]
        off += units * 8
    return target, None


# A classic BPF program: ARP opcode (offset 20 in the frame) == 2, else drop.
_ARP_REPLY_BPF = [
    (0x28, 0, 0, 20),  # ldh [20]
    (0x15, 0, 1, 2),  # jeq #2, accept, drop
    (0x06, 0, 0, 0x40000),  # ret #262144
    (0x06, 0, 0, 0),  # ret #0
]


def _attach_bpf(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    import ctypes

    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


Answer = Callable[[str, bytes | None, str], None]


class Prober:
    """The probe sockets of one interface and who listens for which VIP."""

    def __init__(self, dev: str, loop: asyncio.AbstractEventLoop) -> None:
        self.dev = dev
        self.loop = loop
        self._arp: socket.socket | None = None
        self._icmp6: socket.socket | None = None
        self._ip6: socket.socket | None = None
        #: VIP -> callback(vip, mac, what)
        self.listeners: dict[str, list[Answer]] = {}

    def _open_arp(self) -> socket.socket:
        if self._arp is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            try:
                _attach_bpf(s, _ARP_REPLY_BPF)
                s.bind((self.dev, ETH_P_ARP))
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            self.loop.add_reader(s.fileno(), self._read_arp)
            self._arp = s
        return self._arp

    def _open_ip6(self) -> socket.socket:
        if self._ip6 is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
            s.setblocking(False)
            self._ip6 = s
        if self._icmp6 is None:
            r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            try:
                r.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dev.encode())
                words = [0xFFFFFFFF] * 8  # a set bit blocks the type
                words[ICMPV6_NA >> 5] &= ~(1 << (ICMPV6_NA & 31))
                r.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
                r.setblocking(False)
            except OSError:
                r.close()
                raise
            self.loop.add_reader(r.fileno(), self._read_na)
            self._icmp6 = r
        return self._ip6

    def probe(self, vip: str, mac: bytes) -> None:
        """One probe for ``vip`` from ``mac``; never blocks, never raises."""
        try:
            if ":" in vip:
                s = self._open_ip6()
                packet, dst_mac = dad_solicitation(vip)
                s.sendto(packet, (self.dev, ETH_P_IPV6, 0, 0, dst_mac))
            else:
                self._open_arp().send(arp_probe(mac, vip))
        except OSError as exc:
            log.debug("split brain probe for %s on %s: %s", vip, self.dev, exc)

    def _read_arp(self) -> None:
        s = self._arp
        if s is None:
            return
        for _ in range(64):
            try:
                frame, addr = s.recvfrom(128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:  # our own replies
                continue
            got = parse_arp_reply(frame)
            if got is not None:
                for answer in self.listeners.get(got[0], ()):
                    answer(got[0], got[1], "ARP reply")

    def _read_na(self) -> None:
        r = self._icmp6
        if r is None:
            return
        for _ in range(64):
            try:
                data, addr = r.recvfrom(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            got = parse_na(data)
            if got is None:
                continue
            target = str(ipaddress.ip_address(got[0]))
            for answer in self.listeners.get(target, ()):
                answer(target, got[1], f"NA from {addr[0].split('%')[0]}")

    def close(self) -> None:
        for s in (self._arp, self._icmp6):
            if s is not None:
                self.loop.remove_reader(s.fileno())
                s.close()
        if self._ip6 is not None:
            self._ip6.close()
        self._arp = self._icmp6 = self._ip6 = None
        self.listeners.clear()


@dataclass(slots=True)
class _Seen:
    first: float
    last: float
    count: int = 1
    detail: str = ""


@dataclass(slots=True)
class SplitBrain:
    """One instance's split-brain watch (driven by the manager)."""

    name: str
    #: (address, interface) of the VIPs and eVIPs
    vips: list[tuple[str, str]]
    #: seconds between probe rounds; 0: no probing
    interval: float
    master_down_interval: Callable[[], float]
    report: Callable[[str, str], None]
    prober: Callable[[str], Prober] | None = None
    own_mac: Callable[[str], bytes | None] = lambda dev: None
    own_macs: frozenset[bytes] = frozenset()
    #: (address, interface) of the unicast peers, probed like the VIPs
    peers: list[tuple[str, str]] = field(default_factory=list)
    #: unicast peers that answered probes before and have stopped
    silent_peers: set[str] = field(default_factory=set)
    _peer_answered: set[str] = field(default_factory=set)
    _peer_known: set[str] = field(default_factory=set)
    _peer_misses: dict[str, int] = field(default_factory=dict)
    master: bool = False
    detected: bool = False
    detail: str = ""
    since: float = 0.0
    count: int = 0
    _lower: dict[str, _Seen] = field(default_factory=dict)
    #: holder key -> rounds in a row it answered
    _answers: dict[str, _Seen] = field(default_factory=dict)
    _answered_round: set[str] = field(default_factory=set)
    _rounds: dict[str, int] = field(default_factory=dict)
    _handle: asyncio.TimerHandle | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    # -- inputs -----------------------------------------------------------------
    def state_changed(self, master: bool, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if master == self.master:
            return
        self.master = master
        if master:
            self._listen(True)
            self._schedule()
            return
        self._listen(False)
        self._cancel()
        self._lower.clear()
        self._answers.clear()
        self._rounds.clear()
        self._answered_round.clear()
        self._peer_answered.clear()
        self._peer_misses.clear()
        self.silent_peers.clear()
        if self.detected:
            self._clear("no longer MASTER")

    def lower_priority(self, src: str, priority: int, now: float) -> None:
        """The state machine saw a lower-priority advert while MASTER."""
        if not self.master:
            return
        seen = self._lower.get(src)
        if seen is None or now - seen.last > self.master_down_interval():
            self._lower[src] = _Seen(now, now, 1, f"adverts from {src} with priority {priority}")
        else:
            seen.last = now
            seen.count += 1
            seen.detail = f"adverts from {src} with priority {priority}"
        self._evaluate(now)
        if self.detected and self._handle is None:
            self._schedule()

    def answer(self, vip: str, mac: bytes | None, what: str) -> None:
        """Another host answered a probe for ``vip``."""
        if not self.master:
            return
        if mac is not None and mac in self.own_macs and what.startswith("NA"):
            return  # our own NA, looped back by multicast
        holder = f"{vip} is also held by {_mac(mac) if mac else '?'} ({what})"
        self._answered_round.add(holder)

    def peer_answer(self, peer: str, mac: bytes | None, what: str) -> None:
        """A unicast peer answered a probe for its own address."""
        if self.master:
            self._peer_answered.add(peer)

    def _peer_round(self) -> None:
        """Unicast peers that answered probes and stop: a peer that is down
        and a peer cut off (maybe MASTER on its side) look the same from
        here, so it is a warning and a status entry, not a split brain."""
        for peer, _ in self.peers:
            if peer in self._peer_answered:
                self._peer_known.add(peer)
                self._peer_misses.pop(peer, None)
                if peer in self.silent_peers:
                    self.silent_peers.discard(peer)
                    log.info("(%s) unicast peer %s answers again", self.name, peer)
                continue
            if peer not in self._peer_known:
                continue  # never answered (off-link, or not up yet)
            misses = self._peer_misses[peer] = self._peer_misses.get(peer, 0) + 1
            if misses == PROBE_ROUNDS + 1 and peer not in self.silent_peers:
                self.silent_peers.add(peer)
                log.warning(
                    "(%s) unicast peer %s stopped answering probes: it is down, or cut off"
                    " and possibly MASTER (split brain)",
                    self.name,
                    peer,
                )
        self._peer_answered = set()

    # -- rounds -----------------------------------------------------------------
    def _listen(self, on: bool) -> None:
        if self.prober is None or self.interval <= 0:
            return
        if on:
            macs = (self.own_mac(dev) for _, dev in self.vips)
            self.own_macs = frozenset(m for m in macs if m is not None)
        for vip, dev in self.vips:
            p = self.prober(dev)
            if on:
                p.listeners.setdefault(vip, []).append(self.answer)
            elif self.answer in p.listeners.get(vip, []):
                p.listeners[vip].remove(self.answer)
        for peer, dev in self.peers:
            p = self.prober(dev)
            if on:
                p.listeners.setdefault(peer, []).append(self.peer_answer)
            elif self.peer_answer in p.listeners.get(peer, []):
                p.listeners[peer].remove(self.peer_answer)

    def _schedule(self) -> None:
        if self._loop is None:
            return
        every = self.interval if self.interval > 0 else self.master_down_interval()
        self._cancel()
        self._handle = self._loop.call_later(every, self._tick)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = None
        if not self.master or self._loop is None:
            return
        now = self._loop.time()
        # the answers to the last round's probes
        for holder in list(self._rounds):
            if holder not in self._answered_round:
                del self._rounds[holder]
        for holder in self._answered_round:
            self._rounds[holder] = self._rounds.get(holder, 0) + 1
        self._answered_round = set()
        self._evaluate(now)
        if self.prober is not None and self.interval > 0:
            self._peer_round()
            for address, dev in [*self.vips, *self.peers]:
                mac = self.own_mac(dev)
                if mac is not None:
                    self.prober(dev).probe(address, mac)
        if self.interval > 0 or self.detected or self._lower:
            self._schedule()

    def _evaluate(self, now: float) -> None:
        mdi = self.master_down_interval()
        for src in [s for s, seen in self._lower.items() if now - seen.last > mdi]:
            del self._lower[src]
        evidence = [
            seen.detail for seen in self._lower.values() if seen.count >= LOWER_PRIO_ADVERTS
        ]
        evidence += [h for h, n in self._rounds.items() if n >= PROBE_ROUNDS]
        if evidence and not self.detected:
            self.detected = True
            self.count += 1
            self.since = now
            self.detail = "; ".join(sorted(evidence))
            self.report(SPLIT_BRAIN, self.detail)
        elif self.detected and not (
            evidence or self._answered_round or self._rounds or self._lower
        ):
            self._clear("no other MASTER seen")

    def _clear(self, why: str) -> None:
        self.detected = False
        self.report(SPLIT_BRAIN_CLEARED, why)
        self.detail = ""

    def close(self) -> None:
        self._listen(False)
        self._cancel()

    def status(self) -> dict[str, object]:
        return {
            "detected": self.detected,
            "detail": self.detail,
            "count": self.count,
            "probe_interval": self.interval,
            "silent_peers": sorted(self.silent_peers),
        }


# -- wiring (the manager calls these) ----------------------------------------------
def watch(
    inst: Instance,
    emit: Callable[[StateEvent], None],
    prober: Callable[[str], Prober],
    own_mac: Callable[[str], bytes | None],
) -> SplitBrain:
    """A split-brain watch for ``inst`` reporting through ``emit``."""
    interval = float(inst.cfg.ext.get(EXT_INTERVAL) or 0.0)

    def report(state: str, detail: str) -> None:
        if state == SPLIT_BRAIN:
            log.warning("(%s) split brain: another MASTER is active: %s", inst.name, detail)
        else:
            log.info("(%s) split brain cleared: %s", inst.name, detail)
        with contextlib.suppress(Exception):
            emit(
                StateEvent(
                    kind=EventKind.INSTANCE,
                    name=inst.name,
                    state=state,
                    priority=inst.fsm.effective_priority,
                    router_id=inst.router_id,
                    subject=inst.cfg,
                    detail=detail,
                )
            )

    return SplitBrain(
        name=inst.name,
        vips=[(addr, dev) for dev, addr in inst.gratuitous_addresses()],
        interval=interval,
        master_down_interval=lambda: inst.fsm.master_down_interval,
        report=report,
        prober=prober,
        own_mac=own_mac,
        peers=[(str(p.address), inst.ifname) for p in inst.cfg.unicast_peer],
    )


def split_brain_actions(
    sb: SplitBrain, actions: list[Any], loop: asyncio.AbstractEventLoop
) -> None:
    """Feed the state machine's actions of one run to ``sb``."""
    for action in actions:
        if isinstance(action, Transition):
            sb.state_changed(action.new is State.MASTER, loop)
        elif isinstance(action, ReceivedLowerPriority):
            src = str(ipaddress.ip_address(action.src)) if len(action.src) in (4, 16) else ""
            sb.lower_priority(src, action.priority, loop.time())
