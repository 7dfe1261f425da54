"""Hostile VRRP traffic from a rogue host in a namespace lab.

Every case is a real frame on the lab's wire that the protocol (RFC 3768 /
RFC 5798 and keepalived 2.2.7's checks) says to drop: wrong TTL/hop limit,
bad checksums, unknown versions and types, wrong VRIDs, address-list
mismatches, PASS and AH with wrong secrets, replayed AH sequence numbers,
spoofed higher-priority adverts without the right authentication,
truncated and oversized packets, IPv6 variants.  Each case names the counter
that must count it on a pykeepalived node (``rx_drop_<reason>`` of the
instance, or ``receiver_drops`` of the interface), so a run can check that
the drop counters equal what was sent and that nothing caused a transition.

The packets are built with the project's own encoder
(:mod:`pykeepalived.core.vrrp.packet`, byte-identical with keepalived's)
and then mutated; IPv4 frames are sent whole (``IP_HDRINCL``), so TTL,
protocol, source and checksums are exactly what the case says.

``python -m pykeepalived.testing.hostile send PLAN`` is the sender that runs
inside the rogue host (see :func:`send_plan`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pykeepalived.core.vrrp import packet as pk

MCAST4 = IPv4Address(pk.VRRP_MCAST_V4)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
MCAST6 = IPv6Address(pk.VRRP_MCAST_V6)


@dataclass(frozen=True)
class Target:
    """The pair's configuration the cases are aimed at (see :func:`pair_config`)."""

    vip4: str = "192.0.2.100"
    vip6: str = "2001:db8::100"
    pass_vrid: int = 51
    pass_secret: str = "pw51"
    ah_vrid: int = 52
    ah_secret: str = "pw52"
    v6_vrid: int = 56
    advert_int: float = 1.0
    master_prio: int = 150
    backup_prio: int = 100


@dataclass
class Case:
    """One kind of hostile packet and where it must be counted."""

    name: str
    family: int  # 4 or 6
    #: IPv4: the whole datagram (IP header included); IPv6: the VRRP payload.
    data: bytes
    #: IPv6 only: the hop limit to send with.
    hop_limit: int = 255
    #: ("instance", INSTANCE, COUNTER) or ("receiver", FAMILY, COUNTER)
    counted: tuple[str, str, str] = ("instance", "", "")
    note: str = ""

    def wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = self.data.hex()
        return d


@dataclass
class SendResult:
    sent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def pair_config(t: Target, priority: int, router_id: str, advert_int: float | None = None) -> str:
    """keepalived.conf for one node of the pair: PASS, AH and IPv6 instances."""
    ai = f"{advert_int if advert_int is not None else t.advert_int:g}"
    return f"""global_defs {{
    router_id {router_id}
}}
vrrp_instance VI_PASS {{
    state BACKUP
    interface eth0
    virtual_router_id {t.pass_vrid}
    priority {priority}
    advert_int {ai}
    authentication {{
        auth_type PASS
        auth_pass {t.pass_secret}
    }}
    virtual_ipaddress {{
        {t.vip4}/24
    }}
}}
vrrp_instance VI_AH {{
    state BACKUP
    interface eth0
    virtual_router_id {t.ah_vrid}
    priority {priority}
    advert_int 0.1
    version 2
    authentication {{
        auth_type AH
        auth_pass {t.ah_secret}
    }}
    virtual_ipaddress {{
        192.0.2.101/24
    }}
}}
vrrp_instance VI_V6 {{
    state BACKUP
    interface eth0
    virtual_router_id {t.v6_vrid}
    priority {priority}
    version 3
    advert_int {ai}
    virtual_ipaddress {{
        {t.vip6}/64
    }}
}}
"""


# -- building the cases -------------------------------------------------------------


def _ip4(src: IPv4Address, payload: bytes, *, ttl: int = 255, proto: int = 112) -> bytes:
    hdr = pk.build_ipv4_header(
        src=src, dst=MCAST4, payload_len=len(payload), proto=proto, ttl=ttl, ident=0x4242
    )
    return hdr + payload


def _pass_advert(t: Target, **over: Any) -> pk.Advert:
    fields: dict[str, Any] = dict(
        version=2,
        vrid=t.pass_vrid,
        priority=254,
        advert_int=t.advert_int,
        addresses=[t.vip4],
        auth_type=pk.AuthType.PASS,
        auth_pass=t.pass_secret,
    )
    fields.update(over)
    return pk.make_advert(**fields)


def _raw(adv: pk.Advert) -> bytes:
    return pk.encode_advert(adv)


def _with_checksum(payload: bytes) -> bytes:
    """A v2 payload with its checksum recomputed (after a mutation)."""
    body = payload[:6] + b"\0\0" + payload[8:]
    return body[:6] + struct.pack("!H", pk.inet_checksum(body)) + body[8:]


def cases(t: Target, rogue4: str, rogue6: str, *, ah_replay: bytes | None = None) -> list[Case]:
    """Every hostile case against ``t`` from the rogue's addresses
    (``rogue6``: the link-local one, the source of its multicast adverts).

    ``ah_replay``: a genuine AH advert captured from the master earlier; sent
    again it must be refused as a replay (on the backup; the master ignores
    its own source address)."""
    src = IPv4Address(rogue4)
    inst = "VI_PASS"
    good = _raw(_pass_advert(t))
    out: list[Case] = []

    def v4(name: str, data: bytes, counter: str, note: str, where: str = inst) -> None:
        out.append(Case(name, 4, data, counted=("instance", where, counter), note=note))

    v4("ttl", _ip4(src, good, ttl=64), "rx_drop_ttl", "valid PASS advert, priority 254, TTL 64")
    v4(
        "spoof_prio_wrong_pass",
        _ip4(src, _raw(_pass_advert(t, auth_pass="guess"))),
        "rx_drop_auth_failure",
        "priority 254 with a wrong PASS secret",
    )
    v4(
        "spoof_no_auth",
        _ip4(src, _raw(_pass_advert(t, auth_type=pk.AuthType.NONE))),
        "rx_drop_auth_type_mismatch",
        "priority 254 without authentication",
    )
    bad_type = bytearray(good)
    bad_type[4] = 7
    v4(
        "auth_type_7",
        _ip4(src, _with_checksum(bytes(bad_type))),
        "rx_drop_invalid_auth_type",
        "auth type 7",
    )
    for version in (1, 3, 15):
        # sized for its version (no auth bytes unless version 2), as keepalived
        # computes the expected length from the header's version
        mutated = bytearray(good[: -pk.VRRP_AUTH_LEN])
        mutated[0] = (version << 4) | (mutated[0] & 0x0F)
        v4(
            f"version_{version}",
            _ip4(src, _with_checksum(bytes(mutated))),
            "rx_drop_version",
            f"VRRP version {version}",
        )
    v2_sized = bytearray(good)
    v2_sized[0] = (15 << 4) | (v2_sized[0] & 0x0F)
    v4(
        "version_15_v2_sized",
        _ip4(src, _with_checksum(bytes(v2_sized))),
        "rx_drop_malformed",
        "version 15 with version 2's auth bytes: a length error first (keepalived's order)",
    )
    for typ in (0, 2, 15):
        mutated = bytearray(good)
        mutated[0] = (mutated[0] & 0xF0) | typ
        v4(
            f"type_{typ}",
            _ip4(src, _with_checksum(bytes(mutated))),
            "rx_drop_invalid_type",
            f"packet type {typ}",
        )
    bad_sum = bytearray(good)
    bad_sum[6] ^= 0xFF
    v4("checksum", _ip4(src, bytes(bad_sum)), "rx_drop_checksum", "VRRP checksum wrong")
    v4(
        "addr_count",
        _ip4(src, _raw(_pass_advert(t, addresses=[t.vip4, "192.0.2.200"]))),
        "rx_drop_addr_count_mismatch",
        "two addresses where one is configured",
    )
    v4(
        "vip_missing",
        _ip4(src, _raw(_pass_advert(t, addresses=["192.0.2.201"]))),
        "rx_drop_vip_missing",
        "another address than the VIP",
    )
    v4(
        "advert_int",
        _ip4(src, _raw(_pass_advert(t, advert_int=t.advert_int + 2))),
        "rx_drop_advert_int_mismatch",
        "another advert interval (keepalived drops it silently)",
    )
    v4(
        "truncated",
        _ip4(src, good[:6]),
        "rx_drop_malformed",
        "6 bytes of VRRP header",
    )
    v4(
        "oversized",
        _ip4(src, good + bytes(1200)),
        "rx_drop_malformed",
        "a valid advert followed by 1200 bytes",
    )
    v4(
        "ah_on_pass_instance",
        pk.build_ah_packet(
            _pass_advert(t, auth_type=pk.AuthType.AH, auth_pass=""),
            src=src,
            dst=MCAST4,
            key=t.pass_secret,
            seq=1000,
            ident=1,
        ),
        "rx_drop_ah_header_mismatch",
        "an AH packet for the PASS instance",
    )
    ah_advert = pk.make_advert(
        version=2,
        vrid=t.ah_vrid,
        priority=254,
        advert_int=0.1,
        addresses=["192.0.2.101"],
        auth_type=pk.AuthType.AH,
    )
    v4(
        "ah_wrong_key",
        pk.build_ah_packet(ah_advert, src=src, dst=MCAST4, key="guess", seq=100000, ident=2),
        "rx_drop_auth_failure",
        "AH, priority 254, wrong key",
        where="VI_AH",
    )
    if ah_replay is not None:
        out.append(
            Case(
                "ah_replay",
                4,
                ah_replay,
                counted=("instance", "VI_AH", "rx_drop_auth_failure"),
                note="the master's own AH advert, replayed (sequence number already seen)",
            )
        )
    out.append(
        Case(
            "unknown_vrid",
            4,
            _ip4(src, _raw(_pass_advert(t, vrid=200))),
            counted=("receiver", "4", "unknown_vrid"),
            note="VRID 200, which no instance uses",
        )
    )
    out.append(
        Case(
            "short",
            4,
            _ip4(src, b"\x21"),
            counted=("receiver", "4", "short"),
            note="one byte of VRRP",
        )
    )
    # IPv6 (VRRPv3): the payload; the checksum includes the pseudo-header.
    s6, d6 = IPv6Address(rogue6), MCAST6
    adv6 = pk.make_advert(
        version=3, vrid=t.v6_vrid, priority=254, advert_int=t.advert_int, addresses=[t.vip6]
    )
    good6 = pk.encode_advert(adv6, src=s6, dst=d6)

    def v6(name: str, data: bytes, counter: str, note: str, hop: int = 255) -> None:
        out.append(Case(name, 6, data, hop, ("instance", "VI_V6", counter), note))

    v6("v6_hop_limit", good6, "rx_drop_ttl", "valid advert, priority 254, hop limit 64", hop=64)
    bad6 = bytearray(good6)
    bad6[6] ^= 0xFF
    v6("v6_checksum", bytes(bad6), "rx_drop_checksum", "checksum wrong")
    v2over6 = pk.encode_advert(
        pk.Advert(
            version=2,
            vrid=t.v6_vrid,
            priority=254,
            advert_int_raw=int(t.advert_int),
            addresses=(IPv6Address(t.vip6),),
            family=socket.AF_INET6,
        ),
        src=s6,
        dst=d6,
    )
    v6("v6_version_2", v2over6, "rx_drop_version", "VRRPv2 over IPv6")
    v6(
        "v6_vip_missing",
        pk.encode_advert(
            pk.make_advert(
                version=3,
                vrid=t.v6_vrid,
                priority=254,
                advert_int=t.advert_int,
                addresses=["2001:db8::201"],
            ),
            src=s6,
            dst=d6,
        ),
        "rx_drop_vip_missing",
        "another address than the VIP",
    )
    v6("v6_truncated", good6[:5], "rx_drop_malformed", "5 bytes of VRRP header")
    out.append(
        Case(
            "v6_unknown_vrid",
            6,
            pk.encode_advert(
                pk.make_advert(
                    version=3, vrid=201, priority=254, advert_int=t.advert_int, addresses=[t.vip6]
                ),
                src=s6,
                dst=d6,
            ),
            counted=("receiver", "6", "unknown_vrid"),
            note="VRID 201",
        )
    )
    return out


# -- sending (inside the rogue host) --------------------------------------------------


def send_plan(plan: dict[str, Any]) -> SendResult:
    """Send ``count`` copies of each case (round robin), or flood for ``seconds``.

    ``plan``: {"iface": "eth0", "cases": [Case.wire()...], "count": N,
    "rate": packets/s or 0 for as fast as possible, "seconds": flood length
    (then ``count`` is ignored)}.
    """
    iface = plan["iface"]
    ifindex = socket.if_nametoindex(iface)
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s4.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s4.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s4.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, pk.IPPROTO_VRRP)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
    prepared: list[tuple[str, int, bytes, list[tuple[int, int, bytes]]]] = []
    for c in plan["cases"]:
        anc = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", c["hop_limit"]))]
        prepared.append((c["name"], c["family"], bytes.fromhex(c["data"]), anc))
    result = SendResult(sent={name: 0 for name, *_ in prepared})
    rate = float(plan.get("rate") or 0)
    seconds = float(plan.get("seconds") or 0)
    count = int(plan.get("count") or 0)
    start = time.monotonic()
    n = 0
    dst4 = (str(MCAST4), 0)
    dst6 = (str(MCAST6), 0, 0, ifindex)
    while True:
        if seconds:
            if time.monotonic() - start >= seconds:
                break
        elif n >= count * len(prepared):
            break
        name, family, data, anc = prepared[n % len(prepared)]
        try:
            if family == 4:
                s4.sendto(data, dst4)
            else:
                s6.sendmsg([data], anc, 0, dst6)
            result.sent[name] += 1
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        except OSError as exc:
            result.errors[name] = str(exc)
        n += 1
        if rate:
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    result.seconds = time.monotonic() - start
    return result


def capture_one(iface: str, src: str, proto: int, timeout: float = 5.0) -> bytes:
    """The next IPv4 datagram of ``proto`` from ``src`` on ``iface`` (for a replay)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    mreqn = (
        socket.inet_aton(str(MCAST4))
        + socket.inet_aton("0.0.0.0")
        + struct.pack("@i", socket.if_nametoindex(iface))
    )
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    s.settimeout(timeout)
    want = ipaddress.ip_address(src).packed
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = s.recv(65535)
        if data[12:16] == want:
            return data
    raise TimeoutError(f"no protocol {proto} packet from {src} on {iface}")


def watch_adverts(iface: str, family: int, src: str, vrid: int, seconds: float) -> list[float]:
    """Arrival times (the kernel's, realtime clock) of ``src``'s adverts for
    ``vrid`` on ``iface``."""
    ifindex = socket.if_nametoindex(iface)
    if family == 4:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, pk.IPPROTO_VRRP)
        mreqn = (
            socket.inet_aton(str(MCAST4)) + socket.inet_aton("0.0.0.0") + struct.pack("@i", ifindex)
        )
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, pk.IPPROTO_VRRP)
        mreq6 = MCAST6.packed + struct.pack("@I", ifindex)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
    # The kernel's arrival time, not when this (busy) process got to read it.
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    want = ipaddress.ip_address(src.split("%", 1)[0]).packed
    times: list[float] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, anc, _flags, addr = s.recvmsg(65535, 64)
        except TimeoutError:
            break
        now = time.time()
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("@qq", cdata[:16])
                now = sec + nsec / 1e9
        if family == 4:
            ihl = (data[0] & 0x0F) * 4
            if data[12:16] == want and len(data) > ihl + 1 and data[ihl + 1] == vrid:
                times.append(now)
        elif ipaddress.ip_address(addr[0].split("%", 1)[0]).packed == want and data[1:2] == bytes(
            [vrid]
        ):
            times.append(now)
    return times


def _main(argv: list[str]) -> int:
    if argv[:1] == ["send"]:
        with open(argv[1]) as fh:
            plan = json.load(fh)
        result = send_plan(plan)
        sys.stdout.write(json.dumps(asdict(result)) + "\n")
        return 0
    if argv[:1] == ["capture"]:
        data = capture_one(argv[1], argv[2], int(argv[3]))
        sys.stdout.write(data.hex() + "\n")
        return 0
    if argv[:1] == ["watch"]:
        iface, family, src, vrid, seconds = argv[1:6]
        times = watch_adverts(iface, int(family), src, int(vrid), float(seconds))
        sys.stdout.write(json.dumps(times) + "\n")
        return 0
    sys.stderr.write(
        "usage: hostile send PLAN.json | capture IFACE SRC PROTO"
        " | watch IFACE FAMILY SRC VRID SECONDS\n"
    )
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_main(sys.argv[1:]))


# -- the harness: a pair and a rogue in a lab -------------------------------------------


def expected_counts(plan_cases: list[Case], sent: dict[str, int], node: str) -> dict[str, int]:
    """What ``node`` ("master" or "backup") must have counted, keyed as
    ``INSTANCE/COUNTER`` or ``receiver4/COUNTER``."""
    out: dict[str, int] = {}
    for c in plan_cases:
        scope, where, counter = c.counted
        if c.name == "ah_replay" and node == "master":
            continue  # its own source address: ignored before any check
        key = f"{where}/{counter}" if scope == "instance" else f"receiver{where}/{counter}"
        out[key] = out.get(key, 0) + sent.get(c.name, 0)
    return out


def observed_counts(status: dict[str, Any]) -> dict[str, int]:
    """The drop counters in a node's status, keyed like :func:`expected_counts`."""
    out: dict[str, int] = {}
    receivers: dict[str, dict[str, int]] = {}
    for inst in status.get("vrrp_instances", []):
        for key, value in inst.get("counters", {}).items():
            if key.startswith("rx_drop_") and value:
                out[f"{inst['name']}/{key}"] = value
        family = "6" if ":" in "".join(inst.get("vips", [])) else "4"
        receivers[family] = inst.get("receiver_drops", {})
    for family, drops in receivers.items():
        for key, value in drops.items():
            if value:
                out[f"receiver{family}/{key}"] = value
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HostileLab:
    """Two pykeepalived nodes (``h1`` MASTER, ``h2`` BACKUP) and a rogue ``h3``."""

    def __init__(self, lab: Any, workdir: Any, target: Target | None = None) -> None:
        from pykeepalived.testing.daemons import PyNode

        self.lab = lab
        self.target = target or Target()
        self.h1, self.h2, self.rogue = lab.hosts[:3]
        self.workdir = workdir
        self.master = PyNode(self.h1, workdir)
        self.backup = PyNode(self.h2, workdir)

    def start(self, advert_int: float | None = None) -> None:
        from pykeepalived.testing.daemons import wait_holder

        t = self.target
        self.master.start(pair_config(t, t.master_prio, "h1", advert_int))
        self.backup.start(pair_config(t, t.backup_prio, "h2", advert_int))
        wait_holder(self.lab.hosts, t.vip4, "h1", 15)
        wait_holder(self.lab.hosts, t.vip6, "h1", 15)
        for node in (self.master, self.backup):
            node.mark()

    def capture_ah(self) -> bytes:
        """A genuine AH advert of the master, heard on the rogue's wire."""
        out = self.rogue.run(
            [
                *(sys.executable, "-m", "pykeepalived.testing.hostile", "capture", "eth0"),
                *(self.h1.ip4, str(pk.IPPROTO_AH)),
            ],
            timeout=15,
        ).stdout
        return bytes.fromhex(out.strip())

    def cases(self, ah_replay: bytes | None = None) -> list[Case]:
        # adverts to ff02::12 leave from the link-local address, which the
        # checksum's pseudo-header must name
        link_local = next(a for a in self.rogue.addresses() if a.startswith("fe80:"))
        return cases(self.target, self.rogue.ip4, link_local, ah_replay=ah_replay)

    def send(
        self,
        plan_cases: list[Case],
        *,
        count: int = 0,
        seconds: float = 0.0,
        rate: float = 0.0,
    ) -> SendResult:
        path = self.workdir / f"plan-{time.monotonic_ns()}.json"
        path.write_text(
            json.dumps(
                {
                    "iface": "eth0",
                    "cases": [c.wire() for c in plan_cases],
                    "count": count,
                    "seconds": seconds,
                    "rate": rate,
                }
            )
        )
        out = self.rogue.run(
            [sys.executable, "-m", "pykeepalived.testing.hostile", "send", str(path)],
            timeout=max(60.0, seconds * 3 + count * len(plan_cases) / 1000),
        ).stdout
        data = json.loads(out.strip().splitlines()[-1])
        return SendResult(**data)

    def counters(self) -> dict[str, dict[str, int]]:
        return {
            "master": observed_counts(self.master.status()),
            "backup": observed_counts(self.backup.status()),
        }

    def kernel_drops(self) -> dict[str, int]:
        """Packets the kernel dropped on each node's VRRP/AH receive sockets (a
        full receive buffer: the daemon could not keep up), from /proc/net/raw*."""
        out: dict[str, int] = {}
        for label, host in (("master", self.h1), ("backup", self.h2)):
            text = host.run(["cat", "/proc/net/raw", "/proc/net/raw6"]).stdout
            total = 0
            for line in text.splitlines():
                fields = line.split()
                if len(fields) < 5 or ":" not in fields[1]:
                    continue
                local, port = fields[1].rsplit(":", 1)
                # receivers are not bound to an address; senders are, and drop
                # everything on purpose (a filter), which counts as drops too
                if set(local) == {"0"} and port in ("0070", "0033") and fields[-1].isdigit():
                    total += int(fields[-1])
            out[label] = total
        return out

    def settled_counters(self, timeout: float = 60.0) -> dict[str, dict[str, int]]:
        """The counters once the daemons have worked through their receive
        queues (two reads 0.5 s apart agree): a flood leaves thousands of
        packets queued, counted over the following seconds."""
        deadline = time.monotonic() + timeout
        last = self.counters()
        while True:
            time.sleep(0.5)
            now = self.counters()
            if now == last or time.monotonic() > deadline:
                return now
            last = now

    def transitions(self) -> int:
        """State changes logged by either node since :meth:`start`."""
        return sum(n.count("Entering") for n in (self.master, self.backup))

    def alive(self) -> bool:
        return self.master.running() and self.backup.running()

    def stop(self) -> None:
        for node in (self.master, self.backup):
            node.kill()


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)
    }
