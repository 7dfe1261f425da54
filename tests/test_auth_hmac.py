"""keepalived 2.4.3 ``auth_hmac`` (core/vrrp/auth_hmac.py) against golden captures.

The captures (``../shared/data/keepalived-2.4.3-auth_hmac``, see its README)
are adverts keepalived 2.4.3 sent, with the configurations and keys that
produced them.  Every advert must verify, our encoder must rebuild each one
byte for byte from the same key, sequence number and fields, and every bit
of a captured advert flipped must be rejected (with the trailer's own
reason where the bit is in the trailer).

Their seconds field is the capture's wall-clock time: the freshness window
is applied with the frame's capture time as "now", and tested on its own.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp.auth_hmac import (
    MCAST_SENDERS,
    TRAILER_LEN,
    AntiReplay,
    AuthHmacConfig,
    Counters,
    Mode,
    Reason,
    SendSequence,
    Signer,
    Trailer,
    Verifier,
    check_advert,
    clock_sequence,
    default_time_window,
    pseudo_header,
    seq_after,
    sign_payload,
    split_trailer,
)

DATA = Path(
    os.environ.get(
        "PYKEEPALIVED_AUTH_HMAC_DATA",
        Path(__file__).resolve().parents[2] / "shared/data/keepalived-2.4.3-auth_hmac",
    )
)
CASES = sorted(p.stem for p in DATA.glob("*.pcap")) if DATA.is_dir() else []
needs_data = pytest.mark.skipif(not CASES, reason=f"golden captures not found in {DATA}")
KEY1 = bytes(range(32))
KEY2 = b"pykeepalived-test-key-0123456789abcdef"


# ---------------------------------------------------------------------------
# reading the captures (pcapng, Ethernet)


@dataclass(frozen=True)
class Frame:
    wall: float  # capture time, seconds since the epoch
    ip: bytes  # the IP packet (Ethernet header removed)


def read_pcapng(path: Path) -> list[Frame]:
    """The IPv4/IPv6 packets of a pcapng file with one Ethernet interface."""
    data = path.read_bytes()
    frames: list[Frame] = []
    endian = "<"
    resolution = 1e-6
    off = 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from(endian + "II", data, off)
        if btype == 0x0A0D0D0A:  # section header: byte order
            magic = data[off + 8 : off + 12]
            endian = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(endian + "II", data, off)
        body = data[off + 8 : off + blen - 4]
        if btype == 1:  # interface description: link type, options
            (link,) = struct.unpack_from(endian + "H", body)
            assert link == 1, f"{path}: link type {link} is not Ethernet"
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opt)
                if code == 0:
                    break
                if code == 9:  # if_tsresol
                    val = body[opt + 4]
                    resolution = 2.0 ** -(val & 0x7F) if val & 0x80 else 10.0**-val
                opt += 4 + (olen + 3) // 4 * 4
        elif btype == 6:  # enhanced packet
            _iface, hi, lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body)
            frame = body[20 : 20 + caplen]
            (ethertype,) = struct.unpack_from("!H", frame, 12)
            if ethertype in (0x0800, 0x86DD):
                frames.append(Frame(((hi << 32) | lo) * resolution, frame[14:]))
        off += blen
    return frames


@dataclass(frozen=True)
class Case:
    name: str
    frames: list[Frame]
    version: int
    vrid: int
    advert_int: float
    keys: dict[int, bytes]
    active_key: int
    vips: tuple[pk.IPAddress, ...]
    peers: tuple[pk.IPAddress, ...]

    @property
    def family(self) -> int:
        return socket.AF_INET6 if isinstance(self.vips[0], IPv6Address) else socket.AF_INET

    def config(self, **kw: object) -> AuthHmacConfig:
        args: dict[str, object] = {"keys": self.keys, "active_key": self.active_key}
        args.update(kw)
        return AuthHmacConfig(**args)  # type: ignore[arg-type]

    def verifier(self, **kw: object) -> Verifier:
        return Verifier(
            self.config(**kw),
            family=self.family,
            version=self.version,
            vrid=self.vrid,
            advert_int=self.advert_int,
            unicast_peers=self.peers,
        )

    def expected(self) -> pk.ExpectedConfig:
        return pk.ExpectedConfig(
            version=self.version,
            vrid=self.vrid,
            family=self.family,
            advert_int_raw=pk.advert_int_to_raw(self.version, self.advert_int),
            addresses=self.vips,
            unicast=bool(self.peers),
            unicast_peers=self.peers,
        )


def _key_value(text: str) -> bytes:
    return bytes.fromhex(text[4:]) if text.startswith("hex:") else text.encode()


def load_case(name: str) -> Case:
    """The capture and what its h1 configuration says (both nodes share the
    keys; the configurations differ only in router_id, state, priority and
    unicast_src_ip)."""
    conf = (DATA / f"{name}.h1.conf").read_text()

    def one(pattern: str) -> str:
        match = re.search(pattern, conf, re.M)
        assert match, f"{name}: {pattern!r} not in configuration"
        return match.group(1)

    keys = {int(i): _key_value(v) for i, v in re.findall(r"^\s*key (\d+) (\S+)$", conf, re.M)}
    # One receiver stands for both nodes: h1's peer is h2 and h2's is h1.
    peers = tuple(
        ip_address(w)
        for node in ("h1", "h2")
        for block in re.findall(
            r"unicast_peer \{([^}]*)\}", (DATA / f"{name}.{node}.conf").read_text()
        )
        for w in block.split()
    )
    vip_block = one(r"virtual_ipaddress \{([^}]*)\}")
    return Case(
        name=name,
        frames=read_pcapng(DATA / f"{name}.pcap"),
        version=int(one(r"^\s*version (\d)$")),
        vrid=int(one(r"^\s*virtual_router_id (\d+)$")),
        advert_int=float(one(r"^\s*advert_int (\S+)$")),
        keys=keys,
        active_key=int(one(r"^\s*active_key (\d+)$")),
        vips=tuple(ip_address(w.split("/")[0]) for w in vip_block.split()),
        peers=peers,
    )


_CACHE: dict[str, Case] = {}


def case(name: str) -> Case:
    if name not in _CACHE:
        _CACHE[name] = load_case(name)
    return _CACHE[name]


@dataclass(frozen=True)
class Ip:
    src: pk.IPAddress
    dst: pk.IPAddress
    ttl: int
    payload: bytes


def ip_parts(ip: bytes) -> Ip:
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 0x0F) * 4
        return Ip(IPv4Address(ip[12:16]), IPv4Address(ip[16:20]), ip[8], ip[ihl:])
    return Ip(IPv6Address(ip[8:24]), IPv6Address(ip[24:40]), ip[7], ip[40:])


def adverts(c: Case) -> Iterator[tuple[Frame, Ip, bytes, Trailer]]:
    for frame in c.frames:
        parts = ip_parts(frame.ip)
        pdu, raw = split_trailer(parts.payload, c.family)
        assert raw is not None, f"{c.name}: advert without a trailer"
        yield frame, parts, pdu, Trailer.unpack(raw)


# ---------------------------------------------------------------------------
# the captures


@needs_data
def test_captures_cover_the_issue() -> None:
    """v2, v3 IPv4, v3 IPv6, unicast and a second (ASCII) key."""
    assert {
        "v2-ipv4-multicast",
        "v2-ipv4-unicast",
        "v3-ipv4-multicast",
        "v3-ipv6-multicast",
        "v3-ipv4-multicast-key2",
    } <= set(CASES)
    assert case("v3-ipv4-multicast-key2").keys == {1: KEY1, 2: KEY2}


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_trailer_layout(name: str) -> None:
    c = case(name)
    assert len(c.frames) >= 6
    for frame, parts, pdu, tr in adverts(c):
        assert len(parts.payload) == len(pdu) + TRAILER_LEN
        assert (tr.ext_type, tr.reserved, tr.key_id) == (1, 0, c.active_key)
        # the seconds are the sender's wall clock (same host as the capture)
        assert abs(tr.sec - frame.wall) < 2
        assert tr.pack() == parts.payload[len(pdu) :]
        if parts.src.version == 4:
            # the IPv4 total length includes the trailer
            assert struct.unpack_from("!H", frame.ip, 2)[0] == len(frame.ip)


@needs_data
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("anti_replay", list(AntiReplay))
def test_decoder_verifies_every_advert(name: str, anti_replay: AntiReplay) -> None:
    """Both senders' adverts in capture order through one receiver: all pass,
    and a second pass over the same adverts is all replays."""
    c = case(name)
    ver = c.verifier(anti_replay=anti_replay)
    for frame, parts, pdu, raw in ((f, p, d, t.pack()) for f, p, d, t in adverts(c)):
        verdict = ver.verify(pdu, raw, src=parts.src, wall=frame.wall)
        assert verdict.ok, (name, verdict)
        assert abs(verdict.skew) <= 1
    assert ver.counters == Counters()
    for frame, parts, pdu, tr in adverts(c):
        assert ver.verify(pdu, tr.pack(), src=parts.src, wall=frame.wall).reason is Reason.REPLAY
    assert ver.counters.replay == len(c.frames)
    assert ver.counters.as_json()["auth_ext_replay"] == len(c.frames)


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_full_receive_path_accepts_every_advert(name: str) -> None:
    c = case(name)
    ver = c.verifier()
    for frame in c.frames:
        assert receive(frame.ip, c, ver, frame.wall) is None


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_encoder_is_byte_identical(name: str) -> None:
    """Rebuilt from the configuration, the priority and the captured
    sequence number: the VRRP payload and trailer (and for IPv4 the whole
    datagram, given keepalived's IP identification) equal the capture."""
    c = case(name)
    for frame, parts, _pdu, tr in adverts(c):
        adv = pk.make_advert(
            version=c.version,
            vrid=c.vrid,
            priority=parts.payload[2],
            advert_int=c.advert_int,
            addresses=c.vips,
        )
        if c.family == socket.AF_INET:
            pdu = pk.encode_advert(adv, src=parts.src, dst=parts.dst)
        else:
            pdu = pk.encode_advert(adv)  # the kernel fills the checksum
        trailer = sign_payload(
            pdu,
            key_id=c.active_key,
            key=c.keys[c.active_key],
            seq=tr.seq,
            family=c.family,
            version=c.version,
            vrid=c.vrid,
            src=parts.src,
        )
        payload = pdu + trailer
        if c.family == socket.AF_INET:
            ident = struct.unpack_from("!H", frame.ip, 4)[0]
            header = pk.build_ipv4_header(
                src=parts.src,  # type: ignore[arg-type]
                dst=parts.dst,  # type: ignore[arg-type]
                payload_len=len(payload),
                ident=ident,
            )
            assert header + payload == frame.ip
        else:
            # What the kernel does with IPV6_CHECKSUM: over the whole payload.
            csum = pk.compute_checksum(payload, src=parts.src, dst=parts.dst)
            assert payload[:6] + struct.pack("!H", csum) + payload[8:] == parts.payload


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_signer_reproduces_the_sequence(name: str) -> None:
    """A clock reading inside the captured 1/65536 s gives the same trailer."""
    c = case(name)
    for _frame, parts, pdu, tr in adverts(c):
        signer = Signer(
            c.config(), family=c.family, version=c.version, vrid=c.vrid, advert_int=c.advert_int
        )
        wall = tr.sec + (tr.subsec + 0.5) / 65536
        assert signer.sign(pdu, src=parts.src, wall=wall) == tr.pack()


# ---------------------------------------------------------------------------
# tampering


def receive(ip: bytes, c: Case, ver: Verifier, wall: float) -> str | None:
    """A received packet through what the kernel and keepalived 2.4.3 check,
    in their order; the rejection's label, or None when accepted."""
    if c.family == socket.AF_INET:
        if ip[0] >> 4 != 4:
            return "kernel"  # not delivered to an AF_INET raw socket
        ihl = (ip[0] & 0x0F) * 4
        if ihl < 20 or ihl > len(ip) or pk.inet_checksum(ip[:ihl]) != 0:
            return "kernel"  # IPv4 header checksum
        if ip[9] != pk.IPPROTO_VRRP:
            return "kernel"  # not for the VRRP socket
        try:
            pk.parse_ipv4_datagram(ip)
        except pk.PacketError:
            return "ip_length"
    else:
        if ip[0] >> 4 != 6 or ip[6] != pk.IPPROTO_VRRP:
            return "kernel"
        (plen,) = struct.unpack_from("!H", ip, 4)
        if plen > len(ip) - 40:
            return "kernel"  # truncated packet
        ip = ip[: 40 + plen]  # the kernel trims what the length excludes
    parts = ip_parts(ip)
    ctx = pk.RxContext(src=parts.src, dst=parts.dst, ttl=parts.ttl)
    checked = check_advert(parts.payload, expected=c.expected(), ctx=ctx, verifier=ver, wall=wall)
    if checked.error is not None:
        return checked.error.kind.value
    if checked.rejection is pk.Rejection.AUTH_EXT:
        assert checked.auth is not None and checked.auth.reason is not None
        return checked.auth.reason.label
    if checked.rejection is not None:
        return checked.rejection.label
    return None


def _trailer_reason(offset: int, bit: int) -> set[str]:
    """The reason a flipped bit at ``offset`` (bit ``bit``, 0 = lowest) of
    the trailer must give, with "now" the capture time and a 5 s window."""
    if offset == 0 or offset in (2, 3):
        return {"malformed"}  # ext_type, reserved
    if offset == 1:
        return {"unknown_key"}  # ids 1 and 2 are one bit flip from no key
    if 4 <= offset < 8:  # seconds: a flip of 1, 2 or 4 s stays in the window
        return {"invalid_hmac"} if offset == 7 and bit < 3 else {"stale"}
    return {"invalid_hmac"}  # subsec, ctr, hmac


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_every_bit_flipped_is_rejected(name: str) -> None:
    c = case(name)
    frame = c.frames[0]
    ip = frame.ip
    hdr = 20 if c.family == socket.AF_INET else 40
    trailer_at = len(ip) - TRAILER_LEN
    accepted: list[int] = []
    for i in range(len(ip) * 8):
        flipped = bytearray(ip)
        flipped[i // 8] ^= 0x80 >> (i % 8)
        label = receive(bytes(flipped), c, c.verifier(), frame.wall)
        offset, bit = i // 8, 7 - i % 8
        if c.family == socket.AF_INET6 and ((offset == 0 and bit < 4) or offset in (1, 2, 3)):
            # Traffic class (byte 0's low half and byte 1's high half) and
            # flow label: no checksum, no HMAC and no check covers them, in
            # keepalived 2.4.3 as in any IPv6 VRRP.
            assert label is None, (offset, bit)
            accepted.append(i)
            continue
        assert label is not None, f"bit {i} (byte {offset}) flipped was accepted"
        if offset >= trailer_at and c.family == socket.AF_INET:
            assert label in _trailer_reason(offset - trailer_at, bit), (offset, bit, label)
        elif c.family == socket.AF_INET6 and offset >= hdr:
            # keepalived's kernel drops a bad IPv6 checksum first
            assert label == "checksum", (offset, bit, label)
        elif c.family == socket.AF_INET and hdr + 6 <= offset < hdr + 8:
            assert label == "checksum"  # the HMAC reads the checksum as zero
        elif c.family == socket.AF_INET and offset >= hdr:
            # version nibble, VRID, address count change what is checked
            # before the HMAC; every other bit is bound by it
            allowed = {"invalid_hmac", "length_mismatch", "bad_version", "version", "malformed"}
            allowed.add("unknown_vrid")  # another instance's VRID: not ours to check
            assert label in allowed, (offset, bit, label)
    if c.family == socket.AF_INET6:
        assert len(accepted) == 28  # 8 bits of traffic class, 20 of flow label


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_every_trailer_bit_flipped_with_fixed_checksum(name: str) -> None:
    """An attacker fixes the checksum (IPv6: over the trailer too): the
    trailer's own checks reject each flipped bit with its reason."""
    c = case(name)
    frame = c.frames[0]
    parts = ip_parts(frame.ip)
    pdu, raw = split_trailer(parts.payload, c.family)
    assert raw is not None
    for i in range(TRAILER_LEN * 8):
        bad = bytearray(raw)
        bad[i // 8] ^= 0x80 >> (i % 8)
        payload = pdu + bytes(bad)
        if c.family == socket.AF_INET6:
            csum = pk.compute_checksum(payload, src=parts.src, dst=parts.dst)
            payload = payload[:6] + struct.pack("!H", csum) + payload[8:]
        ver = c.verifier()
        ctx = pk.RxContext(src=parts.src, dst=parts.dst, ttl=parts.ttl)
        checked = check_advert(
            payload, expected=c.expected(), ctx=ctx, verifier=ver, wall=frame.wall
        )
        assert checked.rejection is pk.Rejection.AUTH_EXT
        assert checked.auth is not None and checked.auth.reason is not None
        assert checked.auth.reason.label in _trailer_reason(i // 8, 7 - i % 8), i
        counts = ver.counters.as_json()
        assert sum(counts.values()) == 1
        assert counts[checked.auth.reason.counter or ""] == 1


# ---------------------------------------------------------------------------
# verification rules


@needs_data
def test_order_of_checks() -> None:
    """malformed, then stale (before the key and the HMAC), then unknown key,
    then invalid HMAC, then replay."""
    c = case("v3-ipv4-multicast")
    frame, parts, pdu, tr = next(adverts(c))
    late = frame.wall + 100
    bad_all = Trailer(key_id=9, seq=tr.seq, hmac=bytes(16), ext_type=2).pack()
    assert c.verifier().verify(pdu, bad_all, src=parts.src, wall=late).reason is Reason.MALFORMED
    bad_key_mac = Trailer(key_id=9, seq=tr.seq, hmac=bytes(16)).pack()
    assert c.verifier().verify(pdu, bad_key_mac, src=parts.src, wall=late).reason is Reason.STALE
    got = c.verifier().verify(pdu, bad_key_mac, src=parts.src, wall=frame.wall)
    assert got.reason is Reason.UNKNOWN_KEY
    bad_mac = Trailer(key_id=tr.key_id, seq=tr.seq, hmac=bytes(16)).pack()
    got = c.verifier().verify(pdu, bad_mac, src=parts.src, wall=frame.wall)
    assert got.reason is Reason.INVALID_HMAC
    # monotonic mode has no window: the late advert verifies
    mono = c.verifier(anti_replay=AntiReplay.MONOTONIC)
    assert mono.verify(pdu, tr.pack(), src=parts.src, wall=late).ok
    assert mono.verify(pdu, tr.pack(), src=parts.src, wall=late).reason is Reason.REPLAY


@needs_data
def test_window_edges_and_skew() -> None:
    c = case("v2-ipv4-multicast")
    _frame, parts, pdu, tr = next(adverts(c))
    for window in (1, 5, 300):
        for delta in (-window - 1, -window, window, window + 1):
            ver = c.verifier(time_window=window)
            verdict = ver.verify(pdu, tr.pack(), src=parts.src, wall=tr.sec + delta + 0.9)
            assert verdict.ok == (abs(delta) <= window), (window, delta)
            assert verdict.skew == delta


@needs_data
def test_modes_on_receive() -> None:
    """A trailerless advert: missing in enforce, accepted (uncounted) in the
    migration modes; a bad trailer is rejected in every mode."""
    c = case("v3-ipv4-multicast")
    frame, parts, pdu, tr = next(adverts(c))
    bad = Trailer(key_id=tr.key_id, seq=tr.seq, hmac=bytes(16)).pack()
    for mode in Mode:
        ver = c.verifier(mode=mode)
        assert ver.verify(pdu, None, src=parts.src, wall=frame.wall).ok == (
            mode is not Mode.ENFORCE
        )
        assert ver.verify(pdu, bad, src=parts.src, wall=frame.wall).reason is Reason.INVALID_HMAC
        assert ver.counters.missing == (mode is Mode.ENFORCE)


@needs_data
def test_unicast_sender_must_be_a_peer() -> None:
    c = case("v2-ipv4-unicast")
    frame, parts, pdu, tr = next(adverts(c))
    ver = c.verifier()
    got = ver.verify(pdu, tr.pack(), src=IPv4Address("192.0.2.99"), wall=frame.wall)
    assert got.reason is Reason.NOT_A_PEER
    assert ver.counters == Counters()  # keepalived counts no auth_ext_* for it
    assert ver.verify(pdu, tr.pack(), src=parts.src, wall=frame.wall).ok
    state = ver.replay_state(parts.src)
    assert state is not None and state.valid and state.seq == tr.seq


def test_multicast_table_evicts_least_recently_used() -> None:
    keys = {1: KEY1}
    cfg = AuthHmacConfig(keys=keys, active_key=1, anti_replay=AntiReplay.MONOTONIC)
    ver = Verifier(cfg, family=socket.AF_INET, version=3, vrid=7, advert_int=1)
    adv = pk.make_advert(version=3, vrid=7, priority=100, advert_int=1, addresses=["192.0.2.1"])
    pdu = pk.encode_advert(adv, src=IPv4Address("192.0.2.2"), dst=pk.VRRP_MCAST_V4)

    def send(host: int, seq: int) -> Reason | None:
        src = IPv4Address(f"192.0.2.{host}")
        tr = sign_payload(
            pdu, key_id=1, key=KEY1, seq=seq, family=socket.AF_INET, version=3, vrid=7, src=src
        )
        return ver.verify(pdu, tr, src=src, wall=0).reason

    for host in range(10, 10 + MCAST_SENDERS):
        assert send(host, 100) is None
    assert send(10, 100) is Reason.REPLAY  # 10 is now the most recent
    assert send(99, 100) is None  # evicts 11, the least recently used
    assert send(11, 100) is None  # forgotten: accepted again (evicts 12)
    assert send(10, 100) is Reason.REPLAY  # 10 kept


def test_replay_mark_expires_outside_the_window() -> None:
    """A high-water mark outside the window (on either side) of the
    receiver's clock is forgotten: it only orders adverts the window
    rejects anyway."""
    cfg = AuthHmacConfig(keys={1: KEY1}, active_key=1, time_window=5)
    ver = Verifier(cfg, family=socket.AF_INET, version=3, vrid=7, advert_int=1)
    src = IPv4Address("192.0.2.2")
    adv = pk.make_advert(version=3, vrid=7, priority=100, advert_int=1, addresses=["192.0.2.1"])
    pdu = pk.encode_advert(adv, src=src, dst=pk.VRRP_MCAST_V4)

    def at(sec: int, wall: float) -> Reason | None:
        tr = sign_payload(
            pdu,
            key_id=1,
            key=KEY1,
            seq=sec << 32,
            family=socket.AF_INET,
            version=3,
            vrid=7,
            src=src,
        )
        return ver.verify(pdu, tr, src=src, wall=wall).reason

    assert at(1_000_010, 1_000_010) is None
    assert at(1_000_008, 1_000_010) is Reason.REPLAY
    # The receiver's clock is stepped back 7 s: the mark (sec 10) is now
    # more than the window ahead of it and is forgotten, so the sender's
    # adverts are taken again instead of being replays for 7 s.
    assert at(1_000_005, 1_000_003) is None
    assert at(1_000_004, 1_000_003) is Reason.REPLAY  # the new mark holds


def test_send_sequence() -> None:
    seq = SendSequence()
    first = seq.next(1_700_000_000.25, window=5, time_mode=True)
    assert first == clock_sequence(1_700_000_000.25)
    assert first >> 32 == 1_700_000_000 and (first >> 16) & 0xFFFF == 0x4000
    # same clock: the counter moves
    assert seq.next(1_700_000_000.25, window=5, time_mode=True) == first + 1
    # clock stepped back within the window: still strictly growing
    assert seq.next(1_699_999_996.0, window=5, time_mode=True) == first + 2
    # more than the window behind: time mode restarts from the clock ...
    assert seq.next(1_699_999_990.0, window=5, time_mode=True) == clock_sequence(1_699_999_990.0)
    # ... monotonic mode never goes back
    mono = SendSequence(last=first)
    assert mono.next(1_699_999_000.0, window=0, time_mode=False) == first + 1


@given(st.integers(0, 2**64 - 1), st.integers(1, 2**63 - 1))
def test_serial_order(a: int, step: int) -> None:
    b = (a + step) % 2**64
    assert seq_after(b, a)
    assert not seq_after(a, b)
    assert not seq_after(a, a)


@settings(max_examples=200)
@given(
    version=st.sampled_from([2, 3]),
    v6=st.booleans(),
    vrid=st.integers(1, 255),
    prio=st.integers(0, 255),
    naddr=st.integers(0, 5),
    key=st.binary(min_size=32, max_size=64),
    seq=st.integers(0, 2**64 - 1),
    flip=st.integers(0, 10_000),
)
def test_sign_verify_roundtrip_and_any_flip(
    version: int, v6: bool, vrid: int, prio: int, naddr: int, key: bytes, seq: int, flip: int
) -> None:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    src = ip_address("fe80::1" if v6 else "192.0.2.1")
    addrs = [ip_address(f"2001:db8::{i + 1}" if v6 else f"192.0.2.{i + 10}") for i in range(naddr)]
    adv = pk.make_advert(
        version=version, vrid=vrid, priority=prio, advert_int=1, addresses=addrs, family=family
    )
    pdu = pk.encode_advert(adv) if v6 else pk.encode_advert(adv, src=src, dst=pk.VRRP_MCAST_V4)
    tr = sign_payload(
        pdu, key_id=3, key=key, seq=seq, family=family, version=version, vrid=vrid, src=src
    )
    cfg = AuthHmacConfig(keys={3: key}, active_key=3, anti_replay=AntiReplay.MONOTONIC)

    def verifier() -> Verifier:
        return Verifier(cfg, family=family, version=version, vrid=vrid, advert_int=1)

    assert verifier().verify(pdu, tr, src=src, wall=0).ok
    # the checksum field is not bound; every other bit of PDU and trailer is
    data = bytearray(pdu + tr)
    bit = flip % (len(data) * 8)
    if bit // 8 in (6, 7):
        return
    data[bit // 8] ^= 0x80 >> (bit % 8)
    got = verifier().verify(bytes(data[: len(pdu)]), bytes(data[len(pdu) :]), src=src, wall=0)
    assert not got.ok
    # another instance (VRID), version or sender does not verify either
    other = Verifier(cfg, family=family, version=version, vrid=vrid % 255 + 1, advert_int=1)
    assert other.verify(pdu, tr, src=src, wall=0).reason is Reason.INVALID_HMAC


def test_pseudo_header() -> None:
    assert pseudo_header(socket.AF_INET, 2, 51, IPv4Address("192.0.2.11")) == bytes(
        [4, 2, 51, 0, 192, 0, 2, 11]
    ) + bytes(12)
    v6 = IPv6Address("fe80::1")
    assert pseudo_header(socket.AF_INET6, 3, 7, v6) == bytes([6, 3, 7, 0]) + v6.packed
    with pytest.raises(ValueError):
        pseudo_header(socket.AF_INET6, 3, 7, IPv4Address("192.0.2.1"))


def test_split_trailer_only_by_exact_length() -> None:
    adv = pk.make_advert(version=2, vrid=1, priority=100, advert_int=1, addresses=["192.0.2.1"])
    pdu = pk.encode_advert(adv)
    assert split_trailer(pdu + bytes(28), socket.AF_INET) == (pdu, bytes(28))
    for extra in (0, 27, 29, 56):
        assert split_trailer(pdu + bytes(extra), socket.AF_INET) == (pdu + bytes(extra), None)


@pytest.mark.parametrize(
    ("advert_int", "window"),
    [(0.01, 5), (0.5, 5), (1, 5), (1.5, 5), (2, 6), (2.5, 6), (10, 30), (100, 300), (255, 300)],
)
def test_default_time_window(advert_int: float, window: int) -> None:
    assert default_time_window(advert_int) == window


def test_config_rejects_and_hides_keys() -> None:
    with pytest.raises(ValueError, match="length 31"):
        AuthHmacConfig(keys={1: bytes(31)}, active_key=1)
    with pytest.raises(ValueError, match="active_key 2"):
        AuthHmacConfig(keys={1: KEY1}, active_key=2)
    with pytest.raises(ValueError, match="time_window"):
        AuthHmacConfig(keys={1: KEY1}, active_key=1, time_window=301)
    assert "0001" not in repr(AuthHmacConfig(keys={1: KEY1}, active_key=1))


def test_receive_only_sends_no_trailer() -> None:
    cfg = AuthHmacConfig(keys={1: KEY1}, active_key=1, mode=Mode.RECEIVE_ONLY)
    signer = Signer(cfg, family=socket.AF_INET, version=3, vrid=1, advert_int=1)
    assert not signer.active
    assert (
        signer.sign(b"\x31\x01\x64\x00\x00\x64\x00\x00", src=IPv4Address("192.0.2.1"), wall=0)
        == b""
    )


# ---------------------------------------------------------------------------
# the auth_hmac block (core/config/auth_hmac.py, semantics)


def _load(body: str, *, extra: str = "", name: str = "h.conf") -> tuple[object, list[str]]:
    from pykeepalived.core.config import load_text

    text = (
        "vrrp_instance VI_1 {\n"  # line 1
        " interface eth0\n"
        " virtual_router_id 51\n"
        f"{extra}"
        " auth_hmac {\n"
        f"{body}"
        " }\n"
        " virtual_ipaddress {\n  192.0.2.100/24\n }\n"
        "}\n"
    )
    result = load_text(text, name=name)
    [vi] = result.config.vrrp_instances
    return vi.auth_hmac, [str(d) for d in result.diagnostics.items]


HEX1 = "hex:" + KEY1.hex()


@needs_data
@pytest.mark.parametrize("name", CASES)
def test_golden_configurations_parse(name: str) -> None:
    from pykeepalived.core.config import load_text

    for node in ("h1", "h2"):
        conf = DATA / f"{name}.{node}.conf"
        result = load_text(conf.read_text(), name=conf.name)
        assert [str(d) for d in result.diagnostics.items] == []
        [vi] = result.config.vrrp_instances
        ah = vi.auth_hmac
        assert ah is not None
        assert {k.key_id: k.secret for k in ah.keys} == {1: KEY1, 2: KEY2}
        assert ah.active_key == case(name).active_key
        assert (ah.mode, ah.anti_replay, ah.time_window) == ("enforce", "time", None)


def test_auth_hmac_block_values() -> None:
    ah, diags = _load(
        f"  key 1 {HEX1}\n  key 7 {KEY2.decode()}\n  active_key 7\n"
        "  anti_replay monotonic\n  time_window 300\n  mode receive-only\n"
    )
    assert diags == []
    assert ah is not None
    assert [(k.key_id, k.secret) for k in ah.keys] == [(1, KEY1), (7, KEY2)]  # type: ignore[attr-defined]
    assert (ah.active_key, ah.anti_replay, ah.time_window, ah.mode) == (  # type: ignore[attr-defined]
        7,
        "monotonic",
        300,
        "receive-only",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("key 1 " + "a" * 31, "auth_hmac key 1 length 31 not in range [32, 64]"),
        ("key 1 " + "a" * 65, "auth_hmac key 1 length 65 not in range [32, 64]"),
        ("key 1 hex:" + "0g" * 32, "auth_hmac key 1 length 0 not in range [32, 64]"),
        ("key 1 hex:", "auth_hmac key 1 length 0 not in range [32, 64]"),
        ("key 0 " + "a" * 32, "auth_hmac key id '0' must be between 1 and 255"),
        ("key 256 " + "a" * 32, "auth_hmac key id '256' must be between 1 and 255"),
        ("key x " + "a" * 32, "auth_hmac key id 'x' must be between 1 and 255"),
        ("active_key 0", "auth_hmac active_key '0' must be between 1 and 255"),
        ("time_window 0", "auth_hmac time_window '0' must be between 1 and 300 seconds"),
        ("time_window 301", "auth_hmac time_window '301' must be between 1 and 300 seconds"),
        ("anti_replay clock", "auth_hmac anti_replay 'clock' must be time or monotonic"),
        ("mode strict", "auth_hmac mode 'strict' must be enforce, permissive or receive-only"),
    ],
)
def test_auth_hmac_rejected_lines(line: str, message: str) -> None:
    """The line is reported at its place and dropped; the block stands."""
    ah, diags = _load(f"  key 2 {HEX1}\n  active_key 2\n  {line}\n")
    assert len(diags) == 1 and diags[0].startswith("h.conf:7: error: "), diags
    assert diags[0].endswith(message)
    assert ah is not None and [k.key_id for k in ah.keys] == [2]  # type: ignore[attr-defined]


def test_auth_hmac_duplicate_key_keeps_the_first() -> None:
    ah, diags = _load(f"  key 1 {HEX1}\n  key 1 {KEY2.decode()}\n  active_key 1\n")
    assert diags == ["h.conf:6: error: key: duplicate auth_hmac key id 1"]
    assert ah is not None and [k.secret for k in ah.keys] == [KEY1]  # type: ignore[attr-defined]


def test_hex_keys_as_keepalived_reads_them() -> None:
    from pykeepalived.core.config.auth_hmac import decode_hex

    assert decode_hex("0001 02\t03") == bytes([0, 1, 2, 3])
    assert decode_hex("f 0f") == bytes([0x0F, 0x0F])  # a lone digit is a byte
    assert decode_hex("abc") == bytes([0xAB, 0x0C])
    assert decode_hex("AbCd") == bytes([0xAB, 0xCD])
    assert decode_hex("") is None and decode_hex("0x") is None and decode_hex("  ") is None
    ah, diags = _load(f'  key 1 "hex:{" ".join(f"{b:02x}" for b in KEY1)}"\n  active_key 1\n')
    assert diags == [] and ah is not None and ah.keys[0].secret == KEY1  # type: ignore[attr-defined]


def test_key_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "k1"
    good.write_text(HEX1 + "\r\n")
    good.chmod(0o600)
    ascii_key = tmp_path / "k2"
    ascii_key.write_bytes(KEY2 + b"\n")
    ascii_key.chmod(0o644)
    big = tmp_path / "big"
    big.write_text("hex:" + "00" * 70)
    big.chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    ah, diags = _load(
        "  key 1 file:${_ENV CREDENTIALS_DIRECTORY}/k1\n"
        f"  key 2 file:{ascii_key}\n"
        f"  key 3 file:{big}\n"
        f"  key 4 file:{tmp_path}/absent\n"
        "  active_key 1\n"
    )
    assert ah is not None
    assert {k.key_id: k.secret for k in ah.keys} == {1: KEY1, 2: KEY2}  # type: ignore[attr-defined]
    assert diags == [
        f"h.conf:6: warning: auth_hmac key file '{ascii_key}' is readable by group or others",
        f"h.conf:7: error: key: auth_hmac key file '{big}' is too large",
        f"h.conf:8: error: key: auth_hmac key file '{tmp_path}/absent' cannot be opened",
    ]


def test_auth_hmac_instance_rules() -> None:
    # no active key among the keys: the block is dropped (keepalived
    # "disabling extension")
    ah, diags = _load(f"  key 1 {HEX1}\n  active_key 2\n")
    assert ah is None
    assert diags == [
        "h.conf:4: warning: (VI_1) auth_hmac active_key 2 is not defined, disabling extension"
    ]
    ah, diags = _load(f"  key 1 {HEX1}\n")
    assert ah is None and "active_key 0 is not defined" in diags[0]
    # beside authentication: the legacy authentication is dropped
    from pykeepalived.core.config import load_text

    text = (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n version 2\n"
        " authentication {\n  auth_type PASS\n  auth_pass secret\n }\n"
        f" auth_hmac {{\n  key 1 {HEX1}\n  active_key 1\n  mode permissive\n }}\n"
        " virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n"
    )
    result = load_text(text, name="a.conf")
    [vi] = result.config.vrrp_instances
    assert vi.authentication is None and vi.auth_hmac is not None
    assert [str(d) for d in result.diagnostics.items] == [
        "a.conf:9: warning: (VI_1) auth_hmac cannot be combined with authentication, "
        "dropping legacy auth"
    ]
    # strict mode forces enforce
    result = load_text(text.replace(" version 2\n", " version 2\n strict_mode\n"), name="s.conf")
    [vi] = result.config.vrrp_instances
    assert vi.auth_hmac is not None and vi.auth_hmac.mode == "enforce"
    assert any(
        "strict mode requires auth_hmac mode enforce" in str(d) for d in result.diagnostics.items
    )


def test_dump_masks_keys() -> None:
    from pykeepalived.core.config.dump import dump_json

    ah, _ = _load(f"  key 1 {HEX1}\n  active_key 1\n")
    assert KEY1.hex() not in dump_json(ah)
    assert '"secret": "***"' in dump_json(ah)
    assert KEY1.hex() in dump_json(ah, secrets=True)
