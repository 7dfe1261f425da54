"""Split brain detected, reported and cleared on a real wire (core/vrrp/splitbrain.py).

Two nodes, h1 priority 150 and h2 priority 100, IPv4 and IPv6 instances,
probes every 0.5 s.  nftables drops VRRP on h2's input only: h2 hears
nothing and becomes MASTER; h1 hears h2's lower-priority adverts and stays
MASTER.  Both must report the split brain (status, FIFO line, log line
naming the other side) within the stated time (h1: three lower-priority
adverts; h2: its ARP probe / DAD NS answered by h1's MAC in two rounds in a
row), and clear it once the link is restored, with h1 the only holder.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.shell.http_api import render_metrics
from pykeepalived.core.vrrp.splitbrain import (
    SplitBrain,
    arp_probe,
    dad_solicitation,
    parse_arp_reply,
    parse_na,
)
from pykeepalived.testing.daemons import PyNode, dump_logs, global_defs, holders, instance
from pykeepalived.testing.lab import Host, Lab, wait_until

VIP = "192.0.2.100"
VIP6 = "2001:db8::100"
ADVERT_INT = 0.2
PROBE = 0.5
#: Generous bounds over what the protocol and the probes need (about 1.5 s):
#: the machine is shared.
DETECT_WITHIN = 10.0

FIFO_READER = """#!/bin/sh
while read -r line; do echo "$line" >> {out}; done < "$1"
"""
NOTIFY = """#!/bin/sh
echo "$*" >> {out}
"""

DROP_VRRP = """table inet sb {
    chain input {
        type filter hook input priority -300; policy accept;
        meta l4proto vrrp drop
    }
}
"""


def start(host: Host, tmp_path: Path, priority: int) -> PyNode:
    node = PyNode(host, tmp_path)
    reader = node.dir / "fifo_reader.sh"
    reader.write_text(FIFO_READER.format(out=node.dir / "fifo.out"))
    reader.chmod(reader.stat().st_mode | stat.S_IXUSR)
    notify = node.dir / "notify.sh"
    notify.write_text(NOTIFY.format(out=node.dir / "notify.out"))
    notify.chmod(notify.stat().st_mode | stat.S_IXUSR)
    extra = f'    split_brain_probe_interval {PROBE:g}\n    notify_split_brain "{notify} act"'
    conf = global_defs(
        host.name,
        f"    notify_fifo {node.dir / 'notify.fifo'}\n    notify_fifo_script {reader}\n",
    )
    conf += instance(priority=priority, version=3, advert_int=ADVERT_INT, extra=extra)
    conf += instance(
        "VI_6",
        vrid=52,
        priority=priority,
        version=3,
        advert_int=ADVERT_INT,
        vips=(f"{VIP6}/64",),
        extra=extra,
    )
    node.start(conf)
    return node


def fifo(node: PyNode) -> str:
    out = node.dir / "fifo.out"
    return out.read_text() if out.exists() else ""


def notified(node: PyNode) -> list[str]:
    out = node.dir / "notify.out"
    return out.read_text().splitlines() if out.exists() else []


def split(node: PyNode) -> dict[str, dict[str, Any]]:
    return {i["name"]: i["split_brain"] for i in node.status()["vrrp_instances"]}


def mac(host: Host) -> str:
    return str(json.loads(host.ip("-j", "link", "show", "dev", "eth0").stdout)[0]["address"])


def test_probe_packets() -> None:
    mac = bytes.fromhex("02aabbccddee")
    frame = arp_probe(mac, VIP)
    # RFC 5227 2.1.1: broadcast request, sender IP all zeroes, target the VIP
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert frame[20:22] == b"\x00\x01" and frame[28:32] == bytes(4)
    assert frame[38:42] == bytes([192, 0, 2, 100])
    reply = frame[:20] + b"\x00\x02" + mac + bytes([192, 0, 2, 100]) + frame[32:]
    assert parse_arp_reply(reply) == (VIP, mac)
    assert parse_arp_reply(frame) is None  # a request is not an answer
    packet, dst_mac = dad_solicitation(VIP6)
    assert dst_mac == bytes.fromhex("3333ff000100")
    assert packet[8:24] == bytes(16)  # from ::
    assert packet[7] == 255 and packet[40] == 135
    # the ICMPv6 checksum verifies: the sum over pseudo-header and body is 0
    body = packet[40:]
    pseudo = packet[8:40] + len(body).to_bytes(4, "big") + bytes(3) + b"\x3a"
    data = pseudo + body
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
    na = bytes([136, 0, 0, 0, 0x20, 0, 0, 0]) + packet[48:64] + bytes([2, 1]) + mac
    assert parse_na(na) == (VIP6, mac)


def test_lower_priority_adverts_make_and_end_a_split_brain() -> None:
    """Three lower-priority adverts within a Master_Down_Interval of each
    other make it; one (a preemption) does not; leaving MASTER ends it."""
    reports: list[tuple[str, str]] = []
    sb = SplitBrain("VI_1", [(VIP, "eth0")], 0.0, lambda: 3.0, lambda s, d: reports.append((s, d)))
    loop = asyncio.new_event_loop()
    try:
        sb.state_changed(True, loop)
        sb.lower_priority("192.0.2.12", 100, 10.0)
        sb.lower_priority("192.0.2.12", 100, 14.0)  # the first one is forgotten
        assert reports == []
        sb.lower_priority("192.0.2.12", 100, 15.0)
        sb.lower_priority("192.0.2.12", 100, 16.0)
        assert reports == [("SPLIT_BRAIN", "adverts from 192.0.2.12 with priority 100")]
        assert sb.status()["detected"] is True
        sb.state_changed(False, loop)
        assert reports[-1] == ("SPLIT_BRAIN_CLEARED", "no longer MASTER")
    finally:
        sb.close()
        loop.close()


def test_metrics() -> None:
    inst = {"name": "VI_1", "split_brain": {"detected": True, "count": 2}}
    text = render_metrics({"vrrp_instances": [inst]})
    assert 'pykeepalived_vrrp_split_brain{instance="VI_1"} 1' in text
    assert 'pykeepalived_vrrp_split_brains_total{instance="VI_1"} 2' in text


@pytest.mark.netns
def test_one_way_advert_loss_is_reported_and_cleared(lab: object, tmp_path: Path) -> None:
    lb: Lab = lab(2)  # type: ignore[operator]
    h1, h2 = lb[0], lb[1]
    n1 = start(h1, tmp_path, 150)
    time.sleep(0.5)  # h1 first, so that the election is a plain one
    n2 = start(h2, tmp_path, 100)
    nodes = [n1, n2]
    try:
        wait_until(lambda: holders([h1, h2], VIP) == ["h1"], timeout=10)
        wait_until(lambda: n2.count("Entering BACKUP STATE") >= 2, timeout=10)
        time.sleep(4 * PROBE)  # probe rounds of a healthy pair
        assert not any(s["detected"] for s in split(n1).values())
        assert "SPLIT_BRAIN" not in fifo(n1) + fifo(n2)

        h2.nft(DROP_VRRP)
        t0 = time.monotonic()
        wait_until(
            lambda: all(s["detected"] for n in nodes for s in split(n).values()),
            timeout=DETECT_WITHIN,
            message=f"split brain not reported on both\n{dump_logs(nodes)}",
        )
        took = time.monotonic() - t0
        assert sorted(holders([h1, h2], VIP)) == ["h1", "h2"]
        # h1 names h2's address (its adverts), h2 names h1's MAC (the probes)
        s1, s2 = split(n1), split(n2)
        assert h2.ip4 in s1["VI_1"]["detail"], s1
        assert mac(h1) in s2["VI_1"]["detail"] and "ARP" in s2["VI_1"]["detail"], s2
        assert mac(h1) in s2["VI_6"]["detail"] and "NA" in s2["VI_6"]["detail"], s2
        for n in nodes:
            assert n.count("split brain: another MASTER is active") == 2, n.since()
            wait_until(lambda n=n: fifo(n).count("SPLIT_BRAIN ") == 2, timeout=5)  # type: ignore[misc]
            assert 'INSTANCE "VI_1" SPLIT_BRAIN ' in fifo(n)
        # notify_split_brain: configured arguments, the state, the detail
        wait_until(lambda: len(notified(n2)) == 2, timeout=5)
        assert any(
            line.startswith("act SPLIT_BRAIN 192.0.2.100 is also held by") for line in notified(n2)
        ), notified(n2)

        h2.run(["nft", "delete", "table", "inet", "sb"])
        wait_until(
            lambda: not any(s["detected"] for n in nodes for s in split(n).values()),
            timeout=DETECT_WITHIN,
            message=f"split brain not cleared\n{dump_logs(nodes)}",
        )
        wait_until(lambda: holders([h1, h2], VIP) == ["h1"], timeout=5)
        for n in nodes:
            wait_until(lambda n=n: fifo(n).count("SPLIT_BRAIN_CLEARED") == 2, timeout=5)  # type: ignore[misc]
            assert n.count("split brain cleared") == 2
            wait_until(lambda n=n: len(notified(n)) == 4, timeout=5)  # type: ignore[misc]
        assert "act SPLIT_BRAIN_CLEARED no longer MASTER" in notified(n2)
        assert {i["state"] for i in n2.status()["vrrp_instances"]} == {"BACKUP"}
        print(f"split brain reported on both nodes {took:.2f} s after the advert loss began")
    finally:
        for n in nodes:
            n.terminate()


@pytest.mark.netns
def test_unicast_peer_that_stops_answering_is_reported(lab: object, tmp_path: Path) -> None:
    """A unicast MASTER probes its peers too: one that answered and stops
    (link down here; or cut off and MASTER on its side) is named in a
    warning and in the status, and dropped from it when it answers again."""
    lb: Lab = lab(2)  # type: ignore[operator]
    h1, h2 = lb[0], lb[1]
    nodes = []
    for host, peer, prio in ((h1, h2, 150), (h2, h1, 100)):
        node = PyNode(host, tmp_path)
        node.start(
            global_defs(host.name)
            + instance(
                priority=prio,
                version=3,
                advert_int=ADVERT_INT,
                unicast_src=host.ip4,
                unicast_peers=(peer.ip4,),
                extra=f"    split_brain_probe_interval {PROBE:g}",
            )
        )
        nodes.append(node)
    n1 = nodes[0]
    try:
        wait_until(lambda: holders([h1, h2], VIP) == ["h1"], timeout=10)
        time.sleep(3 * PROBE)  # h2 answers some rounds
        assert split(n1)["VI_1"]["silent_peers"] == []
        h2.link_set("eth0", False)
        wait_until(
            lambda: split(n1)["VI_1"]["silent_peers"] == [h2.ip4],
            timeout=DETECT_WITHIN,
            message=f"silent peer not reported\n{dump_logs(nodes)}",
        )
        assert n1.count(f"unicast peer {h2.ip4} stopped answering probes") == 1
        h2.link_set("eth0", True)
        wait_until(lambda: split(n1)["VI_1"]["silent_peers"] == [], timeout=DETECT_WITHIN)
        assert n1.count(f"unicast peer {h2.ip4} answers again") == 1
    finally:
        for n in nodes:
            n.terminate()
