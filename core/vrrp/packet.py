"""Pure VRRP wire codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), IPv4 and IPv6.

Nothing in here touches a socket.  The module covers

* the VRRP payload (what follows the IP header, or the AH header):
  :func:`encode_advert` / :func:`decode_advert`, and the :class:`Advert` value;
* checksums exactly as keepalived computes them (:func:`compute_checksum`,
  :func:`verify_checksum`);
* VRRPv2 IPsec-AH authentication (:func:`build_ah_packet`,
  :func:`verify_ah_packet`, :func:`ah_icv`) including the IPv4 header that
  keepalived itself builds (it sends IPv4 with ``IP_HDRINCL``);
* parsing of a received raw IPv4 datagram (:func:`parse_ipv4_datagram`);
* the pure part of keepalived's receive-side checks, in keepalived's order
  (:func:`validate`, :class:`ExpectedConfig`, :class:`Rejection`).

Checksum rules (verified against keepalived 2.2.7 captures, see
``tests/data/vrrp``):

* VRRPv2 over IPv4: RFC 1071 sum over the VRRP payload only (header, addresses
  and the 8 authentication bytes).
* VRRPv3 over IPv4: sum over the IPv4 pseudo-header (src, dst, 0, 112, VRRP
  length) plus the payload (RFC 5798 section 5.2.8).  For unicast the
  pseudo-header carries the real destination, so each peer gets a different
  checksum.  keepalived's ``v3_checksum_as_v2`` drops the pseudo-header, and
  its old unicast compatibility mode uses 224.0.0.18 as pseudo-header
  destination: pass that as ``dst`` / ``compat_dst``.
* IPv6 (v3, and keepalived's non-strict v2-over-IPv6): the kernel fills the
  checksum (``IPV6_CHECKSUM`` offset 6) over the IPv6 pseudo-header (src, dst,
  32-bit length, 3 zero bytes, next header 112) plus the payload; there is no
  authentication field.  :func:`encode_advert` computes the same value when
  given ``src``/``dst``.
"""

from __future__ import annotations

import enum
import socket
import struct

# hashlib/hmac are imported where AH needs them: they load OpenSSL's
# libcrypto, megabytes of RSS that a daemon without AH or auth_hmac never
# uses.  A PASS password is compared with the same constant-time function
# hmac.compare_digest falls back to.
from _operator import _compare_digest as compare_digest
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

__all__ = [
    "AH_HEADER_LEN",
    "AH_ICV_LEN",
    "AH_PAYLOAD_LEN_WORDS",
    "IPPROTO_AH",
    "IPPROTO_VRRP",
    "IPV4_HEADER_LEN",
    "VRRP_AUTH_LEN",
    "VRRP_HEADER_LEN",
    "VRRP_MCAST_V4",
    "VRRP_MCAST_V6",
    "VRRP_TOS",
    "VRRP_TTL",
    "VRRP_TYPE_ADVERT",
    "AHError",
    "AHHeader",
    "Advert",
    "AuthType",
    "ChecksumError",
    "ChecksumStatus",
    "ExpectedConfig",
    "IPAddress",
    "IPv4Datagram",
    "LengthError",
    "PacketError",
    "PacketErrorKind",
    "PacketTypeError",
    "Rejection",
    "RxContext",
    "TruncatedError",
    "VersionError",
    "advert_int_to_raw",
    "ah_icv",
    "auth_data_from_password",
    "build_ah_packet",
    "build_ipv4_header",
    "checksum_status",
    "compute_checksum",
    "decode_advert",
    "encode_advert",
    "expected_payload_len",
    "inet_checksum",
    "make_advert",
    "parse_ipv4_datagram",
    "precheck",
    "validate",
    "verify_ah_packet",
    "verify_checksum",
]

IPAddress = IPv4Address | IPv6Address

IPPROTO_VRRP = 112
IPPROTO_AH = 51
VRRP_TTL = 255
VRRP_TOS = 0xC0  # "internetwork control", what keepalived puts in its IPv4 header
VRRP_TYPE_ADVERT = 1
VRRP_HEADER_LEN = 8
VRRP_AUTH_LEN = 8
IPV4_HEADER_LEN = 20
AH_ICV_LEN = 12  # HMAC-MD5-96
AH_HEADER_LEN = 12 + AH_ICV_LEN
AH_PAYLOAD_LEN_WORDS = 4  # RFC 2402 "payload len": 32-bit words minus 2
VRRP_MCAST_V4 = IPv4Address("224.0.0.18")
VRRP_MCAST_V6 = IPv6Address("ff02::12")

_V2_MAX_RAW = 0xFF
_V3_MAX_RAW = 0x0FFF
_US = 1_000_000
_CS_US = 10_000


class AuthType(enum.IntEnum):
    """VRRPv2 authentication type (RFC 2338/3768 field; keepalived values)."""

    NONE = 0
    PASS = 1
    AH = 2


# ---------------------------------------------------------------------------
# errors


class PacketErrorKind(enum.Enum):
    TRUNCATED = "truncated"
    BAD_VERSION = "bad_version"
    BAD_TYPE = "bad_type"
    LENGTH_MISMATCH = "length_mismatch"
    BAD_CHECKSUM = "bad_checksum"
    BAD_ADDRESS = "bad_address"
    BAD_IP_HEADER = "bad_ip_header"
    AH_NEXT_HEADER = "ah_next_header"
    AH_BAD_ICV = "ah_bad_icv"
    AH_BAD_SPI = "ah_bad_spi"
    AH_MALFORMED = "ah_malformed"


class PacketError(ValueError):
    """A received packet cannot be accepted.  ``reason`` is human readable;
    ``kind`` is stable and meant for per-reason drop counters."""

    default_kind = PacketErrorKind.TRUNCATED

    def __init__(self, reason: str, kind: PacketErrorKind | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind if kind is not None else self.default_kind


class TruncatedError(PacketError):
    default_kind = PacketErrorKind.TRUNCATED


class VersionError(PacketError):
    default_kind = PacketErrorKind.BAD_VERSION


class PacketTypeError(PacketError):
    default_kind = PacketErrorKind.BAD_TYPE


class LengthError(PacketError):
    default_kind = PacketErrorKind.LENGTH_MISMATCH


class ChecksumError(PacketError):
    """The VRRP checksum is wrong (reported distinctly from other faults)."""

    default_kind = PacketErrorKind.BAD_CHECKSUM

    def __init__(self, reason: str, *, received: int, computed: int) -> None:
        super().__init__(reason)
        self.received = received
        self.computed = computed


class AHError(PacketError):
    default_kind = PacketErrorKind.AH_MALFORMED


class ChecksumStatus(enum.Enum):
    UNCHECKED = "unchecked"
    OK = "ok"
    #: matched only with the multicast group as pseudo-header destination
    #: (keepalived's old unicast VRRPv3 checksum, ``compat_dst``)
    OK_COMPAT = "ok_compat"
    BAD = "bad"


# ---------------------------------------------------------------------------
# the advert value


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP advertisement (the VRRP payload, without IP/AH headers).

    ``advert_int_raw`` is the field as on the wire: whole seconds for VRRPv2
    (8 bits), centiseconds for VRRPv3 (12 bits, ``Max Adver Int``);
    :attr:`advert_int` gives seconds as a float for both.

    ``auth_type``/``auth_data`` exist on the wire only for VRRPv2 over IPv4,
    where ``auth_data`` is always exactly 8 bytes (``b""`` is taken as 8 zero
    bytes; for AH keepalived sends zeros there, the key is not in the packet).  For VRRPv3 and IPv6 they are
    ``0`` / ``b""`` (the v2-over-IPv6 header still has an auth type byte).

    ``family`` is :data:`socket.AF_INET` or :data:`socket.AF_INET6`; ``0``
    means "infer from ``addresses``" (IPv4 when empty).

    ``checksum``, ``reserved`` and ``checksum_status`` describe a received
    packet; :func:`encode_advert` always recomputes the checksum and writes the
    VRRPv3 reserved bits as zero.
    """

    version: int
    vrid: int
    priority: int
    advert_int_raw: int
    addresses: tuple[IPAddress, ...] = ()
    auth_type: int = AuthType.NONE
    auth_data: bytes = b""
    family: int = 0
    type: int = VRRP_TYPE_ADVERT
    checksum: int = field(default=0, compare=False)
    reserved: int = field(default=0, compare=False)
    checksum_status: ChecksumStatus = field(default=ChecksumStatus.UNCHECKED, compare=False)

    def __post_init__(self) -> None:
        family = self.family
        if family == 0:
            family = (
                socket.AF_INET6
                if self.addresses and isinstance(self.addresses[0], IPv6Address)
                else socket.AF_INET
            )
            object.__setattr__(self, "family", family)
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be AF_INET or AF_INET6, not {family}")
        if not isinstance(self.addresses, tuple):
            object.__setattr__(self, "addresses", tuple(self.addresses))
        want = IPv4Address if family == socket.AF_INET else IPv6Address
        for addr in self.addresses:
            if not isinstance(addr, want):
                raise ValueError(f"address {addr} does not match family {family}")
        if self.version not in (2, 3):
            raise ValueError(f"VRRP version must be 2 or 3, not {self.version}")
        for name, value, top in (
            ("vrid", self.vrid, 0xFF),
            ("priority", self.priority, 0xFF),
            ("auth_type", self.auth_type, 0xFF),
            ("type", self.type, 0x0F),
            (
                "advert_int_raw",
                self.advert_int_raw,
                _V2_MAX_RAW if self.version == 2 else _V3_MAX_RAW,
            ),
            ("reserved", self.reserved, 0x0F),
            ("checksum", self.checksum, 0xFFFF),
        ):
            if not 0 <= value <= top:
                raise ValueError(f"{name} {value} out of range 0..{top}")
        if len(self.addresses) > 0xFF:
            raise ValueError("at most 255 addresses fit in an advert")
        if self.has_auth_field:
            if not self.auth_data:
                object.__setattr__(self, "auth_data", bytes(VRRP_AUTH_LEN))
            elif len(self.auth_data) != VRRP_AUTH_LEN:
                raise ValueError("VRRPv2/IPv4 auth_data must be exactly 8 bytes")
        else:
            if self.auth_data:
                raise ValueError("auth_data is only carried by VRRPv2 over IPv4")
            if self.version == 3 and self.auth_type:
                raise ValueError("VRRPv3 has no authentication")

    @property
    def has_auth_field(self) -> bool:
        """True for VRRPv2 over IPv4, the only layout with 8 auth bytes."""
        return self.version == 2 and self.family == socket.AF_INET

    @property
    def advert_int(self) -> float:
        """Advertisement interval in seconds."""
        if self.version == 2:
            return float(self.advert_int_raw)
        return self.advert_int_raw / 100.0

    @property
    def advert_int_cs(self) -> int:
        """Advertisement interval in centiseconds."""
        return self.advert_int_raw * 100 if self.version == 2 else self.advert_int_raw

    def with_priority(self, priority: int) -> Advert:
        return Advert(
            version=self.version,
            vrid=self.vrid,
            priority=priority,
            advert_int_raw=self.advert_int_raw,
            addresses=self.addresses,
            auth_type=self.auth_type,
            auth_data=self.auth_data,
            family=self.family,
            type=self.type,
        )


def advert_int_to_raw(version: int, seconds: float) -> int:
    """The wire value keepalived derives from ``advert_int <seconds>``.

    keepalived keeps the interval in microseconds; VRRPv2 rounds half up to
    whole seconds (at least 1, at most 255), VRRPv3 rounds half up to
    centiseconds (at least 1, at most 4095).
    """
    if not seconds > 0:
        raise ValueError(f"advert_int must be > 0, not {seconds}")
    us = round(seconds * _US)
    unit, top = (_US, _V2_MAX_RAW) if version == 2 else (_CS_US, _V3_MAX_RAW)
    if version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, not {version}")
    if us >= (top + 1) * unit:
        return top
    if us % unit:
        us += unit // 2
        us -= us % unit
    return max(us // unit, 1)


def auth_data_from_password(password: str | bytes) -> bytes:
    """keepalived's ``auth_pass``: truncated to 8 bytes, zero padded to 8."""
    raw = password.encode() if isinstance(password, str) else bytes(password)
    return raw[:VRRP_AUTH_LEN].ljust(VRRP_AUTH_LEN, b"\0")


def make_advert(
    *,
    version: int,
    vrid: int,
    priority: int,
    advert_int: float,
    addresses: Iterable[IPAddress | str],
    auth_type: AuthType | int = AuthType.NONE,
    auth_pass: str | bytes = b"",
    family: int = 0,
) -> Advert:
    """Build the advert keepalived sends for a ``vrrp_instance`` config.

    ``auth_pass`` is only copied into the packet for PASS; with AH the
    packet's auth bytes are zero and the password is the HMAC key (see
    :func:`build_ah_packet`).  VRRPv3 ignores authentication.
    """
    addrs = tuple(ip_address(a) if isinstance(a, str) else a for a in addresses)
    fam = family or (
        socket.AF_INET6 if addrs and isinstance(addrs[0], IPv6Address) else socket.AF_INET
    )
    v2_ipv4 = version == 2 and fam == socket.AF_INET
    atype = int(auth_type) if version == 2 else 0
    if v2_ipv4:
        data = (
            auth_data_from_password(auth_pass) if atype == AuthType.PASS else bytes(VRRP_AUTH_LEN)
        )
    else:
        data = b""
    return Advert(
        version=version,
        vrid=vrid,
        priority=priority,
        advert_int_raw=advert_int_to_raw(version, advert_int),
        addresses=addrs,
        auth_type=atype,
        auth_data=data,
        family=fam,
    )


# ---------------------------------------------------------------------------
# checksums


def inet_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd length padded with a zero
    byte), starting from the 32-bit partial sum ``initial``."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _family_of(addr: IPAddress) -> int:
    return socket.AF_INET6 if isinstance(addr, IPv6Address) else socket.AF_INET


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return src.packed + dst.packed + struct.pack("!I3xB", length, IPPROTO_VRRP)
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return src.packed + dst.packed + struct.pack("!xBH", IPPROTO_VRRP, length)
    raise ValueError(f"src {src} and dst {dst} are of different families")


def _checksum_prefix(
    version: int,
    family: int,
    src: IPAddress | None,
    dst: IPAddress | None,
    length: int,
    v3_checksum_as_v2: bool,
) -> bytes:
    if family == socket.AF_INET and (version == 2 or v3_checksum_as_v2):
        return b""
    if src is None or dst is None:
        raise ValueError("src and dst are needed for the VRRPv3/IPv6 pseudo-header checksum")
    if _family_of(src) != family or _family_of(dst) != family:
        raise ValueError(f"src {src}/dst {dst} do not match the advert's address family")
    return _pseudo_header(src, dst, length)


def compute_checksum(
    payload: bytes,
    *,
    src: IPAddress | None = None,
    dst: IPAddress | None = None,
    family: int | None = None,
    v3_checksum_as_v2: bool = False,
) -> int:
    """The checksum keepalived (or, for IPv6, the kernel) puts in ``payload``.

    The checksum field inside ``payload`` (bytes 6-7) is treated as zero.
    ``family`` defaults to the family of ``src``.  ``src``/``dst`` are not
    needed for VRRPv2 over IPv4 or with ``v3_checksum_as_v2``.
    """
    if len(payload) < VRRP_HEADER_LEN:
        raise ValueError("payload shorter than the VRRP header")
    fam = family if family is not None else (_family_of(src) if src is not None else socket.AF_INET)
    version = payload[0] >> 4
    zeroed = payload[:6] + b"\0\0" + payload[8:]
    prefix = _checksum_prefix(version, fam, src, dst, len(payload), v3_checksum_as_v2)
    return inet_checksum(prefix + zeroed)


def verify_checksum(
    payload: bytes,
    *,
    src: IPAddress | None = None,
    dst: IPAddress | None = None,
    family: int | None = None,
    v3_checksum_as_v2: bool = False,
) -> bool:
    """True when the checksum inside ``payload`` is right (keepalived accepts
    a packet when the sum over it, checksum included, folds to zero)."""
    if len(payload) < VRRP_HEADER_LEN:
        return False
    fam = family if family is not None else (_family_of(src) if src is not None else socket.AF_INET)
    prefix = _checksum_prefix(payload[0] >> 4, fam, src, dst, len(payload), v3_checksum_as_v2)
    return inet_checksum(prefix + payload) == 0


def checksum_status(
    payload: bytes,
    *,
    src: IPAddress,
    dst: IPAddress,
    family: int | None = None,
    v3_checksum_as_v2: bool = False,
    compat_dst: IPAddress | None = None,
) -> ChecksumStatus:
    """Like :func:`verify_checksum`, with keepalived's unicast fallback: when
    the real ``dst`` fails, a VRRPv3/IPv4 packet is retried with ``compat_dst``
    (normally :data:`VRRP_MCAST_V4`) as pseudo-header destination."""
    if verify_checksum(
        payload, src=src, dst=dst, family=family, v3_checksum_as_v2=v3_checksum_as_v2
    ):
        return ChecksumStatus.OK
    if (
        compat_dst is not None
        and compat_dst != dst
        and _family_of(compat_dst) == _family_of(dst)
        and verify_checksum(
            payload, src=src, dst=compat_dst, family=family, v3_checksum_as_v2=v3_checksum_as_v2
        )
    ):
        return ChecksumStatus.OK_COMPAT
    return ChecksumStatus.BAD


# ---------------------------------------------------------------------------
# encode / decode


def expected_payload_len(version: int, family: int, naddr: int) -> int:
    """VRRP payload length for ``naddr`` addresses (keepalived's rule)."""
    size = 4 if family == socket.AF_INET else 16
    auth = VRRP_AUTH_LEN if version == 2 and family == socket.AF_INET else 0
    return VRRP_HEADER_LEN + naddr * size + auth


def encode_advert(
    advert: Advert,
    *,
    src: IPAddress | None = None,
    dst: IPAddress | None = None,
    v3_checksum_as_v2: bool = False,
) -> bytes:
    """The VRRP payload keepalived sends for ``advert``.

    * VRRPv2/IPv4: checksum over the payload; ``src``/``dst`` unused.
    * VRRPv3/IPv4: ``src`` and ``dst`` (multicast group, or the unicast peer
      this copy goes to) are required unless ``v3_checksum_as_v2``.
    * IPv6: keepalived leaves the checksum 0 and the kernel fills it.  Without
      ``src``/``dst`` this returns 0 there too (for a socket with
      ``IPV6_CHECKSUM``); with them it returns what goes on the wire.
    """
    body = b"".join(a.packed for a in advert.addresses)
    if advert.version == 2:
        hdr = struct.pack(
            "!BBBBBBH",
            (2 << 4) | advert.type,
            advert.vrid,
            advert.priority,
            len(advert.addresses),
            advert.auth_type,
            advert.advert_int_raw,
            0,
        )
    else:
        hdr = struct.pack(
            "!BBBBHH",
            (3 << 4) | advert.type,
            advert.vrid,
            advert.priority,
            len(advert.addresses),
            advert.advert_int_raw & _V3_MAX_RAW,
            0,
        )
    payload = hdr + body + (advert.auth_data if advert.has_auth_field else b"")
    if advert.family == socket.AF_INET6 and (src is None or dst is None):
        return payload
    csum = compute_checksum(
        payload, src=src, dst=dst, family=advert.family, v3_checksum_as_v2=v3_checksum_as_v2
    )
    return payload[:6] + struct.pack("!H", csum) + payload[8:]


def decode_advert(
    payload: bytes,
    *,
    src: IPAddress,
    dst: IPAddress,
    family: int | None = None,
    verify_checksum: bool = True,
    v3_checksum_as_v2: bool = False,
    compat_dst: IPAddress | None = None,
    require_advert_type: bool = True,
) -> Advert:
    """Parse a VRRP payload.  Raises a :class:`PacketError` subclass, never
    anything else, for any input it does not accept:

    * :class:`TruncatedError` - shorter than the 8-byte header;
    * :class:`VersionError` - version other than 2 or 3;
    * :class:`PacketTypeError` - type other than 1 (advertisement), unless
      ``require_advert_type`` is false (then :func:`validate` reports it);
    * :class:`LengthError` - length differs from what the address count
      implies (keepalived requires exact equality);
    * :class:`ChecksumError` - bad checksum, if ``verify_checksum``.  With
      ``verify_checksum=False`` the result is still computed and stored in
      :attr:`Advert.checksum_status` so :func:`validate` can report it in
      keepalived's order;
    * :class:`PacketError` (``BAD_ADDRESS``) - ``src``/``dst``/``family``
      disagree.
    """
    data = bytes(payload)
    if not isinstance(src, IPv4Address | IPv6Address) or not isinstance(
        dst, IPv4Address | IPv6Address
    ):
        raise PacketError("src and dst must be ipaddress objects", PacketErrorKind.BAD_ADDRESS)
    fam = family if family is not None else _family_of(src)
    if fam not in (socket.AF_INET, socket.AF_INET6):
        raise PacketError(f"unknown address family {fam}", PacketErrorKind.BAD_ADDRESS)
    if _family_of(src) != fam or _family_of(dst) != fam:
        raise PacketError(
            f"src {src} / dst {dst} do not match address family {fam}",
            PacketErrorKind.BAD_ADDRESS,
        )
    if len(data) < VRRP_HEADER_LEN:
        raise TruncatedError(
            f"VRRP packet too short: {len(data)} bytes, header needs {VRRP_HEADER_LEN}"
        )
    version = data[0] >> 4
    ptype = data[0] & 0x0F
    naddr = data[3]
    # keepalived 2.2.7 checks the length first (auth bytes only for a version-2
    # header), then the version: a v2-sized packet claiming version 1 is a
    # length error there, a v1 packet of the right size a version error.
    expected = expected_payload_len(version, fam, naddr)
    if len(data) != expected:
        raise LengthError(
            f"VRRPv{version} packet too {'long' if len(data) > expected else 'short'}: "
            f"{len(data)} bytes, {naddr} addresses need {expected}"
        )
    if version not in (2, 3):
        raise VersionError(f"unsupported VRRP version {version}")
    if require_advert_type and ptype != VRRP_TYPE_ADVERT:
        raise PacketTypeError(f"invalid VRRP packet type {ptype}, expected {VRRP_TYPE_ADVERT}")

    (received_csum,) = struct.unpack_from("!H", data, 6)
    status = checksum_status(
        data,
        src=src,
        dst=dst,
        family=fam,
        v3_checksum_as_v2=v3_checksum_as_v2,
        compat_dst=compat_dst if version == 3 and fam == socket.AF_INET else None,
    )
    if verify_checksum and status is ChecksumStatus.BAD:
        computed = compute_checksum(
            data, src=src, dst=dst, family=fam, v3_checksum_as_v2=v3_checksum_as_v2
        )
        raise ChecksumError(
            f"invalid VRRPv{version} checksum 0x{received_csum:04x}, expected 0x{computed:04x}",
            received=received_csum,
            computed=computed,
        )

    size = 4 if fam == socket.AF_INET else 16
    cls = IPv4Address if fam == socket.AF_INET else IPv6Address
    addresses: tuple[IPAddress, ...] = tuple(
        cls(data[VRRP_HEADER_LEN + i * size : VRRP_HEADER_LEN + (i + 1) * size])
        for i in range(naddr)
    )
    if version == 2:
        auth_type = data[4]
        raw_int = data[5]
        reserved = 0
        auth = data[-VRRP_AUTH_LEN:] if fam == socket.AF_INET else b""
    else:
        auth_type = 0
        (word,) = struct.unpack_from("!H", data, 4)
        raw_int = word & _V3_MAX_RAW
        reserved = word >> 12
        auth = b""
    return Advert(
        version=version,
        vrid=data[1],
        priority=data[2],
        advert_int_raw=raw_int,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth,
        family=fam,
        type=ptype,
        checksum=received_csum,
        reserved=reserved,
        checksum_status=status,
    )


# ---------------------------------------------------------------------------
# IPv4 header and IPsec AH (VRRPv2 only)


@dataclass(frozen=True, slots=True)
class AHHeader:
    """RFC 2402 authentication header as keepalived fills it."""

    next_header: int
    payload_len: int
    reserved: int
    spi: int
    seq: int
    icv: bytes

    def pack(self) -> bytes:
        return (
            struct.pack(
                "!BBHII", self.next_header, self.payload_len, self.reserved, self.spi, self.seq
            )
            + self.icv
        )

    @classmethod
    def unpack(cls, data: bytes) -> AHHeader:
        if len(data) < AH_HEADER_LEN:
            raise TruncatedError(f"AH header too short: {len(data)} bytes, need {AH_HEADER_LEN}")
        nh, plen, rsv, spi, seq = struct.unpack_from("!BBHII", data)
        return cls(nh, plen, rsv, spi, seq, bytes(data[12:AH_HEADER_LEN]))


def build_ipv4_header(
    *,
    src: IPv4Address,
    dst: IPv4Address,
    payload_len: int,
    proto: int = IPPROTO_VRRP,
    ttl: int = VRRP_TTL,
    tos: int = VRRP_TOS,
    ident: int = 0,
    frag_off: int = 0,
    with_checksum: bool = True,
) -> bytes:
    """The 20-byte IPv4 header keepalived builds (``IP_HDRINCL``): version 4,
    IHL 5, TOS 0xc0, DF clear, TTL 255, protocol 112 (or 51 with AH).

    keepalived leaves the header checksum 0 and lets the kernel fill it; with
    ``with_checksum`` (default) it is computed here so the result equals the
    bytes on the wire.  ``payload_len`` excludes this header.
    """
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        tos,
        IPV4_HEADER_LEN + payload_len,
        ident,
        frag_off,
        ttl,
        proto,
        0,
        src.packed,
        dst.packed,
    )
    if with_checksum:
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
    return hdr


def _zero_mutable_ipv4(ip_header: bytes, *, unicast: bool) -> bytes:
    buf = bytearray(ip_header)
    buf[1] = 0  # TOS
    buf[6:8] = b"\0\0"  # flags + fragment offset
    buf[10:12] = b"\0\0"  # header checksum
    if unicast:
        buf[8] = 0  # TTL
    return bytes(buf)


def ah_icv(ip_header: bytes, ah_and_payload: bytes, key: bytes, *, unicast: bool = False) -> bytes:
    """HMAC-MD5-96 ICV exactly as keepalived computes it.

    Input to HMAC-MD5 (RFC 2104) keyed with the 8-byte zero-padded
    ``auth_pass`` (:func:`auth_data_from_password`; any key is padded to 8):

    1. the IPv4 header (all ``IHL*4`` bytes, options included and *not*
       zeroed) with TOS, flags+fragment offset and header checksum set to 0,
       and TTL set to 0 **only for unicast** instances (multicast keeps 255).
       Identification, total length, protocol (51) and addresses are kept;
    2. the AH header with its 12-byte ICV field zeroed (next header 112,
       payload length 4, reserved 0, SPI, sequence number kept);
    3. the VRRP payload unchanged (its own checksum and its 8 zero auth bytes).

    The first 12 bytes of the MD5 HMAC are the ICV.
    """
    if len(ah_and_payload) < AH_HEADER_LEN:
        raise ValueError("AH header missing")
    k = key[:VRRP_AUTH_LEN].ljust(VRRP_AUTH_LEN, b"\0") if len(key) <= VRRP_AUTH_LEN else key
    msg = (
        _zero_mutable_ipv4(ip_header, unicast=unicast)
        + ah_and_payload[:12]
        + bytes(AH_ICV_LEN)
        + ah_and_payload[AH_HEADER_LEN:]
    )
    base = _AH_KEYS.get(k)
    if base is None:
        import hashlib
        import hmac

        if len(_AH_KEYS) >= 64:  # bounded: a key per configured auth_pass
            _AH_KEYS.clear()
        base = _AH_KEYS[k] = hmac.new(k, digestmod=hashlib.md5)
    mac = base.copy()
    mac.update(msg)
    return mac.digest()[:AH_ICV_LEN]


#: HMAC-MD5 states keyed with each AH password, copied for every ICV
#: (saves hashing the key twice per advert).
_AH_KEYS: dict[bytes, Any] = {}


def build_ah_packet(
    advert: Advert,
    *,
    src: IPv4Address,
    dst: IPv4Address,
    key: bytes | str,
    seq: int,
    ident: int,
    unicast: bool = False,
    ttl: int = VRRP_TTL,
    tos: int = VRRP_TOS,
    vrrp: bytes | None = None,
) -> bytes:
    """The complete IPv4 datagram keepalived sends for a VRRPv2 AH instance.

    IP protocol 51; AH next header 112, payload length 4, SPI = ``src`` (the
    address bytes, i.e. its integer value in network order), sequence number
    ``seq`` (keepalived starts at 1 and increments once per advert round, all
    unicast peers of one round share it), ICV per :func:`ah_icv`.
    ``ident`` is the IP identification (keepalived: 1, 2, ... per round, never
    0).  ``key`` is the ``auth_pass`` (truncated/padded to 8 bytes).
    ``advert`` must be VRRPv2/IPv4 (normally ``auth_type`` AH, zero auth
    bytes).  The IP header checksum is filled in as the kernel would.
    """
    if not advert.has_auth_field:
        raise ValueError("IPsec AH is only used by VRRPv2 over IPv4")
    k = auth_data_from_password(key)
    if vrrp is None:  # else the caller's encode_advert(advert), kept across adverts
        vrrp = encode_advert(advert)
    ah_len = AH_HEADER_LEN + len(vrrp)
    ip = build_ipv4_header(
        src=src, dst=dst, payload_len=ah_len, proto=IPPROTO_AH, ttl=ttl, tos=tos, ident=ident
    )
    ah = AHHeader(IPPROTO_VRRP, AH_PAYLOAD_LEN_WORDS, 0, int(src), seq, bytes(AH_ICV_LEN)).pack()
    icv = ah_icv(ip, ah + vrrp, k, unicast=unicast)
    return ip + ah[:12] + icv + vrrp


@dataclass(frozen=True, slots=True)
class IPv4Datagram:
    """A received raw IPv4 datagram split into its parts."""

    src: IPv4Address
    dst: IPv4Address
    ttl: int
    proto: int
    total_length: int
    header: bytes
    ah: AHHeader | None
    payload: bytes  # the VRRP payload (after the AH header, if any)


def parse_ipv4_datagram(datagram: bytes) -> IPv4Datagram:
    """Split a datagram read from an IPv4 raw socket (protocol 112 or 51).

    Mirrors keepalived's checks: the header must fit, the IP total length must
    equal the received length, and with AH the 24-byte AH header must fit.
    Raises :class:`PacketError` (``BAD_IP_HEADER`` / ``TRUNCATED``)."""
    data = bytes(datagram)
    if len(data) < IPV4_HEADER_LEN:
        raise TruncatedError(f"IPv4 packet too short: {len(data)} bytes")
    if data[0] >> 4 != 4:
        raise PacketError(
            f"not an IPv4 header (version {data[0] >> 4})", PacketErrorKind.BAD_IP_HEADER
        )
    ihl = (data[0] & 0x0F) * 4
    if ihl < IPV4_HEADER_LEN:
        raise PacketError(f"invalid IPv4 header length {ihl}", PacketErrorKind.BAD_IP_HEADER)
    (tot_len,) = struct.unpack_from("!H", data, 2)
    proto = data[9]
    ah: AHHeader | None = None
    off = ihl
    if proto == IPPROTO_AH:
        if len(data) < ihl + AH_HEADER_LEN + VRRP_HEADER_LEN:
            raise TruncatedError(f"IPv4 VRRP packet with AH too short: {len(data)} bytes")
        ah = AHHeader.unpack(data[ihl : ihl + AH_HEADER_LEN])
        off += AH_HEADER_LEN
    elif len(data) < ihl + VRRP_HEADER_LEN:
        raise TruncatedError(f"IPv4 VRRP packet too short: {len(data)} bytes")
    if tot_len != len(data):
        raise PacketError(
            f"IP total length {tot_len} does not match received length {len(data)}",
            PacketErrorKind.BAD_IP_HEADER,
        )
    return IPv4Datagram(
        src=IPv4Address(data[12:16]),
        dst=IPv4Address(data[16:20]),
        ttl=data[8],
        proto=proto,
        total_length=tot_len,
        header=data[:ihl],
        ah=ah,
        payload=data[off:],
    )


def verify_ah_packet(datagram: bytes, key: bytes | str, *, unicast: bool = False) -> IPv4Datagram:
    """Authenticate a received IPv4+AH datagram the way keepalived does.

    Checks, in keepalived's order: AH next header is 112 (else
    ``AH_NEXT_HEADER``, keepalived silently drops), ICV (``AH_BAD_ICV``), SPI
    equals the IP source address (``AH_BAD_SPI``).  The anti-replay check
    (``seq`` must exceed the last accepted one) is stateful and left to the
    caller: compare ``result.ah.seq``.  Raises :class:`AHError`.
    """
    dg = parse_ipv4_datagram(datagram)
    if dg.ah is None:
        raise AHError(f"IP protocol {dg.proto} is not AH", PacketErrorKind.AH_MALFORMED)
    if dg.ah.next_header != IPPROTO_VRRP:
        raise AHError(
            f"AH next header {dg.ah.next_header} is not VRRP", PacketErrorKind.AH_NEXT_HEADER
        )
    k = auth_data_from_password(key)
    ihl = len(dg.header)
    want = ah_icv(dg.header, bytes(datagram)[ihl:], k, unicast=unicast)
    if not compare_digest(want, dg.ah.icv):
        raise AHError(
            "invalid IPSEC HMAC-MD5 value (fields mutated or bad password)",
            PacketErrorKind.AH_BAD_ICV,
        )
    if dg.ah.spi != int(dg.src):
        raise AHError(
            f"invalid IPSEC SPI 0x{dg.ah.spi:08x}, expected source address {dg.src}",
            PacketErrorKind.AH_BAD_SPI,
        )
    return dg


# ---------------------------------------------------------------------------
# receive-side validation (keepalived's vrrp_check_packet order)


class Rejection(enum.Enum):
    """Why keepalived would not accept an advert.  ``counter`` is the
    keepalived statistics field it bumps (``""`` for none) and ``drop`` is
    True where keepalived silently ignores (VRRP_PACKET_DROP/OTHER) rather than
    rejecting (VRRP_PACKET_KO)."""

    UNKNOWN_VRID = ("unknown_vrid", "", True)
    AH_HEADER_MISMATCH = ("ah_header_mismatch", "authtype_mismatch", False)
    TTL = ("ttl", "ip_ttl_err", False)
    VERSION = ("version", "vers_err", False)
    #: keepalived 2.4 auth_hmac trailer rejected (its own counters, see
    #: auth_hmac.Reason); checked right after the version, as 2.4.3 does
    AUTH_EXT = ("auth_ext", "", False)
    INVALID_AUTH_TYPE = ("invalid_auth_type", "invalid_authtype", False)
    AUTH_TYPE_MISMATCH = ("auth_type_mismatch", "authtype_mismatch", False)
    AUTH_FAILURE = ("auth_failure", "auth_failure", False)
    AH_OTHER_PROTOCOL = ("ah_other_protocol", "", True)
    ADVERT_INT_MISMATCH = ("advert_int_mismatch", "", True)
    INVALID_TYPE = ("invalid_type", "invalid_type_rcvd", False)
    ADDR_COUNT_MISMATCH = ("addr_count_mismatch", "addr_list_err", False)
    CHECKSUM = ("checksum", "chk_err", False)
    CAST_MISMATCH = ("cast_mismatch", "addr_list_err", False)
    VIP_MISSING = ("vip_missing", "addr_list_err", False)
    UNICAST_SRC_NOT_PEER = ("unicast_src_not_peer", "", False)
    UNICAST_TTL_RANGE = ("unicast_ttl_range", "ip_ttl_err", False)

    def __init__(self, label: str, counter: str, drop: bool) -> None:
        self.label = label
        self.counter = counter
        self.drop = drop


@dataclass(frozen=True, slots=True)
class ExpectedConfig:
    """What the local ``vrrp_instance`` expects (the pure part of it)."""

    version: int
    vrid: int
    family: int = socket.AF_INET
    auth_type: int = AuthType.NONE
    auth_data: bytes = bytes(VRRP_AUTH_LEN)  # 8-byte padded auth_pass (PASS)
    advert_int_raw: int = 1  # checked for VRRPv2 only
    addresses: tuple[IPAddress, ...] = ()
    unicast: bool = False
    unicast_peers: tuple[IPAddress, ...] = ()
    check_unicast_src: bool = False
    #: False models ``skip_check_adv_addr`` when the advert comes from the
    #: same master as before (keepalived then skips the address checks)
    check_vip_addr: bool = True
    #: ``min_ttl``/``max_ttl`` of each of ``unicast_peers`` (same order;
    #: a peer without an entry accepts any TTL).  Checked, as keepalived
    #: 2.2.7 does, only with ``check_unicast_src``.
    unicast_ttl_ranges: tuple[tuple[int, int], ...] = ()

    def ttl_range(self, src: IPAddress) -> tuple[int, int]:
        """The TTL/hop-limit range accepted from unicast peer ``src``."""
        for peer, rng in zip(self.unicast_peers, self.unicast_ttl_ranges, strict=False):
            if peer == src:
                return rng
        return (0, 255)


@dataclass(frozen=True, slots=True)
class RxContext:
    """Facts about how the advert arrived (from the IP header / cmsg)."""

    src: IPAddress
    dst: IPAddress
    ttl: int | None = None  # None: unknown, not checked
    ah: bool = False  # IPv4 protocol was 51
    ah_next_header: int = IPPROTO_VRRP
    #: outcome of :func:`verify_ah_packet` plus the replay check; None = not done
    ah_ok: bool | None = None
    #: for IPv6 keepalived relies on whether the packet was sent to multicast
    multicast: bool | None = None
    #: keepalived 2.4 auth_hmac: called (once, at keepalived's place in the
    #: order) to verify the trailer; False rejects.  None: not configured.
    auth_ext: Callable[[], bool] | None = None


def _is_multicast(ctx: RxContext) -> bool:
    if ctx.multicast is not None:
        return ctx.multicast
    return ctx.dst.is_multicast


def validate(advert: Advert, expected: ExpectedConfig, ctx: RxContext) -> Rejection | None:
    """keepalived's acceptance checks on a decoded advert, first failure wins.

    Order (keepalived 2.2.7 ``vrrp_check_packet``, after the VRID lookup and
    the length check, which :func:`decode_advert` already did):
    VRID, AH presence vs auth type (IPv4), TTL 255 (multicast only), version,
    the auth_hmac trailer (keepalived 2.4, ``ctx.auth_ext``), v2: auth type valid / equal / password or AH result, v2 advert interval
    (silently dropped), type, address count, checksum (if decode recorded
    it), multicast-vs-unicast destination, every configured VIP present in
    the advert, unicast source in peer list and its TTL range.

    A VIP list mismatch is *rejected* (not just logged) unless
    ``check_vip_addr`` is false.  A priority of 0 is accepted.
    """
    if advert.vrid != expected.vrid:
        return Rejection.UNKNOWN_VRID
    ipv4 = expected.family == socket.AF_INET
    if ipv4 and ctx.ah != (expected.auth_type == AuthType.AH):
        return Rejection.AH_HEADER_MISMATCH
    if not expected.unicast and ctx.ttl is not None and ctx.ttl != VRRP_TTL:
        return Rejection.TTL
    if advert.version != expected.version:
        return Rejection.VERSION
    if ctx.auth_ext is not None and not ctx.auth_ext():
        return Rejection.AUTH_EXT
    if expected.version == 2:
        if advert.auth_type not in (AuthType.NONE, AuthType.PASS, AuthType.AH):
            return Rejection.INVALID_AUTH_TYPE
        if advert.auth_type != expected.auth_type:
            return Rejection.AUTH_TYPE_MISMATCH
        if expected.auth_type == AuthType.PASS and not compare_digest(
            advert.auth_data, expected.auth_data
        ):
            return Rejection.AUTH_FAILURE
        if expected.auth_type == AuthType.AH:
            if ctx.ah_next_header != IPPROTO_VRRP:
                return Rejection.AH_OTHER_PROTOCOL
            if ctx.ah_ok is False:
                return Rejection.AUTH_FAILURE
        if advert.advert_int_raw != expected.advert_int_raw:
            return Rejection.ADVERT_INT_MISMATCH
    if advert.type != VRRP_TYPE_ADVERT:
        return Rejection.INVALID_TYPE
    if expected.check_vip_addr and len(advert.addresses) != len(expected.addresses):
        return Rejection.ADDR_COUNT_MISMATCH
    if advert.checksum_status is ChecksumStatus.BAD:
        return Rejection.CHECKSUM
    if _is_multicast(ctx) == expected.unicast:
        return Rejection.CAST_MISMATCH
    if expected.check_vip_addr:
        present = set(advert.addresses)
        if any(a not in present for a in expected.addresses):
            return Rejection.VIP_MISSING
        if expected.unicast and expected.check_unicast_src:
            if ctx.src not in expected.unicast_peers:
                return Rejection.UNICAST_SRC_NOT_PEER
            lo, hi = expected.ttl_range(ctx.src)
            if ctx.ttl is not None and not lo <= ctx.ttl <= hi:
                return Rejection.UNICAST_TTL_RANGE
    return None


_PSEUDO4 = struct.Struct("!xBH")
_PSEUDO6 = struct.Struct("!I3xB")


def precheck(
    payload: bytes,
    family: int,
    ttl: int | None,
    expected: ExpectedConfig,
    *,
    src: bytes | None = None,
    dst: bytes | None = None,
    v3_checksum_as_v2: bool = False,
    vips: frozenset[bytes] | None = None,
) -> Rejection | PacketErrorKind | None:
    """The cheap part of :func:`decode_advert` + :func:`validate`, on the raw
    payload of a plain (not AH) packet, without building anything.

    Returns what the full path (``decode_advert(verify_checksum=False,
    require_advert_type=False)``, then ``validate``) would report first (a
    decoding error's kind, or the rejection) when it is one of the checks up
    to the checksum (keepalived's order: length, version, TTL, auth,
    interval, type, address count, and with the packed ``src``/``dst`` the
    checksum; with ``vips``, the packed ``expected.addresses``, also the
    multicast/unicast destination and the addresses in the advert), and None
    when the packet passes them: then only the full path can tell (the
    unicast source checks, or everything after the checksum without
    ``vips``).  A
    flood of junk is mostly dropped here, at a fraction of the full cost;
    tests/test_vrrp_packet.py checks both paths agree on random packets.
    """
    n = len(payload)
    if n < VRRP_HEADER_LEN:
        return PacketErrorKind.TRUNCATED
    b0 = payload[0]
    version = b0 >> 4
    naddr = payload[3]
    if family == socket.AF_INET:
        want = VRRP_HEADER_LEN + 4 * naddr + (VRRP_AUTH_LEN if version == 2 else 0)
    else:
        want = VRRP_HEADER_LEN + 16 * naddr
    if n != want:
        return PacketErrorKind.LENGTH_MISMATCH
    if version != 2 and version != 3:
        return PacketErrorKind.BAD_VERSION
    if payload[1] != expected.vrid:
        return Rejection.UNKNOWN_VRID
    if expected.family == socket.AF_INET and expected.auth_type == AuthType.AH:
        return Rejection.AH_HEADER_MISMATCH  # a plain packet where AH is expected
    if not expected.unicast and ttl is not None and ttl != VRRP_TTL:
        return Rejection.TTL
    if version != expected.version:
        return Rejection.VERSION
    if version == 2:
        auth_type = payload[4]
        if auth_type > AuthType.AH:
            return Rejection.INVALID_AUTH_TYPE
        if auth_type != expected.auth_type:
            return Rejection.AUTH_TYPE_MISMATCH
        if expected.auth_type == AuthType.PASS and not compare_digest(
            payload[-VRRP_AUTH_LEN:] if family == socket.AF_INET else b"", expected.auth_data
        ):
            return Rejection.AUTH_FAILURE
        if payload[5] != expected.advert_int_raw:
            return Rejection.ADVERT_INT_MISMATCH
    if b0 & 0x0F != VRRP_TYPE_ADVERT:
        return Rejection.INVALID_TYPE
    if expected.check_vip_addr and naddr != len(expected.addresses):
        return Rejection.ADDR_COUNT_MISMATCH
    if src is not None and dst is not None:
        if family != socket.AF_INET:
            prefix = src + dst + _PSEUDO6.pack(n, IPPROTO_VRRP)
        elif version == 2 or v3_checksum_as_v2:
            prefix = b""
        else:
            prefix = src + dst + _PSEUDO4.pack(IPPROTO_VRRP, n)
        if inet_checksum(prefix + payload) != 0:
            return Rejection.CHECKSUM
        if vips is not None:
            multicast = dst[0] == 0xFF if family != socket.AF_INET else dst[0] & 0xF0 == 0xE0
            if multicast == expected.unicast:
                return Rejection.CAST_MISMATCH
            if expected.check_vip_addr and vips:
                size = 4 if family == socket.AF_INET else 16
                end = VRRP_HEADER_LEN + naddr * size
                present = {payload[i : i + size] for i in range(VRRP_HEADER_LEN, end, size)}
                if not vips <= present:
                    return Rejection.VIP_MISSING
    return None
