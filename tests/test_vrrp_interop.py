"""pykeepalived and the real keepalived (2.2.7) as VRRP peers on one link.

Both daemons run the same five instances, one per wire variant, each with
its own VRID and VIP:

    PASS    VRRPv2, IPv4, multicast, auth_type PASS
    AH      VRRPv2, IPv4, multicast, auth_type AH (IPsec AH, HMAC-MD5-96)
    V3      VRRPv3, IPv4, multicast
    V6      VRRPv3, IPv6, multicast (VIP 2001:db8::100/64)
    UNI     VRRPv2, IPv4, unicast_src_ip / unicast_peer

so one sequence of kills and restarts checks every variant in both roles:
pykeepalived MASTER with keepalived BACKUP, the reverse, takeover by either
after the other crashes, and preemption by either after a restart with a
higher priority.  At every steady state exactly one host holds each VIP.

A second test captures pykeepalived's adverts with tshark and checks that
Wireshark's VRRP dissector finds every checksum good.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import (
    KEEPALIVED,
    KaNode,
    Node,
    PyNode,
    bare,
    dump_logs,
    global_defs,
    holders,
    instance,
)
from pykeepalived.testing.lab import Host, Lab

pytestmark = [pytest.mark.netns, pytest.mark.interop]


@pytest.fixture(autouse=True)
def _keepalived_installed() -> None:
    # make test installs keepalived (APT_PACKAGES): missing is a broken setup, not a skip.
    assert os.path.exists(KEEPALIVED), (
        "keepalived (the oracle) is missing: `make setup` installs it"
    )


@dataclass(frozen=True)
class Variant:
    name: str
    vrid: int
    vip: str  # with prefix
    kw: dict[str, Any]

    @property
    def address(self) -> str:
        return bare(self.vip)


V2 = {"advert_int": 1}
V3 = {"version": 3, "advert_int": 0.3}


def variants(py: Host, ka: Host) -> list[Variant]:
    """``py`` and ``ka`` are the hosts of pykeepalived and keepalived."""
    return [
        Variant("PASS", 51, "192.0.2.100/24", {**V2, "auth": ("PASS", "interop1")}),
        Variant("AH", 52, "192.0.2.101/24", {**V2, "auth": ("AH", "interop2")}),
        Variant("V3", 53, "192.0.2.102/24", dict(V3)),
        Variant("V6", 54, "2001:db8::100/64", dict(V3)),
        Variant("UNI", 55, "192.0.2.103/24", dict(V2)),
    ]


def render(variants: list[Variant], me: Host, peer: Host, priority: int, state: str) -> str:
    blocks = [global_defs(me.name)]
    for v in variants:
        kw = dict(v.kw)
        if v.name == "UNI":
            kw.update(unicast_src=me.ip4, unicast_peers=[peer.ip4])
        blocks.append(
            instance(
                f"VI_{v.name}",
                vrid=v.vrid,
                priority=priority,
                state=state,
                vips=[v.vip],
                **kw,
            )
        )
    return "".join(blocks)


@pytest.fixture
def pair(lab: Any, tmp_path: Path) -> Iterator[tuple[Lab, PyNode, KaNode]]:
    """A lab with pykeepalived on h1 and keepalived on h2; always torn down."""
    lb = lab(2)
    py, ka = PyNode(lb.hosts[0], tmp_path), KaNode(lb.hosts[1], tmp_path)
    try:
        yield lb, py, ka
    finally:
        ka.kill()
        py.kill()
        print(dump_logs([py, ka]))


def _settle(
    hosts: list[Host], vs: list[Variant], want: str, timeout: float, nodes: list[Node]
) -> None:
    """Wait until ``want`` alone holds every VIP, then check it stays so."""
    deadline = time.monotonic() + timeout
    while True:
        wrong = {v.name: holders(hosts, v.address) for v in vs}
        wrong = {k: h for k, h in wrong.items() if h != [want]}
        if not wrong:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {want} to hold every VIP; got {wrong}")
        time.sleep(0.05)
    end = time.monotonic() + 2.5  # > Master_Down_Interval of the v3 variants
    while time.monotonic() < end:
        for v in vs:
            got = holders(hosts, v.address)
            assert got == [want], f"{v.name}: holders {got}, expected only {want}"
        time.sleep(0.1)
    for n in nodes:
        assert n.running(), f"{n.label} died\n{n.tail()}"


def _drop_leftovers(host: Host, vs: list[Variant]) -> None:
    """A kill -9 leaves the VIPs on the dead node; a reboot would clear them."""
    for v in vs:
        host.ip("addr", "del", v.vip, "dev", "eth0", check=False)


def test_pykeepalived_and_keepalived_take_over_from_each_other(
    pair: tuple[Lab, PyNode, KaNode],
) -> None:
    lb, py, ka = pair
    h_py, h_ka = lb.hosts
    vs = variants(h_py, h_ka)
    hosts = list(lb.hosts)

    # 1. pykeepalived MASTER (150), keepalived BACKUP (100).
    # (Started one after the other: a backup that starts first may become
    # MASTER for a moment before the master's first advert, legitimately.)
    py.start(render(vs, h_py, h_ka, 150, "MASTER"))
    _settle(hosts, vs, "h1", 15, [py])
    ka.start(render(vs, h_ka, h_py, 100, "BACKUP"))
    ka.wait_log("Entering BACKUP STATE", 5)
    _settle(hosts, vs, "h1", 5, [py, ka])
    states = {i["name"]: i["state"] for i in py.status()["vrrp_instances"]}
    assert set(states.values()) == {"MASTER"}, states
    assert ka.count("Entering MASTER STATE") == 0, ka.since()
    rejected = {
        i["name"]: {k: n for k, n in i["counters"].items() if k.startswith("rx_drop")}
        for i in py.status()["vrrp_instances"]
    }
    assert not any(rejected.values()), rejected

    # 2. pykeepalived crashes: keepalived takes every VIP.
    py.kill()
    _drop_leftovers(h_py, vs)
    _settle(hosts, vs, "h2", 8, [ka])

    # 3. pykeepalived comes back with a lower priority: keepalived MASTER,
    #    pykeepalived BACKUP, and pykeepalived accepts every advert.
    py.start(render(vs, h_py, h_ka, 50, "BACKUP"))
    _settle(hosts, vs, "h2", 8, [py, ka])
    for inst in py.status()["vrrp_instances"]:
        assert inst["state"] == "BACKUP", inst
        assert inst["counters"].get("adverts_received", 0) >= 2, inst
        drops = {k: n for k, n in inst["counters"].items() if k.startswith("rx_drop")}
        assert not drops, (inst["name"], drops)

    # 4. keepalived crashes: pykeepalived takes every VIP.
    ka.kill()
    _drop_leftovers(h_ka, vs)
    _settle(hosts, vs, "h1", 8, [py])

    # 5. keepalived restarts with priority 200 and preempts pykeepalived.
    ka.start(render(vs, h_ka, h_py, 200, "BACKUP"))
    _settle(hosts, vs, "h2", 12, [py, ka])

    # 6. pykeepalived restarts with priority 250 and preempts keepalived.
    assert py.terminate() == 0
    py.start(render(vs, h_py, h_ka, 250, "BACKUP"))
    _settle(hosts, vs, "h1", 12, [py, ka])


def test_tshark_checksums_of_our_adverts(pair: tuple[Lab, PyNode, KaNode]) -> None:
    """Wireshark's VRRP dissector verifies the checksum of every advert we send."""
    assert shutil.which("tshark"), "tshark is missing: `make setup` installs it"
    lb, py, ka = pair
    h_py, h_ka = lb.hosts
    vs = variants(h_py, h_ka)
    py.start(render(vs, h_py, h_ka, 150, "MASTER"))
    _settle(lb.hosts, vs, "h1", 15, [py])
    ka.start(render(vs, h_ka, h_py, 100, "BACKUP"))
    ka.wait_log("Entering BACKUP STATE", 5)
    pcap = py.dir / "adverts.pcap"
    h_py.run(
        ["tshark", "-q", "-i", "eth0", "-a", "duration:3", "-w", str(pcap)],
        timeout=20,
    )
    out = h_py.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-Y",
            "vrrp",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ah.spi",
        ],
        timeout=20,
    ).stdout
    print(out)
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    ours = [r for r in rows if r[3] == h_py.ip4 or r[4].startswith("fe80")]
    by_vrid: dict[int, list[list[str]]] = {}
    for r in ours:
        by_vrid.setdefault(int(r[0]), []).append(r)
    for v in vs:
        got = by_vrid.get(v.vrid, [])
        expected_min = 2 if v.kw.get("advert_int") == 1 else 6
        assert len(got) >= expected_min, (v.name, got, out)
        for r in got:
            assert r[1] == "150", (v.name, r)
            # Wireshark: 1 = good, 0 = bad, 2 = unverified.
            assert r[2] == "1", (v.name, r)
        if v.name == "AH":
            assert all(r[5] for r in got), (v.name, got)
    assert ka.count("Entering MASTER STATE") == 0
