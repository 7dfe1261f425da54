"""Gratuitous ARPs on the wire (core/vrrp/instance.py: garp_master_delay, _repeat,
_refresh, _refresh_repeat), counted by tshark for pykeepalived and keepalived 2.2.7
running the same configuration side by side in one lab.

keepalived is the oracle: the bursts (how many GARPs, and when, after the first one)
pykeepalived sends must be the ones keepalived sends for the same keywords.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import KaNode, Node, PyNode, wait_holder
from pykeepalived.testing.lab import Lab
from pykeepalived.testing.scenarios import render

pytestmark = [pytest.mark.netns, pytest.mark.interop]

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


def test_garp_delay_repeat_refresh_match_keepalived(lab: Any, tmp_path: Path) -> None:
    assert shutil.which("tshark"), "tshark is missing: `make setup` installs it"
    net: Lab = lab(3)
    h_py, h_ka, h_cap = net.hosts
    vips = {"py": "192.0.2.100", "ka": "192.0.2.101"}
    # The capture runs first; both daemons become MASTER alone on their own VRID.
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
            render(kind, priority=150, state="MASTER", vrid=vrid, vip=vips[kind], extra=GARP)
        )
    try:
        wait_holder(net.hosts, vips["py"], "h1", 15)
        wait_holder(net.hosts, vips["ka"], "h2", 15)
        time.sleep(WINDOW + 0.5)
    finally:
        cap.terminate()
        out, _ = cap.communicate(timeout=10)
    times: dict[str, list[float]] = {"py": [], "ka": []}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        stamp, spa, tpa = fields
        for kind, vip in vips.items():
            if spa == vip and tpa == vip:  # gratuitous: sender address == target address
                times[kind].append(float(stamp))
    logs = "\n".join(f"--- {k}\n{n.tail(40)}" for k, n in nodes.items())
    got = {k: [b for b in bursts(t) if b[0] <= WINDOW] for k, t in times.items()}
    print("\nGARP bursts (offset s, count):", got)
    ka, py = got["ka"], got["py"]
    # keepalived's own schedule: what the keywords mean (and what we must match).
    assert [n for _, n in ka[:4]] == [3, 3, 2, 2], (ka, logs)
    assert [n for _, n in py] == [n for _, n in ka], (got, logs)
    # The same times after the first GARP, within a generous margin.
    for (t_py, _), (t_ka, _) in zip(py, ka, strict=True):
        assert abs(t_py - t_ka) < 0.5, (got, logs)
