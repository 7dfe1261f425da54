"""keepalived 2.4's ``auth_hmac``: an HMAC-SHA256 trailer on every advert.

Pure: no sockets, no clocks.  Wall-clock time (what keepalived reads from
``CLOCK_REALTIME``) is passed in as seconds since the Unix epoch.

Wire format (keepalived 2.4.3, ``vrrp_auth_hmac.h``): 28 bytes appended after
the VRRP payload (after the VIPs, after the 8 auth bytes of VRRPv2/IPv4)::

    ext_type(1)=1  key_id(1)  reserved(2)=0
    sec(4)  subsec(2)  ctr(2)        the 64-bit sequence number
    hmac(16)                          HMAC-SHA256 truncated to 128 bits

The sequence number is time based: the high 32 bits are UTC seconds, the
next 16 a binary fraction of a second, the low 16 a counter that only moves
when the clock has not (RFC 1982 serial arithmetic over 64 bits).

HMAC input, in this order: a 20-byte pseudo-header (``4`` or ``6``, the
instance's VRRP version, its VRID, a zero byte, the sender's address zero
padded to 16 bytes), the VRRP payload with its checksum field read as zero,
the first 12 trailer bytes, and 16 zero bytes standing for the HMAC field.
The IP header is not bound (only the source address, through the
pseudo-header), nor is the destination: every unicast copy of one advert
carries the same trailer.

Where the trailer sits relative to the checksums (keepalived 2.4.3 ``vrrp.c``):
the IPv4 VRRP checksum (v2, and v3 with its pseudo-header length) covers the
VRRP payload only, the trailer is outside it; the IPv4 total length includes
the trailer; over IPv6 the kernel's checksum (``IPV6_CHECKSUM``) covers the
whole payload, trailer included, which is why the HMAC reads the checksum
field as zero.

Receive-side order (``vrrp_check_packet`` then ``vrrp_auth_ext_verify`` and
``vrrp_auth_hmac_check``): the trailer is recognised only by length (payload
exactly 28 bytes longer than the address count implies, anything else is a
length error before any of this); after the TTL and version checks come:
missing trailer (enforce only), unicast source not a configured peer,
malformed (ext_type, reserved), stale (time mode, checked *before* the key
and the HMAC so a flood of replayed captures costs no digest), unknown key,
invalid HMAC, replay (the per-sender high-water mark moves only on a
verified advert).
"""

from __future__ import annotations

import enum
import math
import socket
import struct

# hmac.compare_digest's constant-time comparison without importing hmac
# (see advert_hmac)
from _operator import _compare_digest as compare_digest
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from pykeepalived.core.vrrp import packet as pk

__all__ = [
    "EXT_TYPE_SHA256",
    "HMAC_LEN",
    "KEY_MAX",
    "KEY_MIN",
    "MCAST_SENDERS",
    "PSEUDO_LEN",
    "TRAILER_LEN",
    "WINDOW_FLOOR",
    "WINDOW_MAX",
    "WINDOW_MIN",
    "AntiReplay",
    "AuthHmacConfig",
    "Checked",
    "Counters",
    "Mode",
    "Reason",
    "ReplayState",
    "SendSequence",
    "Signer",
    "Trailer",
    "Verdict",
    "Verifier",
    "advert_hmac",
    "check_advert",
    "clock_sequence",
    "default_time_window",
    "pseudo_header",
    "seq_after",
    "sign_payload",
    "split_trailer",
]

IPAddress = pk.IPAddress

EXT_TYPE_SHA256 = 1
HMAC_LEN = 16
TRAILER_LEN = 28
_PREFIX_LEN = TRAILER_LEN - HMAC_LEN
PSEUDO_LEN = 20
KEY_MIN = 32
KEY_MAX = 64
WINDOW_MIN = 1
WINDOW_MAX = 300
#: The least window derived from advert_int (keepalived: 3 x advert_int,
#: at least 5 s, at most 300 s).
WINDOW_FLOOR = 5
#: keepalived keeps replay state for this many multicast senders per
#: instance (least recently used evicted): several legitimate senders of one
#: VRID only meet while they contend for mastership.
MCAST_SENDERS = 4

_VRRP_CHECKSUM_OFF = 6
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_TRAILER = struct.Struct("!BBHIHH")
_ZERO_HMAC = bytes(HMAC_LEN)


class Mode(enum.Enum):
    """``mode``: how a node migrates into and out of signing."""

    #: sign; accept only adverts with a valid trailer (the default)
    ENFORCE = "enforce"
    #: sign; accept trailerless adverts, verify any trailer that is present
    PERMISSIVE = "permissive"
    #: do not sign; accept trailerless adverts, verify any trailer present
    RECEIVE_ONLY = "receive-only"

    @property
    def signs(self) -> bool:
        return self is not Mode.RECEIVE_ONLY


class AntiReplay(enum.Enum):
    """``anti_replay``: ``time`` adds the freshness window to strict growth."""

    TIME = "time"
    MONOTONIC = "monotonic"


class Reason(enum.Enum):
    """Why an advert's trailer was not accepted.  ``counter`` is keepalived's
    statistics/JSON name (``None``: keepalived rejects without counting)."""

    MISSING = ("missing", "auth_ext_missing")
    MALFORMED = ("malformed", "auth_ext_malformed")
    UNKNOWN_KEY = ("unknown_key", "auth_ext_unknown_key")
    INVALID_HMAC = ("invalid_hmac", "auth_ext_invalid_hmac")
    STALE = ("stale", "auth_ext_stale")
    REPLAY = ("replay", "auth_ext_replay")
    #: unicast instance, source not among its unicast_peer (keepalived logs
    #: "not a unicast peer" and counts nothing)
    NOT_A_PEER = ("not_a_peer", None)

    def __init__(self, label: str, counter: str | None) -> None:
        self.label = label
        self.counter = counter


@dataclass(slots=True)
class Counters:
    """Rejections counted per reason (keepalived's ``auth_ext_*`` stats)."""

    missing: int = 0
    malformed: int = 0
    unknown_key: int = 0
    invalid_hmac: int = 0
    stale: int = 0
    replay: int = 0

    def count(self, reason: Reason) -> None:
        if reason.counter is not None:
            name = reason.label
            setattr(self, name, getattr(self, name) + 1)

    def as_json(self) -> dict[str, int]:
        """keepalived's JSON dump names (``vrrp_json.c``), in its order."""
        return {
            "auth_ext_missing": self.missing,
            "auth_ext_malformed": self.malformed,
            "auth_ext_unknown_key": self.unknown_key,
            "auth_ext_invalid_hmac": self.invalid_hmac,
            "auth_ext_stale": self.stale,
            "auth_ext_replay": self.replay,
        }


# ---------------------------------------------------------------------------
# configuration


def default_time_window(advert_int: float) -> int:
    """keepalived's window when ``time_window`` is not given: three advert
    intervals in *whole* seconds (the interval truncated first, so 0.5 s or
    2.5 s count as 0 s and 2 s), at least 5, at most 300."""
    window = 3 * int(advert_int + 1e-9)
    return min(max(window, WINDOW_FLOOR), WINDOW_MAX)


@dataclass(frozen=True, slots=True)
class AuthHmacConfig:
    """One instance's resolved ``auth_hmac`` block.

    ``time_window`` 0 means "derive it" (:func:`default_time_window`), as
    keepalived does only in time mode."""

    keys: Mapping[int, bytes]
    active_key: int
    mode: Mode = Mode.ENFORCE
    anti_replay: AntiReplay = AntiReplay.TIME
    time_window: int = 0

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            if not 1 <= key_id <= 255:
                raise ValueError(f"auth_hmac key id {key_id} not in 1..255")
            if not KEY_MIN <= len(key) <= KEY_MAX:
                raise ValueError(
                    f"auth_hmac key {key_id} length {len(key)} not in range [{KEY_MIN}, {KEY_MAX}]"
                )
        if self.active_key not in self.keys:
            raise ValueError(f"auth_hmac active_key {self.active_key} is not defined")
        if self.time_window and not WINDOW_MIN <= self.time_window <= WINDOW_MAX:
            raise ValueError(f"auth_hmac time_window {self.time_window} not in 1..300")

    def window(self, advert_int: float) -> int:
        """The freshness window in seconds (0 in monotonic mode: none)."""
        if self.anti_replay is not AntiReplay.TIME:
            return self.time_window
        return self.time_window or default_time_window(advert_int)

    def __repr__(self) -> str:  # never show key material
        return (
            f"AuthHmacConfig(keys={sorted(self.keys)}, active_key={self.active_key}, "
            f"mode={self.mode.value}, anti_replay={self.anti_replay.value}, "
            f"time_window={self.time_window})"
        )


# ---------------------------------------------------------------------------
# the trailer


@dataclass(frozen=True, slots=True)
class Trailer:
    """The 28-byte trailer as on the wire."""

    key_id: int
    seq: int
    hmac: bytes = _ZERO_HMAC
    ext_type: int = EXT_TYPE_SHA256
    reserved: int = 0

    @property
    def sec(self) -> int:
        return self.seq >> 32

    @property
    def subsec(self) -> int:
        return (self.seq >> 16) & 0xFFFF

    @property
    def ctr(self) -> int:
        return self.seq & 0xFFFF

    def prefix(self) -> bytes:
        """The 12 bytes before the HMAC (what the HMAC covers of the trailer)."""
        return _TRAILER.pack(
            self.ext_type, self.key_id, self.reserved, self.sec, self.subsec, self.ctr
        )

    def pack(self) -> bytes:
        return self.prefix() + self.hmac

    @classmethod
    def unpack(cls, data: bytes) -> Trailer:
        if len(data) != TRAILER_LEN:
            raise ValueError(f"auth_hmac trailer is {TRAILER_LEN} bytes, not {len(data)}")
        ext_type, key_id, reserved, sec, subsec, ctr = _TRAILER.unpack_from(data)
        return cls(
            key_id=key_id,
            seq=(sec << 32) | (subsec << 16) | ctr,
            hmac=bytes(data[_PREFIX_LEN:]),
            ext_type=ext_type,
            reserved=reserved,
        )


def split_trailer(payload: bytes, family: int) -> tuple[bytes, bytes | None]:
    """Split a received VRRP payload into the VRRP PDU and its trailer.

    keepalived recognises a trailer only by length: the payload is exactly
    :data:`TRAILER_LEN` bytes longer than its address count (and, for
    VRRPv2/IPv4, the 8 auth bytes) implies.  Any other length is returned
    whole, for the length check to reject as keepalived does ("too long").
    """
    if len(payload) < 8:
        return payload, None
    per_addr = 4 if family == socket.AF_INET else 16
    auth = 8 if family == socket.AF_INET and payload[0] >> 4 == 2 else 0
    pdu_len = 8 + payload[3] * per_addr + auth
    if len(payload) == pdu_len + TRAILER_LEN:
        return payload[:pdu_len], payload[pdu_len:]
    return payload, None


# ---------------------------------------------------------------------------
# the HMAC


def pseudo_header(family: int, version: int, vrid: int, src: IPAddress) -> bytes:
    """The 20 bytes bound into the HMAC before the payload: family and VRID
    stop splicing between instances sharing a key, the source ties the
    advert to its sender."""
    want = IPv6Address if family == socket.AF_INET6 else IPv4Address
    if not isinstance(src, want):
        raise ValueError(f"source {src} does not match the instance's address family")
    head = bytes((6 if family == socket.AF_INET6 else 4, version, vrid, 0))
    return (head + src.packed).ljust(PSEUDO_LEN, b"\0")


def advert_hmac(key: bytes, pseudo: bytes, pdu: bytes, prefix: bytes) -> bytes:
    """The 16-byte HMAC of a VRRP PDU and its trailer's first 12 bytes."""
    if len(pdu) < 8:
        raise ValueError("VRRP payload shorter than its header")
    # Imported here: hashlib loads OpenSSL's libcrypto (megabytes of RSS),
    # which only instances with auth_hmac need.
    import hashlib
    import hmac

    mac = hmac.new(key, pseudo, hashlib.sha256)
    mac.update(pdu[:_VRRP_CHECKSUM_OFF])
    mac.update(b"\0\0")
    mac.update(pdu[_VRRP_CHECKSUM_OFF + 2 :])
    mac.update(prefix)
    mac.update(_ZERO_HMAC)
    return mac.digest()[:HMAC_LEN]


def sign_payload(
    pdu: bytes,
    *,
    key_id: int,
    key: bytes,
    seq: int,
    family: int,
    version: int,
    vrid: int,
    src: IPAddress,
) -> bytes:
    """The trailer keepalived appends to ``pdu`` (the VRRP payload as sent;
    its checksum field does not matter) for this key and sequence number."""
    unsigned = Trailer(key_id=key_id, seq=seq & _MASK64)
    mac = advert_hmac(key, pseudo_header(family, version, vrid, src), pdu, unsigned.prefix())
    return unsigned.prefix() + mac


# ---------------------------------------------------------------------------
# sequence numbers


def seq_after(a: int, b: int) -> bool:
    """RFC 1982 serial order over 64 bits: ``a`` is after ``b``."""
    diff = (a - b) & _MASK64
    return 0 < diff < (1 << 63)


def _int32(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def _wall_sec(wall: float) -> int:
    """``tv_sec`` of a wall-clock reading, as the uint32 keepalived uses."""
    return math.floor(wall) & _MASK32


def clock_sequence(wall: float) -> int:
    """A wall-clock reading as a sequence number with the counter clear:
    seconds in the high 32 bits, a 1/65536-second fraction in the next 16."""
    sec = math.floor(wall)
    nsec = min(int((wall - sec) * 1_000_000_000), 999_999_999)
    subsec = (nsec << 16) // 1_000_000_000
    return ((sec & _MASK32) << 32) | (subsec << 16)


@dataclass(slots=True)
class SendSequence:
    """A sender's sequence numbers (keepalived keeps no state on disk: a
    restarted sender stays monotonic as long as its clock moved on).

    Each advert takes the clock reading, or the last number plus one when
    the clock has not moved past it.  In time mode a sequence stranded more
    than the window ahead of the clock (the clock was stepped back) starts
    again from the clock, since receivers would call it stale anyway."""

    last: int = 0

    def next(self, wall: float, *, window: int, time_mode: bool) -> int:
        clk = clock_sequence(wall)
        if seq_after(clk, self.last):
            self.last = clk
            return clk
        ahead = _int32((self.last >> 32) - (clk >> 32))
        if time_mode and ahead > window:
            self.last = clk
        else:
            self.last = (self.last + 1) & _MASK64
        return self.last


# ---------------------------------------------------------------------------
# receiving


@dataclass(slots=True)
class ReplayState:
    """The highest sequence number accepted from one sender."""

    valid: bool = False
    seq: int = 0


@dataclass(slots=True)
class _McastSender:
    addr: bytes = b""
    replay: ReplayState = field(default_factory=ReplayState)
    last_used: int = 0  # 0: empty


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one verification.  ``skew`` is the receiver's clock
    minus the trailer's seconds (time mode; 0 otherwise) for keepalived's
    "clock skew approaching window" warning at more than half the window."""

    reason: Reason | None
    skew: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


_OK = Verdict(None)


class Verifier:
    """Receive side of one instance: keys, mode, window, per-sender replay
    state and the counters.

    ``unicast_peers``: the instance's unicast_peer addresses; with any, the
    instance is unicast and each peer anchors its own replay state (an
    advert from another address is rejected).  Without, senders are tracked
    in a table of :data:`MCAST_SENDERS` entries, least recently used
    evicted, filled only after the HMAC verified so forged sources cannot
    churn it.
    """

    def __init__(
        self,
        config: AuthHmacConfig,
        *,
        family: int,
        version: int,
        vrid: int,
        advert_int: float,
        unicast_peers: Iterable[IPAddress] = (),
    ) -> None:
        self.config = config
        self.family = family
        self.version = version
        self.vrid = vrid
        self.time_mode = config.anti_replay is AntiReplay.TIME
        self.window = config.window(advert_int)
        self.counters = Counters()
        self._peers: dict[bytes, ReplayState] = {p.packed: ReplayState() for p in unicast_peers}
        self.unicast = bool(self._peers)
        self._mcast = [_McastSender() for _ in range(MCAST_SENDERS)]
        self._lru_clock = 0

    def verify(self, pdu: bytes, trailer: bytes | None, *, src: IPAddress, wall: float) -> Verdict:
        """Check one received advert (``pdu`` without the trailer, as split by
        :func:`split_trailer`) from ``src`` at wall-clock time ``wall``, and
        count a rejection."""
        verdict = self._verify(pdu, trailer, src, wall)
        if verdict.reason is not None:
            self.counters.count(verdict.reason)
        return verdict

    def _verify(self, pdu: bytes, raw: bytes | None, src: IPAddress, wall: float) -> Verdict:
        config = self.config
        if raw is None:
            if config.mode is not Mode.ENFORCE:
                return _OK  # the migration modes accept unsigned adverts
            return Verdict(Reason.MISSING)
        peer_state: ReplayState | None = None
        if self.unicast:
            peer_state = self._peers.get(src.packed)
            if peer_state is None:
                return Verdict(Reason.NOT_A_PEER)
        tr = Trailer.unpack(raw)
        if tr.ext_type != EXT_TYPE_SHA256 or tr.reserved != 0:
            return Verdict(Reason.MALFORMED)
        skew = 0
        if self.time_mode:
            # Not authenticated yet: this only ever rejects.
            skew = _int32(_wall_sec(wall) - tr.sec)
            if abs(skew) > self.window:
                return Verdict(Reason.STALE, skew)
        key = config.keys.get(tr.key_id)
        if key is None:
            return Verdict(Reason.UNKNOWN_KEY, skew)
        want = advert_hmac(
            key, pseudo_header(self.family, self.version, self.vrid, src), pdu, tr.prefix()
        )
        if not compare_digest(want, tr.hmac):
            return Verdict(Reason.INVALID_HMAC, skew)
        state = peer_state if peer_state is not None else self._mcast_state(src.packed)
        if not self._replay_ok(state, tr.seq, wall):
            return Verdict(Reason.REPLAY, skew)
        return Verdict(None, skew)

    def _mcast_state(self, addr: bytes) -> ReplayState:
        victim: _McastSender | None = None
        for slot in self._mcast:
            if slot.last_used and slot.addr == addr:
                slot.last_used = self._next_lru()
                return slot.replay
            if victim is None or slot.last_used < victim.last_used:
                victim = slot
        assert victim is not None
        victim.addr = addr
        victim.replay = ReplayState()
        victim.last_used = self._next_lru()
        return victim.replay

    def _next_lru(self) -> int:
        # keepalived's rank is an unsigned int that skips 0 (the empty mark)
        # when it wraps.
        self._lru_clock = (self._lru_clock + 1) & _MASK32 or 1
        return self._lru_clock

    def _replay_ok(self, state: ReplayState, seq: int, wall: float) -> bool:
        if state.valid and self.time_mode:
            # A mark older (or newer) than the window only orders adverts the
            # window rejects anyway; forgetting it lets a sender whose clock
            # was stepped back in again.
            age = _int32(_wall_sec(wall) - (state.seq >> 32))
            if abs(age) > self.window:
                state.valid = False
        if state.valid and not seq_after(seq, state.seq):
            return False
        state.valid = True
        state.seq = seq
        return True

    def replay_state(self, src: IPAddress) -> ReplayState | None:
        """The replay state kept for ``src`` (for tests and status)."""
        if self.unicast:
            return self._peers.get(src.packed)
        for slot in self._mcast:
            if slot.last_used and slot.addr == src.packed:
                return slot.replay
        return None


class Signer:
    """Send side of one instance: the active key and the sequence numbers."""

    def __init__(
        self, config: AuthHmacConfig, *, family: int, version: int, vrid: int, advert_int: float
    ) -> None:
        self.config = config
        self.family = family
        self.version = version
        self.vrid = vrid
        self.time_mode = config.anti_replay is AntiReplay.TIME
        self.window = config.window(advert_int)
        self.sequence = SendSequence()

    @property
    def active(self) -> bool:
        """False in receive-only mode: adverts go out without a trailer."""
        return self.config.mode.signs

    def sign(self, pdu: bytes, *, src: IPAddress, wall: float) -> bytes:
        """The trailer for one advert (all its unicast copies share it);
        ``b""`` in receive-only mode."""
        if not self.active:
            return b""
        seq = self.sequence.next(wall, window=self.window, time_mode=self.time_mode)
        key_id = self.config.active_key
        return sign_payload(
            pdu,
            key_id=key_id,
            key=self.config.keys[key_id],
            seq=seq,
            family=self.family,
            version=self.version,
            vrid=self.vrid,
            src=src,
        )


# ---------------------------------------------------------------------------
# one received advert through every check, in keepalived 2.4.3's order


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check_advert` found.  Exactly one of ``error`` (the payload
    could not be decoded: length, version, ...) and ``rejection`` is set when
    the advert is refused; ``auth`` is the trailer's verdict when it was
    reached (``rejection`` is then ``AUTH_EXT`` if it failed)."""

    advert: pk.Advert | None
    error: pk.PacketError | None = None
    rejection: pk.Rejection | None = None
    auth: Verdict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.rejection is None


def check_advert(
    payload: bytes,
    *,
    expected: pk.ExpectedConfig,
    ctx: pk.RxContext,
    verifier: Verifier,
    wall: float,
    v3_checksum_as_v2: bool = False,
) -> Checked:
    """Decode and check a received VRRP payload (trailer included) for an
    instance with ``auth_hmac``: the trailer is split off by length, the
    payload decoded, then :func:`packet.validate` runs keepalived's checks
    with the trailer's verification at its place (after TTL and version).

    Over IPv6 the checksum covers the trailer too (the kernel computes it
    over the whole payload) and is checked first, where keepalived's kernel
    checks it."""
    family = expected.family
    if family == socket.AF_INET6 and not pk.verify_checksum(
        payload, src=ctx.src, dst=ctx.dst, family=family
    ):
        # keepalived's IPv6 receive socket has IPV6_CHECKSUM set: the kernel
        # drops a bad checksum (over the whole payload, trailer included)
        # before keepalived, and its auth_ext counters, ever see the packet.
        return Checked(None, rejection=pk.Rejection.CHECKSUM)
    pdu, trailer = split_trailer(payload, family)
    try:
        adv = pk.decode_advert(
            pdu,
            src=ctx.src,
            dst=ctx.dst,
            family=family,
            verify_checksum=False,
            v3_checksum_as_v2=v3_checksum_as_v2,
            require_advert_type=False,
        )
    except pk.PacketError as exc:
        return Checked(None, error=exc)
    if family == socket.AF_INET6:
        adv = replace(adv, checksum_status=pk.ChecksumStatus.OK)  # checked above
    verdicts: list[Verdict] = []

    def auth_ext() -> bool:
        verdict = verifier.verify(pdu, trailer, src=ctx.src, wall=wall)
        verdicts.append(verdict)
        return verdict.ok

    rejection = pk.validate(adv, expected, replace(ctx, auth_ext=auth_ext))
    return Checked(adv, rejection=rejection, auth=verdicts[0] if verdicts else None)
