"""Tests for the pure VRRP codec (core/vrrp/packet.py).

The golden fixtures in tests/data/vrrp/*.json were captured from keepalived
2.2.7 by tests/data/vrrp/capture.py (needs root); these tests only read them.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykeepalived.core.vrrp.packet import (
    AH_HEADER_LEN,
    IPPROTO_AH,
    IPPROTO_VRRP,
    VRRP_MCAST_V4,
    VRRP_MCAST_V6,
    Advert,
    AHError,
    AuthType,
    ChecksumError,
    ChecksumStatus,
    ExpectedConfig,
    IPAddress,
    LengthError,
    PacketError,
    PacketErrorKind,
    PacketTypeError,
    Rejection,
    RxContext,
    TruncatedError,
    VersionError,
    advert_int_to_raw,
    ah_icv,
    auth_data_from_password,
    build_ah_packet,
    build_ipv4_header,
    compute_checksum,
    decode_advert,
    encode_advert,
    inet_checksum,
    make_advert,
    parse_ipv4_datagram,
    validate,
    verify_ah_packet,
    verify_checksum,
)

DATA = Path(__file__).parent / "data" / "vrrp"
FIXTURES = sorted(DATA.glob("*.json"))

SRC4 = IPv4Address("192.0.2.1")
PEER4 = IPv4Address("192.0.2.2")
SRC6 = IPv6Address("fe80::1")
PEER6 = IPv6Address("2001:db8::2")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _packets() -> Iterator[Any]:
    for path in FIXTURES:
        fx = _load(path)
        for i, pkt in enumerate(fx["packets"]):
            yield pytest.param(fx, pkt, id=f"{fx['name']}-{i}")


def _expected_advert(fx: dict[str, Any], priority: int) -> Advert:
    p = fx["params"]
    return make_advert(
        version=p["version"],
        vrid=p["vrid"],
        priority=priority,
        advert_int=float(p["advert_int"]),
        addresses=p["addresses"],
        auth_type=AuthType[p.get("auth_type", "NONE")],
        auth_pass=p.get("auth_pass", ""),
    )


def test_fixtures_present() -> None:
    names = {p.stem for p in FIXTURES}
    assert {
        "v2_noauth",
        "v2_pass",
        "v2_ah",
        "v2_ah_unicast",
        "v3_ipv4",
        "v3_ipv4_half_second",
        "v3_ipv4_unicast",
        "v3_ipv6",
        "v3_ipv6_unicast",
    } <= names


# ---------------------------------------------------------------------------
# golden: keepalived captures


@pytest.mark.parametrize(("fx", "pkt"), list(_packets()))
def test_golden_decode_and_encode(fx: dict[str, Any], pkt: dict[str, Any]) -> None:
    p = fx["params"]
    payload = bytes.fromhex(pkt["payload_hex"])
    src, dst = ip_address(pkt["src"]), ip_address(pkt["dst"])
    adv = decode_advert(payload, src=src, dst=dst)

    assert adv.version == p["version"]
    assert adv.vrid == p["vrid"]
    assert adv.priority in (100, 0)  # 0 = the resign advert sent on SIGTERM
    assert adv.advert_int == pytest.approx(float(p["advert_int"]))
    assert adv.addresses == tuple(ip_address(a) for a in p["addresses"])
    assert adv.checksum_status is ChecksumStatus.OK
    assert adv.type == 1
    if pkt["family"] == 4 or dst.is_multicast:
        assert pkt["ttl"] == 255
    else:  # keepalived leaves the IPv6 unicast hop limit at the system default
        assert pkt["ttl"] == 64
    if adv.has_auth_field:
        assert adv.auth_type == AuthType[p.get("auth_type", "NONE")]
        if adv.auth_type == AuthType.PASS:
            assert adv.auth_data == p["auth_pass"].encode()[:8].ljust(8, b"\0")
        else:
            assert adv.auth_data == bytes(8)
    else:
        assert adv.auth_data == b""

    expected = _expected_advert(fx, adv.priority)
    assert adv == expected
    assert encode_advert(expected, src=src, dst=dst) == payload


@pytest.mark.parametrize(("fx", "pkt"), [p for p in _packets() if p.values[1]["family"] == 4])
def test_golden_ipv4_header(fx: dict[str, Any], pkt: dict[str, Any]) -> None:
    ip = bytes.fromhex(pkt["ip_hex"])
    dg = parse_ipv4_datagram(ip)
    assert dg.src == ip_address(pkt["src"])
    assert dg.dst == ip_address(pkt["dst"])
    assert dg.ttl == 255
    assert dg.payload == bytes.fromhex(pkt["payload_hex"])
    ident = struct.unpack("!H", ip[4:6])[0]
    assert ident != 0
    hdr = build_ipv4_header(
        src=dg.src,
        dst=dg.dst,
        payload_len=len(ip) - 20,
        proto=IPPROTO_AH if dg.ah else IPPROTO_VRRP,
        ident=ident,
    )
    assert hdr == ip[:20]


@pytest.mark.parametrize(("fx", "pkt"), [p for p in _packets() if p.values[1]["proto"] == 51])
def test_golden_ah(fx: dict[str, Any], pkt: dict[str, Any]) -> None:
    p = fx["params"]
    unicast = bool(p.get("unicast_peers"))
    ip = bytes.fromhex(pkt["ip_hex"])
    src, dst = IPv4Address(pkt["src"]), IPv4Address(pkt["dst"])

    dg = verify_ah_packet(ip, p["auth_pass"], unicast=unicast)
    assert dg.ah is not None
    assert dg.ah.next_header == IPPROTO_VRRP
    assert dg.ah.payload_len == 4
    assert dg.ah.spi == int(src)
    assert dg.ah.seq >= 1

    adv = decode_advert(dg.payload, src=src, dst=dst)
    built = build_ah_packet(
        adv,
        src=src,
        dst=dst,
        key=p["auth_pass"],
        seq=dg.ah.seq,
        ident=struct.unpack("!H", ip[4:6])[0],
        unicast=unicast,
    )
    assert built == ip

    # wrong key, wrong unicast flag, tampering: all fail the ICV
    with pytest.raises(AHError) as exc:
        verify_ah_packet(ip, "wrongkey", unicast=unicast)
    assert exc.value.kind is PacketErrorKind.AH_BAD_ICV
    with pytest.raises(AHError):
        verify_ah_packet(ip, p["auth_pass"], unicast=not unicast)
    for offset in (4, 20 + 8, 20 + 24 + 2, len(ip) - 1):  # ident, seq, priority, last byte
        bad = bytearray(ip)
        bad[offset] ^= 0x01
        with pytest.raises(AHError):
            verify_ah_packet(bytes(bad), p["auth_pass"], unicast=unicast)


def test_golden_ah_mutable_fields_ignored() -> None:
    fx = _load(DATA / "v2_ah.json")
    ip = bytearray.fromhex(fx["packets"][0]["ip_hex"])
    ip[1] = 0x00  # TOS
    ip[6] = 0x40  # DF
    ip[10:12] = b"\xde\xad"  # header checksum
    verify_ah_packet(bytes(ip), fx["params"]["auth_pass"])
    ip[8] = 64  # TTL is protected for multicast
    with pytest.raises(AHError):
        verify_ah_packet(bytes(ip), fx["params"]["auth_pass"])
    fx = _load(DATA / "v2_ah_unicast.json")
    ip = bytearray.fromhex(fx["packets"][0]["ip_hex"])
    ip[8] = 64  # ...but zeroed for unicast
    verify_ah_packet(bytes(ip), fx["params"]["auth_pass"], unicast=True)


def test_golden_unicast_checksums_per_peer() -> None:
    fx = _load(DATA / "v3_ipv4_unicast.json")
    by_dst: dict[str, set[str]] = {}
    for pkt in fx["packets"]:
        by_dst.setdefault(pkt["dst"], set()).add(pkt["payload_hex"])
    assert set(by_dst) == {"192.0.2.2", "192.0.2.3"}
    first = {d: sorted(v)[0] for d, v in by_dst.items()}
    assert first["192.0.2.2"] != first["192.0.2.3"]
    payload = bytes.fromhex(fx["packets"][0]["payload_hex"])
    other = IPv4Address("192.0.2.3" if fx["packets"][0]["dst"] == "192.0.2.2" else "192.0.2.2")
    with pytest.raises(ChecksumError):
        decode_advert(payload, src=SRC4, dst=other)


def test_golden_ipv6_checksum_is_kernel_style() -> None:
    fx = _load(DATA / "v3_ipv6.json")
    pkt = fx["packets"][0]
    adv = decode_advert(
        bytes.fromhex(pkt["payload_hex"]), src=ip_address(pkt["src"]), dst=VRRP_MCAST_V6
    )
    unfilled = encode_advert(adv)
    assert unfilled[6:8] == b"\0\0"
    assert unfilled[8:] == bytes.fromhex(pkt["payload_hex"])[8:]


# ---------------------------------------------------------------------------
# tshark cross-check on our own packets


def _ipv6_header(src: IPv6Address, dst: IPv6Address, payload_len: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, payload_len, IPPROTO_VRRP, 255) + src.packed + dst.packed


def _write_pcap(path: Path, packets: list[bytes]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # LINKTYPE_RAW
        for i, pkt in enumerate(packets):
            f.write(struct.pack("<IIII", i, 0, len(pkt), len(pkt)) + pkt)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_accepts_our_checksums(tmp_path: Path) -> None:
    vips4 = ["192.0.2.100", "192.0.2.101"]
    packets: list[bytes] = []
    for adv, dst in (
        (
            make_advert(version=2, vrid=1, priority=100, advert_int=1, addresses=vips4),
            VRRP_MCAST_V4,
        ),
        (
            make_advert(
                version=2,
                vrid=2,
                priority=200,
                advert_int=3,
                addresses=vips4,
                auth_type=AuthType.PASS,
                auth_pass="pw",
            ),
            VRRP_MCAST_V4,
        ),
        (
            make_advert(version=3, vrid=3, priority=100, advert_int=0.5, addresses=vips4),
            VRRP_MCAST_V4,
        ),
        (make_advert(version=3, vrid=4, priority=1, advert_int=1, addresses=vips4), PEER4),
        (make_advert(version=3, vrid=5, priority=0, advert_int=40.95, addresses=[]), VRRP_MCAST_V4),
    ):
        assert isinstance(dst, IPv4Address)
        payload = encode_advert(adv, src=SRC4, dst=dst)
        packets.append(
            build_ipv4_header(src=SRC4, dst=dst, payload_len=len(payload), ident=7) + payload
        )
    for dst6 in (VRRP_MCAST_V6, PEER6):
        adv6 = make_advert(
            version=3,
            vrid=6,
            priority=100,
            advert_int=1,
            addresses=["2001:db8::100", "2001:db8::1"],
        )
        payload = encode_advert(adv6, src=SRC6, dst=dst6)
        packets.append(_ipv6_header(SRC6, dst6, len(payload)) + payload)
    ah_adv = make_advert(
        version=2, vrid=7, priority=100, advert_int=1, addresses=vips4, auth_type=AuthType.AH
    )
    packets.append(build_ah_packet(ah_adv, src=SRC4, dst=VRRP_MCAST_V4, key="k", seq=1, ident=1))
    bad = bytearray(packets[0])
    bad[-1] ^= 0xFF
    packets.append(bytes(bad))

    pcap = tmp_path / "ours.pcap"
    _write_pcap(pcap, packets)
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "vrrp.checksum.status"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    # 1 = good, 0 = bad
    assert out == ["1"] * (len(packets) - 1) + ["0"]


# ---------------------------------------------------------------------------
# checksums and options


def test_inet_checksum_rfc1071_example() -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert inet_checksum(data) == ~0xDDF2 & 0xFFFF
    assert inet_checksum(b"\x01") == ~0x0100 & 0xFFFF


def test_v3_checksum_as_v2() -> None:
    adv = make_advert(version=3, vrid=9, priority=100, advert_int=1, addresses=["192.0.2.9"])
    plain = encode_advert(adv, v3_checksum_as_v2=True)
    assert verify_checksum(plain, v3_checksum_as_v2=True)
    assert not verify_checksum(plain, src=SRC4, dst=VRRP_MCAST_V4)
    assert compute_checksum(plain, v3_checksum_as_v2=True) == inet_checksum(
        plain[:6] + b"\0\0" + plain[8:]
    )
    decode_advert(plain, src=SRC4, dst=VRRP_MCAST_V4, v3_checksum_as_v2=True)
    with pytest.raises(ChecksumError):
        decode_advert(plain, src=SRC4, dst=VRRP_MCAST_V4)
    with pytest.raises(ValueError):
        encode_advert(adv)  # v3/IPv4 needs src+dst


def test_unicast_compat_checksum() -> None:
    adv = make_advert(version=3, vrid=9, priority=100, advert_int=1, addresses=["192.0.2.9"])
    old_style = encode_advert(adv, src=SRC4, dst=VRRP_MCAST_V4)  # unicast sent with mcast phdr
    got = decode_advert(old_style, src=SRC4, dst=PEER4, compat_dst=VRRP_MCAST_V4)
    assert got.checksum_status is ChecksumStatus.OK_COMPAT
    with pytest.raises(ChecksumError) as exc:
        decode_advert(old_style, src=SRC4, dst=PEER4)
    assert exc.value.kind is PacketErrorKind.BAD_CHECKSUM
    assert exc.value.received == struct.unpack("!H", old_style[6:8])[0]
    lenient = decode_advert(old_style, src=SRC4, dst=PEER4, verify_checksum=False)
    assert lenient.checksum_status is ChecksumStatus.BAD


def test_checksum_covers_v2_auth_bytes() -> None:
    adv = make_advert(
        version=2, vrid=1, priority=1, advert_int=1, addresses=[], auth_type=1, auth_pass="x"
    )
    payload = bytearray(encode_advert(adv))
    assert len(payload) == 16
    payload[-1] ^= 1
    with pytest.raises(ChecksumError):
        decode_advert(bytes(payload), src=SRC4, dst=VRRP_MCAST_V4)


# ---------------------------------------------------------------------------
# conversions


@pytest.mark.parametrize(
    ("version", "seconds", "raw"),
    [
        (2, 1, 1),
        (2, 0.4, 1),
        (2, 1.5, 2),
        (2, 1.49, 1),
        (2, 255, 255),
        (2, 300, 255),
        (3, 1, 100),
        (3, 0.5, 50),
        (3, 0.01, 1),
        (3, 0.004, 1),
        (3, 0.015, 2),
        (3, 40.95, 4095),
        (3, 41, 4095),
        (3, 255, 4095),
    ],
)
def test_advert_int_to_raw(version: int, seconds: float, raw: int) -> None:
    assert advert_int_to_raw(version, seconds) == raw


def test_advert_int_rejects_nonpositive() -> None:
    with pytest.raises(ValueError):
        advert_int_to_raw(3, 0)


def test_auth_password() -> None:
    assert auth_data_from_password("secretpassword") == b"secretpa"
    assert auth_data_from_password("abc") == b"abc\0\0\0\0\0"
    assert auth_data_from_password(b"") == bytes(8)
    ah = make_advert(
        version=2, vrid=1, priority=1, advert_int=1, addresses=[], auth_type=2, auth_pass="k"
    )
    assert ah.auth_data == bytes(8)  # AH: key is not in the VRRP payload
    v3 = make_advert(
        version=3, vrid=1, priority=1, advert_int=1, addresses=[], auth_type=1, auth_pass="k"
    )
    assert (v3.auth_type, v3.auth_data) == (0, b"")


def test_advert_properties_and_checks() -> None:
    adv = make_advert(version=3, vrid=1, priority=1, advert_int=0.25, addresses=["2001:db8::5"])
    assert adv.family == socket.AF_INET6
    assert adv.advert_int == 0.25
    assert adv.advert_int_cs == 25
    assert adv.with_priority(0).priority == 0
    assert Advert(2, 1, 1, 3).advert_int_cs == 300
    assert Advert(2, 1, 1, 3).auth_data == bytes(8)
    for kwargs in (
        {"version": 4},
        {"vrid": 256},
        {"priority": -1},
        {"advert_int_raw": 256},
        {"auth_data": b"short"},
        {"auth_data": b"x" * 9},
        {"addresses": (IPv6Address("2001:db8::1"),), "family": socket.AF_INET},
        {"family": 99},
    ):
        base: dict[str, Any] = {
            "version": 2,
            "vrid": 1,
            "priority": 1,
            "advert_int_raw": 1,
            "auth_data": bytes(8),
        }
        base.update(kwargs)
        with pytest.raises(ValueError):
            Advert(**base)
    with pytest.raises(ValueError):
        Advert(3, 1, 1, 100, auth_type=1)
    with pytest.raises(ValueError):
        Advert(3, 1, 1, 100, auth_data=b"x" * 8)


# ---------------------------------------------------------------------------
# decode errors


def _good_v3() -> bytes:
    adv = make_advert(version=3, vrid=1, priority=100, advert_int=1, addresses=["192.0.2.9"])
    return encode_advert(adv, src=SRC4, dst=VRRP_MCAST_V4)


def _fix_csum(payload: bytes) -> bytes:
    csum = compute_checksum(payload, src=SRC4, dst=VRRP_MCAST_V4)
    return payload[:6] + struct.pack("!H", csum) + payload[8:]


def test_decode_errors() -> None:
    good = _good_v3()
    cases: list[tuple[bytes, type[PacketError], PacketErrorKind]] = [
        (b"", TruncatedError, PacketErrorKind.TRUNCATED),
        (good[:7], TruncatedError, PacketErrorKind.TRUNCATED),
        (bytes([0x41]) + good[1:], VersionError, PacketErrorKind.BAD_VERSION),
        (good + b"\0", LengthError, PacketErrorKind.LENGTH_MISMATCH),
        (good[:-1], LengthError, PacketErrorKind.LENGTH_MISMATCH),
        (_fix_csum(bytes([0x32]) + good[1:]), PacketTypeError, PacketErrorKind.BAD_TYPE),
        (good[:7] + bytes([good[7] ^ 1]) + good[8:], ChecksumError, PacketErrorKind.BAD_CHECKSUM),
    ]
    for data, cls, kind in cases:
        with pytest.raises(cls) as exc:
            decode_advert(data, src=SRC4, dst=VRRP_MCAST_V4)
        assert exc.value.kind is kind
        assert exc.value.reason
    with pytest.raises(PacketError) as exc2:
        decode_advert(good, src=SRC4, dst=VRRP_MCAST_V6)
    assert exc2.value.kind is PacketErrorKind.BAD_ADDRESS
    with pytest.raises(PacketError):
        decode_advert(good, src=SRC4, dst=VRRP_MCAST_V4, family=socket.AF_INET6)
    typ = decode_advert(
        _fix_csum(bytes([0x32]) + good[1:]),
        src=SRC4,
        dst=VRRP_MCAST_V4,
        require_advert_type=False,
    )
    assert typ.type == 2


def test_decode_v3_reserved_bits_kept_apart() -> None:
    good = bytearray(_good_v3())
    good[4] |= 0xF0
    adv = decode_advert(_fix_csum(bytes(good)), src=SRC4, dst=VRRP_MCAST_V4)
    assert adv.reserved == 0xF
    assert adv.advert_int_raw == 100


def test_parse_ipv4_datagram_errors() -> None:
    payload = _good_v3()
    hdr = build_ipv4_header(src=SRC4, dst=VRRP_MCAST_V4, payload_len=len(payload), ident=1)
    parse_ipv4_datagram(hdr + payload)
    for data in (
        (hdr + payload)[:19],
        hdr[:20] + payload[:4],
        bytes([0x65]) + hdr[1:] + payload,
        bytes([0x44]) + hdr[1:] + payload,
        hdr + payload + b"\0",
    ):
        with pytest.raises(PacketError):
            parse_ipv4_datagram(data)
    with pytest.raises(AHError):
        verify_ah_packet(hdr + payload, "k")


def test_ah_other_next_header_and_spi() -> None:
    adv = make_advert(version=2, vrid=1, priority=1, advert_int=1, addresses=[], auth_type=2)
    pkt = bytearray(build_ah_packet(adv, src=SRC4, dst=VRRP_MCAST_V4, key="k", seq=5, ident=9))
    pkt[20] = 17
    with pytest.raises(AHError) as exc:
        verify_ah_packet(bytes(pkt), "k")
    assert exc.value.kind is PacketErrorKind.AH_NEXT_HEADER
    # valid ICV but SPI not the source address
    pkt = bytearray(build_ah_packet(adv, src=SRC4, dst=VRRP_MCAST_V4, key="k", seq=5, ident=9))
    pkt[24:28] = b"\0\0\0\1"
    pkt[32:44] = ah_icv(bytes(pkt[:20]), bytes(pkt[20:]), b"k")
    with pytest.raises(AHError) as exc:
        verify_ah_packet(bytes(pkt), "k")
    assert exc.value.kind is PacketErrorKind.AH_BAD_SPI
    with pytest.raises(ValueError):
        build_ah_packet(replace(adv, version=3, auth_type=0, auth_data=b""), src=SRC4, dst=PEER4, key="k", seq=1, ident=1)  # fmt: skip


# ---------------------------------------------------------------------------
# fuzzing


_addr4: st.SearchStrategy[IPAddress] = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
_addr6: st.SearchStrategy[IPAddress] = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=200),
    src=st.one_of(_addr4, _addr6),
    dst=st.one_of(_addr4, _addr6),
    verify=st.booleans(),
    as_v2=st.booleans(),
    family=st.sampled_from([None, socket.AF_INET, socket.AF_INET6, 0]),
    compat=st.sampled_from([None, VRRP_MCAST_V4, VRRP_MCAST_V6]),
)
def test_fuzz_decode_arbitrary_bytes(
    data: bytes,
    src: IPAddress,
    dst: IPAddress,
    verify: bool,
    as_v2: bool,
    family: int | None,
    compat: IPAddress | None,
) -> None:
    try:
        adv = decode_advert(
            data,
            src=src,
            dst=dst,
            family=family,
            verify_checksum=verify,
            v3_checksum_as_v2=as_v2,
            compat_dst=compat,
        )
    except PacketError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert isinstance(exc.kind, PacketErrorKind)
    else:
        assert isinstance(adv, Advert)


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from([0x21, 0x31, 0x22, 0x32, 0x11]),
    naddr=st.integers(0, 4),
    extra=st.binary(max_size=80),
    v6=st.booleans(),
)
def test_fuzz_decode_plausible_headers(header: int, naddr: int, extra: bytes, v6: bool) -> None:
    data = bytes([header, 1, 100, naddr]) + extra
    src: IPAddress = SRC6 if v6 else SRC4
    dst: IPAddress = VRRP_MCAST_V6 if v6 else VRRP_MCAST_V4
    try:
        decode_advert(data, src=src, dst=dst, verify_checksum=False, require_advert_type=False)
    except PacketError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), key=st.binary(max_size=12), unicast=st.booleans())
def test_fuzz_ipv4_and_ah(data: bytes, key: bytes, unicast: bool) -> None:
    for candidate in (data, bytes([0x45]) + data[1:2] + struct.pack("!H", len(data)) + data[4:]):
        try:
            parse_ipv4_datagram(candidate)
        except PacketError:
            pass
        try:
            verify_ah_packet(candidate, key, unicast=unicast)
        except PacketError:
            pass


@st.composite
def _adverts(draw: st.DrawFn) -> tuple[Advert, IPAddress, IPAddress]:
    version = draw(st.sampled_from([2, 3]))
    v6 = draw(st.booleans())
    addrs: list[IPAddress] = draw(st.lists(_addr6 if v6 else _addr4, max_size=6))
    auth_type = draw(st.sampled_from([0, 1, 2])) if version == 2 and not v6 else 0
    adv = Advert(
        version=version,
        vrid=draw(st.integers(0, 255)),
        priority=draw(st.integers(0, 255)),
        advert_int_raw=draw(st.integers(0, 255 if version == 2 else 4095)),
        addresses=tuple(addrs),
        auth_type=auth_type,
        auth_data=draw(st.binary(min_size=8, max_size=8)) if version == 2 and not v6 else b"",
        family=socket.AF_INET6 if v6 else socket.AF_INET,
    )
    src: IPAddress = draw(_addr6 if v6 else _addr4)
    dst: IPAddress = draw(_addr6 if v6 else _addr4)
    return adv, src, dst


@settings(max_examples=300, deadline=None)
@given(case=_adverts(), flip=st.integers(0, 10_000))
def test_roundtrip_and_single_bit_errors(
    case: tuple[Advert, IPAddress, IPAddress], flip: int
) -> None:
    adv, src, dst = case
    payload = encode_advert(adv, src=src, dst=dst)
    assert decode_advert(payload, src=src, dst=dst) == adv
    assert verify_checksum(payload, src=src, dst=dst)
    # any single flipped bit is caught (by length, version, type or checksum)
    bit = flip % (len(payload) * 8)
    bad = bytearray(payload)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(PacketError):
        decode_advert(bytes(bad), src=src, dst=dst)


# ---------------------------------------------------------------------------
# validate()


VIPS = (IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101"))


def _v2_expected(**kw: Any) -> ExpectedConfig:
    base: dict[str, Any] = {
        "version": 2,
        "vrid": 51,
        "auth_type": AuthType.PASS,
        "auth_data": auth_data_from_password("secret"),
        "advert_int_raw": 1,
        "addresses": VIPS,
    }
    base.update(kw)
    return ExpectedConfig(**base)


def _v2_advert(**kw: Any) -> Advert:
    base: dict[str, Any] = {
        "version": 2,
        "vrid": 51,
        "priority": 100,
        "advert_int_raw": 1,
        "addresses": VIPS,
        "auth_type": AuthType.PASS,
        "auth_data": auth_data_from_password("secret"),
    }
    base.update(kw)
    return Advert(**base)


MCAST = RxContext(src=PEER4, dst=VRRP_MCAST_V4, ttl=255)


@pytest.mark.parametrize(
    ("advert_kw", "expected_kw", "ctx", "reason"),
    [
        ({}, {}, MCAST, None),
        ({"priority": 0}, {}, MCAST, None),
        ({"vrid": 52}, {}, MCAST, Rejection.UNKNOWN_VRID),
        ({}, {}, replace(MCAST, ah=True), Rejection.AH_HEADER_MISMATCH),
        ({}, {}, replace(MCAST, ttl=64), Rejection.TTL),
        ({"version": 3, "auth_type": 0, "auth_data": b"", "advert_int_raw": 100}, {}, MCAST, Rejection.VERSION),
        ({"auth_type": 7}, {}, MCAST, Rejection.INVALID_AUTH_TYPE),
        ({"auth_type": 0}, {}, MCAST, Rejection.AUTH_TYPE_MISMATCH),
        ({"auth_data": auth_data_from_password("other")}, {}, MCAST, Rejection.AUTH_FAILURE),
        ({"advert_int_raw": 2}, {}, MCAST, Rejection.ADVERT_INT_MISMATCH),
        ({"type": 2}, {}, MCAST, Rejection.INVALID_TYPE),
        ({"addresses": VIPS[:1]}, {}, MCAST, Rejection.ADDR_COUNT_MISMATCH),
        ({"addresses": VIPS[:1]}, {"check_vip_addr": False}, MCAST, None),
        ({"checksum_status": ChecksumStatus.BAD}, {}, MCAST, Rejection.CHECKSUM),
        ({"checksum_status": ChecksumStatus.OK_COMPAT}, {}, MCAST, None),
        ({}, {}, replace(MCAST, dst=SRC4), Rejection.CAST_MISMATCH),
        ({}, {"unicast": True}, MCAST, Rejection.CAST_MISMATCH),
        ({"addresses": (VIPS[0], IPv4Address("192.0.2.9"))}, {}, MCAST, Rejection.VIP_MISSING),
        ({"addresses": VIPS[::-1]}, {}, MCAST, None),
        (
            {},
            {"unicast": True, "check_unicast_src": True, "unicast_peers": (IPv4Address("192.0.2.3"),)},
            replace(MCAST, dst=SRC4),
            Rejection.UNICAST_SRC_NOT_PEER,
        ),
        (
            {},
            {"unicast": True, "check_unicast_src": True, "unicast_peers": (PEER4,), "unicast_ttl_ranges": ((250, 255),)},
            replace(MCAST, dst=SRC4, ttl=64),
            Rejection.UNICAST_TTL_RANGE,
        ),
        (
            {},
            {"unicast": True, "unicast_peers": (PEER4,)},
            replace(MCAST, dst=SRC4, ttl=3),
            None,
        ),
        # ordering: the TTL check comes before the version check
        ({"version": 3, "auth_type": 0, "auth_data": b"", "advert_int_raw": 100}, {}, replace(MCAST, ttl=1), Rejection.TTL),
        # auth is checked before the interval, the interval before the type
        ({"auth_type": 0, "advert_int_raw": 9, "type": 3}, {}, MCAST, Rejection.AUTH_TYPE_MISMATCH),
        ({"advert_int_raw": 9, "type": 3}, {}, MCAST, Rejection.ADVERT_INT_MISMATCH),
    ],
)  # fmt: skip
def test_validate(
    advert_kw: dict[str, Any],
    expected_kw: dict[str, Any],
    ctx: RxContext,
    reason: Rejection | None,
) -> None:
    assert validate(_v2_advert(**advert_kw), _v2_expected(**expected_kw), ctx) is reason


def test_validate_ah_and_v3() -> None:
    exp = _v2_expected(auth_type=AuthType.AH, auth_data=bytes(8))
    adv = _v2_advert(auth_type=AuthType.AH, auth_data=bytes(8))
    ah_ctx = replace(MCAST, ah=True, ah_ok=True)
    assert validate(adv, exp, ah_ctx) is None
    assert validate(adv, exp, replace(ah_ctx, ah_ok=False)) is Rejection.AUTH_FAILURE
    assert validate(adv, exp, replace(ah_ctx, ah_next_header=6)) is Rejection.AH_OTHER_PROTOCOL
    assert validate(adv, exp, MCAST) is Rejection.AH_HEADER_MISMATCH

    v3exp = ExpectedConfig(version=3, vrid=1, advert_int_raw=100, addresses=VIPS)
    v3adv = Advert(version=3, vrid=1, priority=50, advert_int_raw=25, addresses=VIPS)
    assert validate(v3adv, v3exp, MCAST) is None  # v3 interval is not checked
    v6exp = ExpectedConfig(version=3, vrid=1, family=socket.AF_INET6)
    v6adv = Advert(version=3, vrid=1, priority=50, advert_int_raw=100, family=socket.AF_INET6)
    ctx6 = RxContext(src=SRC6, dst=VRRP_MCAST_V6, ttl=255, ah=True)  # ah ignored for IPv6
    assert validate(v6adv, v6exp, ctx6) is None
    assert validate(v6adv, v6exp, replace(ctx6, multicast=False)) is Rejection.CAST_MISMATCH


def test_rejection_metadata() -> None:
    assert Rejection.ADVERT_INT_MISMATCH.drop
    assert not Rejection.CHECKSUM.drop
    assert Rejection.CHECKSUM.counter == "chk_err"
    assert len({r.label for r in Rejection}) == len(Rejection)


def test_ah_header_len_constant() -> None:
    assert AH_HEADER_LEN == 24


# -- precheck: the receive path's shortcut agrees with decode + validate -------------

_PRECHECK_COVERS = {
    Rejection.UNKNOWN_VRID,
    Rejection.AH_HEADER_MISMATCH,
    Rejection.TTL,
    Rejection.VERSION,
    Rejection.INVALID_AUTH_TYPE,
    Rejection.AUTH_TYPE_MISMATCH,
    Rejection.AUTH_FAILURE,
    Rejection.ADVERT_INT_MISMATCH,
    Rejection.INVALID_TYPE,
    Rejection.ADDR_COUNT_MISMATCH,
    Rejection.CHECKSUM,
    Rejection.CAST_MISMATCH,
    Rejection.VIP_MISSING,
}


def _full_path(
    payload: bytes,
    fam: int,
    src: IPAddress,
    dst: IPAddress,
    ttl: int,
    exp: ExpectedConfig,
    as_v2: bool,
) -> Rejection | PacketErrorKind | None:
    """What Instance.on_packet's full path reports first for a plain packet."""
    from pykeepalived.core.vrrp.packet import RxContext, validate

    try:
        adv = decode_advert(
            payload,
            src=src,
            dst=dst,
            family=fam,
            verify_checksum=False,
            v3_checksum_as_v2=as_v2,
            require_advert_type=False,
        )
    except PacketError as exc:
        return exc.kind
    return validate(adv, exp, RxContext(src=src, dst=dst, ttl=ttl, ah=False))


@settings(max_examples=600, deadline=None)
@given(
    version=st.sampled_from([2, 3]),
    v6=st.booleans(),
    auth=st.sampled_from([AuthType.NONE, AuthType.PASS, AuthType.AH]),
    peer_auth=st.sampled_from([AuthType.NONE, AuthType.PASS]),
    password=st.sampled_from(["secret1", "wrong"]),
    naddr=st.integers(0, 3),
    unicast=st.booleans(),
    to_unicast=st.booleans(),
    other_vip=st.booleans(),
    check_vip=st.booleans(),
    as_v2=st.booleans(),
    ttl=st.sampled_from([255, 254, 1]),
    peer_int=st.sampled_from([1, 2]),
    edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), max_size=3),
    cut=st.sampled_from([None, 0, 1, 6, 7, -1, -4, 4]),
)
def test_precheck_agrees_with_decode_and_validate(
    version: int,
    v6: bool,
    auth: AuthType,
    peer_auth: AuthType,
    password: str,
    naddr: int,
    unicast: bool,
    to_unicast: bool,
    other_vip: bool,
    check_vip: bool,
    as_v2: bool,
    ttl: int,
    peer_int: int,
    edits: list[tuple[int, int]],
    cut: int | None,
) -> None:
    from pykeepalived.core.vrrp.packet import auth_data_from_password, precheck

    fam = socket.AF_INET6 if v6 else socket.AF_INET
    if v6 or version == 3:
        auth = peer_auth = AuthType.NONE
    src: IPAddress = IPv6Address("fe80::2") if v6 else IPv4Address("192.0.2.2")
    dst: IPAddress = (
        (IPv6Address("fe80::1") if to_unicast else VRRP_MCAST_V6)
        if v6
        else (IPv4Address("192.0.2.1") if to_unicast else VRRP_MCAST_V4)
    )
    vips = tuple(
        ip_address(f"2001:db8::{i + 1}" if v6 else f"198.51.100.{i + 1}") for i in range(2)
    )
    sent = (vips[1], ip_address("2001:db8::9" if v6 else "198.51.100.9")) if other_vip else vips
    adv = make_advert(
        version=version,
        vrid=7,
        priority=150,
        advert_int=peer_int,
        addresses=sent[:naddr]
        if naddr <= 2
        else (*vips, ip_address("2001:db8::9" if v6 else "198.51.100.9")),
        auth_type=peer_auth,
        auth_pass=password,
        family=fam,
    )
    payload = bytearray(encode_advert(adv, src=src, dst=dst, v3_checksum_as_v2=as_v2))
    for pos, value in edits:
        if pos < len(payload):
            payload[pos] = value
    data = bytes(payload)
    if cut is not None:
        data = data[:cut] if cut <= 0 or cut < len(data) else data + bytes(cut)
    exp = ExpectedConfig(
        version=version,
        vrid=7,
        family=fam,
        auth_type=int(auth),
        auth_data=auth_data_from_password("secret1") if auth == AuthType.PASS else bytes(8),
        advert_int_raw=1 if version == 2 else 100,
        addresses=vips,
        unicast=unicast,
        check_vip_addr=check_vip,
    )
    full = _full_path(data, fam, src, dst, ttl, exp, as_v2)
    quick = precheck(
        data,
        fam,
        ttl,
        exp,
        src=src.packed,
        dst=dst.packed,
        v3_checksum_as_v2=as_v2,
        vips=frozenset(a.packed for a in vips),
    )
    if quick is None:
        assert full is None or (isinstance(full, Rejection) and full not in _PRECHECK_COVERS), full
    else:
        assert quick == full


def test_hashlib_loaded_only_for_ah() -> None:
    """hashlib/hmac (OpenSSL's libcrypto, megabytes of RSS) stay out of a
    daemon without AH or auth_hmac, PASS included; AH loads them on use."""
    code = (
        "import sys\n"
        "import pykeepalived.core.vrrp.instance, pykeepalived.core.vrrp.manager\n"
        "from pykeepalived.core.vrrp import packet as pk\n"
        "from ipaddress import ip_address as ip\n"
        "e = pk.ExpectedConfig(version=2, vrid=7, auth_type=1,"
        " auth_data=pk.auth_data_from_password('x'), addresses=(ip('198.51.100.1'),))\n"
        "a = pk.make_advert(version=2, vrid=7, priority=1, advert_int=1,"
        " addresses=e.addresses, auth_type=1, auth_pass='y')\n"
        "c = pk.RxContext(src=ip('192.0.2.2'), dst=pk.VRRP_MCAST_V4, ttl=255)\n"
        "assert pk.validate(a, e, c) is pk.Rejection.AUTH_FAILURE\n"
        "before = sorted(m for m in ('hashlib', 'hmac', '_hashlib') if m in sys.modules)\n"
        "pk.build_ah_packet(a, src=ip('192.0.2.2'), dst=pk.VRRP_MCAST_V4, key='x', seq=1, ident=1)\n"
        "print(before, 'hmac' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["[]", "True"]
