"""Gratuitous ARPs on the wire (core/vrrp/instance.py: garp_master_delay, _repeat,
_refresh, _refresh_repeat), counted by tshark for pykeepalived and keepalived 2.2.7
running the same configuration side by side in one lab.

keepalived is the oracle: the bursts (how many GARPs, and when, after the first one)
pykeepalived sends must be the ones keepalived sends for the same keywords.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import KaNode, Node, PyNode, wait_holder
from pykeepalived.testing.lab import Lab
from pykeepalived.testing.scenarios import render

pytestmark = [pytest.mark.netns, pytest.mark.interop]

VIPS = {"py": "192.0.2.100", "ka": "192.0.2.101"}

#: The keywords under test: a burst of 3 on becoming MASTER, 3 more 2 s later, then 2
#: every 3 s (keepalived.conf(5) vrrp_instance garp_master_*).
GARP = (
    "    garp_master_delay 2\n"
    "    garp_master_repeat 3\n"
    "    garp_master_refresh 3\n"
    "    garp_master_refresh_repeat 2\n"
)
#: Seconds of capture after the first GARP: the two master bursts and two refreshes.
WINDOW = 7.5
#: A lower-priority advert reaching a MASTER: 4 GARPs at once, 4 more 2 s later
#: (keepalived 2.2.7 vrrp.c vrrp_state_master_rx); no refresh, one master burst.
LOWER_GARP = (
    "    garp_master_delay 0\n"
    "    garp_master_repeat 1\n"
    "    garp_lower_prio_repeat 4\n"
    # (whole seconds: keepalived 2.2.7 rejects "1.5" as an invalid number and ignores it)
    "    garp_lower_prio_delay 2\n"
)
LOWER_WINDOW = 3.0

#: Runs on the capture host: one priority-50 advert per VRID, as a peer would send it.
LOWER_PRIO = r"""
import ipaddress, socket, struct, sys
from pykeepalived.core.vrrp import packet as pk
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
             socket.inet_aton("0.0.0.0") + socket.inet_aton(sys.argv[1])
             + struct.pack("@i", socket.if_nametoindex("eth0")))
for arg in sys.argv[2:]:
    vrid, vip = arg.split("=")
    adv = pk.make_advert(version=2, vrid=int(vrid), priority=50, advert_int=1,
                         addresses=(ipaddress.ip_address(vip),),
                         auth_type=pk.AuthType.PASS, auth_pass="e2e", family=socket.AF_INET)
    s.sendto(pk.encode_advert(adv), ("224.0.0.18", 0))
"""


def bursts(times: list[float], gap: float = 0.5) -> list[tuple[float, int]]:
    """(offset from the first GARP, count) per burst; GARPs closer than ``gap`` s are one
    burst (keepalived sends a burst back to back: garp_interval 0)."""
    out: list[tuple[float, int]] = []
    last = None
    for t in times:
        if last is None or t - last > gap:
            out.append((t - times[0], 0))
        out[-1] = (out[-1][0], out[-1][1] + 1)
        last = t
    return out


def _garps_of_both(
    net: Lab, tmp_path: Path, extra: str, seconds: float, lower_prio: bool = False
) -> tuple[dict[str, list[float]], float, str]:
    """Run pykeepalived (h1, VRID 51) and keepalived (h2, VRID 52) as lone MASTERs with
    ``extra`` in their vrrp_instance while h3 captures ARP; optionally send each a
    lower-priority advert once ``seconds`` have passed, then capture ``LOWER_WINDOW``
    more.  Returns the GARP times per implementation, when the adverts went, the logs."""
    h_py, h_ka, h_cap = net.hosts
    cap = h_cap.popen(
        [
            *("tshark", "-l", "-n", "-i", "eth0", "-f", "arp", "-T", "fields"),
            *("-e", "frame.time_epoch", "-e", "arp.src.proto_ipv4", "-e", "arp.dst.proto_ipv4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cap.stderr is not None
    deadline = time.monotonic() + 20
    while "Capturing on" not in cap.stderr.readline():
        assert time.monotonic() < deadline and cap.poll() is None, "tshark did not start"
    nodes: dict[str, Node] = {
        "py": PyNode(h_py, tmp_path, "py"),
        "ka": KaNode(h_ka, tmp_path, "ka"),
    }
    for vrid, (kind, node) in enumerate(nodes.items(), start=51):
        node.start(
            render(kind, priority=150, state="MASTER", vrid=vrid, vip=VIPS[kind], extra=extra)
        )
    t_lower = float("inf")
    try:
        wait_holder(net.hosts, VIPS["py"], "h1", 15)
        wait_holder(net.hosts, VIPS["ka"], "h2", 15)
        time.sleep(seconds)
        if lower_prio:
            t_lower = time.time()
            h_cap.run(
                [
                    sys.executable,
                    "-c",
                    LOWER_PRIO,
                    h_cap.ip4,
                    f"51={VIPS['py']}",
                    f"52={VIPS['ka']}",
                ]
            )
            time.sleep(LOWER_WINDOW)
    finally:
        cap.terminate()
        out, _ = cap.communicate(timeout=10)
    times: dict[str, list[float]] = {"py": [], "ka": []}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        stamp, spa, tpa = fields
        for kind, vip in VIPS.items():
            if spa == vip and tpa == vip:  # gratuitous: sender address == target address
                times[kind].append(float(stamp))
    logs = "\n".join(f"--- {k}\n{n.tail(40)}" for k, n in nodes.items())
    return times, t_lower, logs


def _same_bursts(got: dict[str, list[tuple[float, int]]], logs: str) -> None:
    ka, py = got["ka"], got["py"]
    assert [n for _, n in py] == [n for _, n in ka], (got, logs)
    # The same times, within a generous margin.
    for (t_py, _), (t_ka, _) in zip(py, ka, strict=True):
        assert abs(t_py - t_ka) < 0.5, (got, logs)


def test_garp_delay_repeat_refresh_match_keepalived(lab: Any, tmp_path: Path) -> None:
    assert shutil.which("tshark"), "tshark is missing: `make setup` installs it"
    times, _, logs = _garps_of_both(lab(3), tmp_path, GARP, WINDOW + 0.5)
    got = {k: [b for b in bursts(t) if b[0] <= WINDOW] for k, t in times.items()}
    print("\nGARP bursts (offset s, count):", got)
    # keepalived's own schedule: what the keywords mean (and what we must match).
    assert [n for _, n in got["ka"][:4]] == [3, 3, 2, 2], (got, logs)
    _same_bursts(got, logs)


def test_garp_on_lower_priority_advert_matches_keepalived(lab: Any, tmp_path: Path) -> None:
    assert shutil.which("tshark"), "tshark is missing: `make setup` installs it"
    times, t_lower, logs = _garps_of_both(lab(3), tmp_path, LOWER_GARP, 0.5, lower_prio=True)
    # Offsets from when the lower-priority adverts were sent.
    got: dict[str, list[tuple[float, int]]] = {}
    for kind, t in times.items():
        after = [x for x in t if x >= t_lower]
        got[kind] = (
            [(round(after[0] - t_lower + o, 3), n) for o, n in bursts(after)] if after else []
        )
    print("\nGARP bursts after a lower-priority advert (offset s, count):", got)
    assert [n for _, n in got["ka"]] == [4, 4], (got, logs)
    _same_bursts(got, logs)
