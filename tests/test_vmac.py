"""use_vmac, vmac_xmit_base and vrrp_startup_delay in network-namespace labs.

``use_vmac`` puts an instance's VIPs on a macvlan carrying the virtual
router MAC ``00:00:5e:00:01:VRID`` (IPv6: ``00:00:5e:00:02:VRID``), so a
client keeps the same neighbour entry whichever router is MASTER.  The
tests check what keepalived 2.2.7 creates (``ip -d link``, sysctls; see
core/vrrp/vmac.py), that adverts and gratuitous ARPs leave with the right
source MAC (tshark), failover with a client's neighbour entry untouched,
removal at shutdown, and interop with keepalived's own VMACs.

The lab hosts' eth0 get ``arp_announce=2``: a master that must ARP for a
client to answer a packet sent to the VIP does it from the base interface,
and with the default arp_announce its request says "tell <VIP>" with the
base MAC, which rewrites the client's entry for the VIP.  keepalived 2.2.7
does exactly the same (measured), so an operator sets arp_announce; the
tests do too.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.vrrp.vmac import (
    configured_mac,
    link_local_eui64,
    name_candidates,
    virtual_mac,
)
from pykeepalived.testing.daemons import (
    KEEPALIVED,
    KaNode,
    Node,
    PyNode,
    dump_logs,
    global_defs,
    instance,
    log_time,
    wait_holder,
)
from pykeepalived.testing.lab import Host, Lab

VIP = "192.0.2.100"
VIP6 = "2001:db8::100"
VMAC4 = "00:00:5e:00:01:33"  # VRID 51
VMAC6 = "00:00:5e:00:02:34"  # VRID 52


# -- helpers ---------------------------------------------------------------------
def link(host: Host, dev: str) -> dict[str, Any] | None:
    """``ip -d -j link show dev`` as a dict, None if there is no such device."""
    res = host.ip("-d", "-j", "link", "show", "dev", dev, check=False)
    if res.returncode != 0:
        return None
    data: list[dict[str, Any]] = json.loads(res.stdout)
    return data[0]


def sysctl(host: Host, path: str) -> int:
    return int(host.run(["cat", f"/proc/sys/net/{path}"]).stdout.strip())


def neigh_mac(host: Host, address: str) -> str | None:
    out = json.loads(host.ip("-j", "neigh", "show", address, "dev", "eth0").stdout)
    return out[0].get("lladdr") if out else None


def rx_packets(host: Host, dev: str) -> int:
    return int(host.run(["cat", f"/sys/class/net/{dev}/statistics/rx_packets"]).stdout)


def has_vip(host: Host, vip: str, dev: str) -> bool:
    """``vip`` is on ``dev`` (False while ``dev`` does not exist)."""
    res = host.ip("-j", "addr", "show", "dev", dev, check=False)
    if res.returncode != 0:
        return False
    return any(a.get("local") == vip for i in json.loads(res.stdout) for a in i["addr_info"])


def wait_vip(hosts: list[Host], vip: str, dev: str, want: str | None, timeout: float) -> float:
    """Seconds until exactly host ``want`` (or none) has ``vip`` on ``dev``."""
    t0 = time.monotonic()
    while True:
        have = [h.name for h in hosts if has_vip(h, vip, dev)]
        if have == ([want] if want else []):
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"{vip} on {dev}: {have}, want {want}"
        time.sleep(0.02)


def arp_announce(*hosts: Host) -> None:
    for h in hosts:
        h.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_announce=2"])


class Capture:
    """tshark on a host's eth0 into a pcap, read back as field rows."""

    def __init__(self, host: Host, path: Path) -> None:
        self.host = host
        self.pcap = path
        self.err = path.with_suffix(".err")
        with open(self.err, "wb") as err:
            self.proc = host.popen(["tshark", "-q", "-i", "eth0", "-w", str(path)], stderr=err)
        deadline = time.monotonic() + 10
        while "Capturing on" not in self.err.read_text(errors="replace"):
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, "tshark did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)

    def rows(self, display_filter: str, *fields: str) -> list[list[str]]:
        self.stop()
        argv = ["tshark", "-n", "-r", str(self.pcap), "-Y", display_filter, "-T", "fields"]
        argv += ["-E", "separator=,"]
        for f in fields:
            argv += ["-e", f]
        out = self.host.run(argv, timeout=30).stdout
        return [line.split(",") for line in out.splitlines() if line.strip()]


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Node]]:
    """Daemons started by a test: killed at the end, logs shown on failure."""
    nodes: list[Node] = []
    yield nodes
    for n in nodes:
        n.kill()
    print(dump_logs(nodes))


def vmac_instance(name: str = "VI_1", **kw: Any) -> str:
    extra = kw.pop("extra", "")
    return instance(name, extra="    use_vmac\n" + extra, **kw)


# -- VMAC between two pykeepalived ---------------------------------------------------
@pytest.mark.netns
def test_vmac_failover_keeps_the_clients_neighbour_entry(
    lab: Any, tmp_path: Path, made: list[Node]
) -> None:
    lb: Lab = lab(3)
    h1, h2, client = lb.hosts
    arp_announce(h1, h2)
    # A distribution's rp_filter: the VMAC needs rp_filter 0 to hear adverts
    # from addresses routed via eth0, so all.rp_filter moves to the others.
    h2.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"])
    cap = Capture(client, tmp_path / "vmac.pcap")
    a = PyNode(h1, tmp_path)
    b = PyNode(h2, tmp_path)
    made += [a, b]
    # The backup starts once the master is up: a backup started first (a
    # slow start-up of the other daemon) would rightly be MASTER for a while.
    a.start(global_defs("a") + vmac_instance(state="MASTER", priority=150))
    wait_vip([h1], VIP, "vrrp.51", "h1", 10)
    b.start(global_defs("b") + vmac_instance(state="BACKUP", priority=100))
    t_start = time.monotonic()
    b.wait_log("(VI_1) Entering BACKUP STATE (init)", 10)

    # What keepalived 2.2.7 creates: a private-mode macvlan named vrrp.VRID
    # with the RFC 5798 MAC, IPv6 address generation off, up on both routers.
    for h in (h1, h2):
        info = link(h, "vrrp.51")
        assert info is not None, f"{h.name} has no vrrp.51"
        assert info["address"] == VMAC4
        assert info["link"] == "eth0"
        assert info["linkinfo"]["info_kind"] == "macvlan"
        assert info["linkinfo"]["info_data"]["mode"] == "private"
        assert info.get("inet6_addr_gen_mode") == "none"
        assert "UP" in info["flags"]
    assert not has_vip(h1, VIP, "eth0") and not has_vip(h2, VIP, "vrrp.51")
    for path, value in (
        ("ipv4/conf/vrrp.51/arp_ignore", 1),
        ("ipv4/conf/vrrp.51/accept_local", 1),
        ("ipv4/conf/vrrp.51/rp_filter", 0),
        ("ipv4/conf/vrrp.51/promote_secondaries", 1),
        ("ipv6/conf/vrrp.51/disable_ipv6", 1),
        ("ipv4/conf/eth0/arp_ignore", 1),
        ("ipv4/conf/eth0/arp_filter", 1),
    ):
        assert sysctl(h1, path) == value, path
    assert a.instance_status("VI_1")["vmac"] == "vrrp.51"
    for path, value in (
        ("ipv4/conf/all/rp_filter", 0),
        ("ipv4/conf/default/rp_filter", 1),
        ("ipv4/conf/eth0/rp_filter", 1),
        ("ipv4/conf/vrrp.51/rp_filter", 0),
    ):
        assert sysctl(h2, path) == value, path
    b.wait_log("NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from 1 to 0", 1)

    # The client learns the virtual MAC for the VIP.
    assert client.ping(VIP, count=3)
    assert neigh_mac(client, VIP) == VMAC4
    # The backup hears the adverts on its VMAC: past its master-down
    # interval (3.6 s) it is still BACKUP.
    time.sleep(max(0.0, 4.5 - (time.monotonic() - t_start)))
    assert not has_vip(h2, VIP, "vrrp.51")
    assert b.count("Entering MASTER STATE") == 0

    # The master host dies (daemon killed, link gone): the backup takes
    # over; the client's entry is still the virtual MAC and the traffic
    # reaches the new master's VMAC.  (After a kill -9 alone, the VMAC and
    # VIP left on h1 answer the new master's gratuitous ARPs, and the bridge
    # then sends the virtual MAC back to h1: keepalived 2.2.7 does the same.)
    a.kill()
    h1.link_set("eth0", False)
    wait_vip([h2], VIP, "vrrp.51", "h2", 10)
    assert neigh_mac(client, VIP) == VMAC4
    before = rx_packets(h2, "vrrp.51")
    for _ in range(5):
        assert client.ping(VIP, timeout=0.5)
    assert rx_packets(h2, "vrrp.51") - before >= 5
    assert neigh_mac(client, VIP) == VMAC4

    # Graceful stop removes the VMAC and gives eth0 its settings back.
    assert b.terminate() == 0
    assert link(h2, "vrrp.51") is None
    assert sysctl(h2, "ipv4/conf/eth0/arp_ignore") == 0
    assert sysctl(h2, "ipv4/conf/eth0/arp_filter") == 0
    assert sysctl(h2, "ipv4/conf/all/rp_filter") == 1
    assert sysctl(h2, "ipv4/conf/default/rp_filter") == 0
    assert sysctl(h2, "ipv4/conf/eth0/rp_filter") == 0
    assert "NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to 1" in b.text()
    assert "pykeepalived" not in h2.run(["nft", "list", "tables"]).stdout

    # Every advert (from either router) and every gratuitous ARP for the
    # VIP left with the virtual MAC.
    adverts = cap.rows("vrrp", "eth.src", "ip.src")
    assert {r[1] for r in adverts} == {h1.ip4, h2.ip4}, adverts
    assert {r[0] for r in adverts} == {VMAC4}, adverts
    garps = cap.rows(f"arp.src.proto_ipv4 == {VIP}", "eth.src", "arp.src.hw_mac")
    assert garps and {tuple(r) for r in garps} == {(VMAC4, VMAC4)}, garps
    # Nothing else left with the virtual MAC: the IGMP reports of the
    # routers' VMACs (joining 224.0.0.18) went out of eth0 instead, as with
    # keepalived's nftables rule; else a backup's report would draw the
    # virtual MAC to it in the switches.
    others = cap.rows(
        f"eth.src == {VMAC4} && !vrrp && !arp", "frame.time_epoch", "ip.src", "_ws.col.Info"
    )
    assert others == [], others
    h2_mac = json.loads(h2.ip("-j", "link", "show", "dev", "eth0").stdout)[0]["address"]
    reports = cap.rows("igmp && igmp.maddr == 224.0.0.18", "eth.src")
    assert [h2_mac] in reports, reports


@pytest.mark.netns
def test_vmac_xmit_base_sends_adverts_from_the_base_mac(
    lab: Any, tmp_path: Path, made: list[Node]
) -> None:
    lb: Lab = lab(3)
    h1, h2, client = lb.hosts
    cap = Capture(client, tmp_path / "xmit.pcap")
    a = PyNode(h1, tmp_path)
    b = PyNode(h2, tmp_path)
    made += [a, b]
    extra = "    vmac_xmit_base"
    conf_a = global_defs("a") + vmac_instance(state="MASTER", priority=150, extra=extra)
    a.start(conf_a)
    wait_vip([h1], VIP, "vrrp.51", "h1", 10)
    b.start(global_defs("b") + vmac_instance(state="BACKUP", priority=100, extra=extra))
    t_start = time.monotonic()
    b.wait_log("(VI_1) Entering BACKUP STATE (init)", 10)
    # The backup hears the adverts on eth0: past its master-down interval
    # (3.6 s) it is still BACKUP.
    time.sleep(max(0.0, 4.5 - (time.monotonic() - t_start)))
    assert not has_vip(h2, VIP, "vrrp.51")
    assert b.count("Entering MASTER STATE", since_mark=False) == 0

    # Reload: an unchanged instance keeps its VMAC (same interface index)
    # and its VIP; without use_vmac the VMAC goes, as in keepalived.
    index = link(h1, "vrrp.51")["ifindex"]  # type: ignore[index]
    a.reload(conf_a)
    a.wait_log("Reloading configuration", 5)
    time.sleep(0.5)
    assert link(h1, "vrrp.51")["ifindex"] == index  # type: ignore[index]
    assert has_vip(h1, VIP, "vrrp.51")
    assert a.count("removed or changed by reload") == 0
    a.reload(global_defs("a") + instance(state="MASTER", priority=150))
    a.wait_log("(VI_1) removed or changed by reload", 5)
    deadline = time.monotonic() + 3
    while link(h1, "vrrp.51") is not None:
        assert time.monotonic() < deadline, "vrrp.51 still there after the reload"
        time.sleep(0.05)
    assert a.terminate() == 0
    base_mac = json.loads(h1.ip("-j", "link", "show", "dev", "eth0").stdout)[0]["address"]
    adverts = cap.rows(f"vrrp && ip.src == {h1.ip4}", "eth.src")
    assert adverts and {r[0] for r in adverts} == {base_mac}, adverts
    # Gratuitous ARPs still come from the VMAC (keepalived: "ARP will
    # happen from the VMAC interface").
    garps = cap.rows(f"arp.src.proto_ipv4 == {VIP}", "eth.src")
    assert garps and {r[0] for r in garps} == {VMAC4}, garps


# -- beside keepalived -------------------------------------------------------------
@pytest.mark.netns
@pytest.mark.interop
def test_vmac_interop_with_keepalived(lab: Any, tmp_path: Path, made: list[Node]) -> None:
    """pykeepalived and keepalived, both with use_vmac, IPv4 and IPv6
    (native_ipv6): one MASTER, takeover both ways."""
    assert os.path.exists(KEEPALIVED), (
        "keepalived (the oracle) is missing: `make setup` installs it"
    )
    lb: Lab = lab(2)
    h_py, h_ka = lb.hosts
    py = PyNode(h_py, tmp_path)
    ka = KaNode(h_ka, tmp_path)
    made += [py, ka]

    def conf(router: str, priority: int, state: str) -> str:
        return (
            global_defs(router)
            + vmac_instance("V4", vrid=51, priority=priority, state=state)
            + vmac_instance(
                "V6",
                vrid=52,
                priority=priority,
                state=state,
                version=3,
                advert_int=0.5,
                native_ipv6=True,
                vips=[f"{VIP6}/64"],
            )
        )

    hosts = [h_py, h_ka]
    py.start(conf("py", 150, "MASTER"))
    ka.start(conf("ka", 100, "BACKUP"))
    wait_vip(hosts, VIP, "vrrp.51", "h1", 10)
    wait_vip(hosts, VIP6, "vrrp.52", "h1", 10)
    # Both built the same interfaces.
    for h in hosts:
        assert link(h, "vrrp.51")["address"] == VMAC4  # type: ignore[index]
        info6 = link(h, "vrrp.52")
        assert info6 is not None and info6["address"] == VMAC6
    ll_py = {a for a in h_py.addresses("vrrp.52") if a.startswith("fe80")}
    assert ll_py and ll_py <= h_py.addresses("eth0")  # the base's link-local
    end = time.monotonic() + 2
    while time.monotonic() < end:
        assert not has_vip(h_ka, VIP, "vrrp.51") and not has_vip(h_ka, VIP6, "vrrp.52")
        time.sleep(0.1)

    # pykeepalived crashes: keepalived takes both.
    py.kill()
    wait_vip([h_ka], VIP, "vrrp.51", "h2", 10)
    wait_vip([h_ka], VIP6, "vrrp.52", "h2", 10)

    # pykeepalived comes back with a higher priority: it adopts the VMACs
    # it left behind and preempts keepalived.
    py.start(conf("py", 200, "BACKUP"))
    py.wait_log("Found matching interface vrrp.51", 10)
    wait_vip([h_ka], VIP, "vrrp.51", None, 10)
    wait_vip([h_ka], VIP6, "vrrp.52", None, 10)
    assert has_vip(h_py, VIP, "vrrp.51") and has_vip(h_py, VIP6, "vrrp.52")
    ka.wait_log("(V4) Entering BACKUP STATE", 5)
    assert ka.running()
    assert py.terminate() == 0
    assert link(h_py, "vrrp.51") is None and link(h_py, "vrrp.52") is None


# -- vrrp_startup_delay ---------------------------------------------------------------
@pytest.mark.netns
def test_startup_delay_holds_the_instances_then_reload_does_not(
    lab: Any, tmp_path: Path, made: list[Node]
) -> None:
    """keepalived 2.2.7 (measured, delay 3 s): owner MASTER at 3.1 s, a
    priority-100 backup at 6.7 s (delay + Master_Down_Interval)."""
    lb: Lab = lab(2)
    h1, h2 = lb.hosts
    cap = Capture(h2, tmp_path / "delay.pcap")
    node = PyNode(h1, tmp_path)
    made.append(node)
    delay = 2.0
    gd = global_defs("d", f"    vrrp_startup_delay {delay:g}\n")
    owner = instance("OWN", vrid=51, priority=255, state="MASTER", vips=["192.0.2.100/24"])
    backup = instance(
        "BCK", vrid=52, priority=100, version=3, advert_int=0.5, vips=["192.0.2.101/24"]
    )
    node.start(gd + owner + backup)
    node.wait_log("(BCK) Entering MASTER STATE", 10)
    # Times from the daemon's own log lines (wall clock, milliseconds).
    t0 = log_time(node, "Delaying startup for 2 seconds")
    # BACKUP (init) at once, as keepalived: only the timers wait.
    assert log_time(node, "(BCK) Entering BACKUP STATE (init)") - t0 < 0.5
    t_own = log_time(node, "(OWN) Entering MASTER STATE") - t0
    t_bck = log_time(node, "(BCK) Entering MASTER STATE") - t0
    assert delay - 0.01 <= t_own < delay + 1.0, f"owner MASTER {t_own:.2f}s after start"
    # Master_Down_Interval of BCK: 3 * 0.5 + 156 * 0.5 / 256 = 1.8 s.
    assert delay + 1.79 <= t_bck < delay + 1.8 + 1.5, f"backup MASTER {t_bck:.2f}s"
    assert "(OWN) Entering BACKUP STATE" not in node.text()

    # A reload does not delay again: a new instance becomes MASTER after its
    # own timer only.
    node.reload(
        gd
        + owner
        + backup
        + instance("NEW", vrid=53, priority=255, state="MASTER", vips=["192.0.2.102/24"])
    )
    t_reload = time.time()
    took = wait_holder([h1], "192.0.2.102", "h1", 5)
    assert took < delay - 0.5, f"new instance after reload took {took:.2f}s"

    # No advert went out before the delay had passed.
    first = cap.rows("vrrp", "frame.time_epoch")
    assert first, "no adverts captured"
    first_t = min(float(r[0]) for r in first)
    assert first_t - t0 >= delay - 0.01, f"first advert {first_t - t0:.2f}s after start"
    assert t_reload > first_t
    assert node.terminate() == 0


# -- configuration (no namespaces) ---------------------------------------------------
def _load(body: str, gd: str = "") -> tuple[Any, list[tuple[int, str]]]:
    text = (f"global_defs {{\n{gd}}}\n" if gd else "") + body
    result = load_text(text, name="v.conf")
    return result.config, [(d.place.line, d.message) for d in result.diagnostics.items]


def test_startup_delay_and_vmac_keywords_are_applied() -> None:
    cfg, diags = _load(
        "vrrp_instance V {\n interface eth0\n virtual_router_id 51\n use_vmac\n"
        " vmac_xmit_base\n virtual_ipaddress {\n 192.0.2.100/24\n }\n}\n",
        gd=" vrrp_startup_delay 5.5\n",
    )
    assert cfg.global_defs.vrrp_startup_delay == 5.5
    vi = cfg.vrrp_instances[0]
    assert vi.use_vmac is True and vi.vmac_xmit_base
    assert configured_mac(vi) == bytes.fromhex("00005e000133")
    assert not [m for _, m in diags if "not supported" in m], diags


@pytest.mark.parametrize(
    "args,name,mac,warning",
    [
        ("vrrp51", "vrrp51", None, None),
        ("vrrp51 02:aa:bb:cc:dd:ee", "vrrp51", "02aabbccddee", None),
        ("02:aa:bb:cc:dd vrrp51", "vrrp51", "02aabbccdd33", None),  # VRID 51 as 6th
        ("02:aa:bb:cc:dd:ee", True, "02aabbccddee", None),
        ("01:aa:bb:cc:dd:ee", True, None, "VMAC MAC address is multicast 01:aa:bb:cc:dd:ee"),
        ("00:00:5e:00:01:07", True, None, "not allowed to be RFC5798 address"),
        ("02:zz:bb:cc:dd:ee", True, None, "VMAC invalid MAC address 02:zz:bb:cc:dd:ee"),
        ("a_name_far_too_long", True, None, "too long or invalid characters"),
    ],
)
def test_use_vmac_arguments(
    args: str, name: str | bool, mac: str | None, warning: str | None
) -> None:
    cfg, diags = _load(
        f"vrrp_instance V {{\n interface eth0\n virtual_router_id 51\n use_vmac {args}\n"
        " virtual_ipaddress {\n 192.0.2.100/24\n }\n}\n"
    )
    vi = cfg.vrrp_instances[0]
    assert vi.use_vmac == name
    want = bytes.fromhex(mac) if mac else virtual_mac(51, 4)
    assert configured_mac(vi) == want
    found = [(line, m) for line, m in diags if "VMAC" in m]
    if warning is None:
        assert found == [], diags
    else:
        assert len(found) == 1 and found[0][0] == 4 and warning in found[0][1], diags


@pytest.mark.parametrize(
    "body,family,version,messages",
    [
        # native_ipv6 alone: IPv6, VRRPv3.
        (" native_ipv6\n", 6, 3, []),
        # After an IPv4 address keepalived refuses it (the instance stays IPv4).
        (
            " mcast_dst_ip 224.0.0.99\n native_ipv6\n",
            4,
            2,
            [(5, "Cannot specify native_ipv6 with IPv4 addresses")],
        ),
        # Before IPv4 VIPs: they are dropped.
        (
            " native_ipv6\n virtual_ipaddress {\n 192.0.2.1/24\n 2001:db8::1/64\n }\n",
            6,
            3,
            [(6, "(V): address family must match VRRP instance [192.0.2.1/24] - ignoring")],
        ),
        (" native_ipv6\n virtual_ipaddress {\n 2001:db8::1/64\n }\n", 6, 3, []),
    ],
)
def test_native_ipv6(body: str, family: int, version: int, messages: list[tuple[int, str]]) -> None:
    cfg, diags = _load(f"vrrp_instance V {{\n interface eth0\n virtual_router_id 51\n{body}}}\n")
    vi = cfg.vrrp_instances[0]
    assert (vi.family, vi.version) == (family, version)
    assert [d for d in diags if "virtual_ipaddress configured" not in d[1]] == messages


@pytest.mark.parametrize(
    "lines,xmit_base,use_vmac,message",
    [
        (" vmac_xmit_base\n", False, False, "(V) vmac_xmit_base is only valid with a vmac"),
        (
            " use_vmac\n unicast_peer {\n 192.0.2.12\n }\n",
            True,
            True,
            "(V) unicast with use_vmac requires vmac_xmit_base - setting",
        ),
        (
            " use_vmac\n vmac_xmit_base\n strict_mode\n",
            False,
            True,
            "(V) xmit_base is incompatible with strict mode - resetting",
        ),
    ],
)
def test_vmac_rules(lines: str, xmit_base: bool, use_vmac: bool, message: str) -> None:
    cfg, diags = _load(
        f"vrrp_instance V {{\n interface eth0\n virtual_router_id 51\n{lines}"
        " virtual_ipaddress {\n 192.0.2.100/24\n }\n}\n"
    )
    vi = cfg.vrrp_instances[0]
    assert (vi.vmac_xmit_base, bool(vi.use_vmac)) == (xmit_base, use_vmac)
    assert [m for _, m in diags] == [message]


def test_a_vmac_name_belongs_to_one_instance() -> None:
    block = (
        "vrrp_instance {n} {{\n interface eth0\n virtual_router_id {v}\n use_vmac vm1\n"
        " virtual_ipaddress {{\n 192.0.2.{v}/24\n }}\n}}\n"
    )
    cfg, diags = _load(block.format(n="A", v=51) + block.format(n="B", v=52))
    assert [vi.use_vmac for vi in cfg.vrrp_instances] == ["vm1", True]
    assert [m for _, m in diags] == ["(B) VRRP instance A is already using vm1 - ignoring name"]


def test_generated_vmac_names() -> None:
    """keepalived's create_vmac_name() order."""
    assert list(itertools.islice(name_candidates(51, 4), 4)) == [
        "vrrp.51",
        "vrrp1.51",
        "vrrp2.51",
        "vrrp3.51",
    ]
    assert list(itertools.islice(name_candidates(51, 6), 8)) == [
        "vrrp.51",
        "vrrp6.51",
        "vrrp1.51",
        "vrrp2.51",
        "vrrp3.51",
        "vrrp4.51",
        "vrrp5.51",
        "vrrp7.51",
    ]
    # IFNAMSIZ: the prefix is shortened, number and VRID kept.
    assert next(iter(name_candidates(255, 4, prefix="averylongprefix"))) == "averylongpr.255"
    assert link_local_eui64(bytes.fromhex("4e2066a8a2c3")) == "fe80::4c20:66ff:fea8:a2c3"
