"""A short soak (testing/soak.py, bench/soak for the long one): three nodes,
every kind of fault once (VRRP loss, a link flap, kill -9 and restart, 100
SIGHUPs, a flapping tracker, a hanging notify script) with a plugin that
raises from every hook, and every invariant asserted: holder times within
their bounds, notify calls, FIFO lines and log lines of each transition in
the same order, no growth of open fds or asyncio tasks, the daemons alive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import KaNode, Node, PyNode, global_defs, instance
from pykeepalived.testing.lab import Host
from pykeepalived.testing.soak import FAULTS, Params, run_soak

pytestmark = pytest.mark.netns

#: One round of faults with short durations.  The margin over
#: Master_Down_Interval is for a loaded 2-core machine (the bench uses 1 s).
PARAMS = Params(
    rounds=1,
    seed=12,
    advert_int=0.25,
    margin=2.0,
    baseline_at=10.0,
    quiet=2.0,
    script_timeout=1.0,
    reload_gap=0.02,
    loss_seconds=(2.0, 3.0),
    loss_percent=(20, 40),
    flap_seconds=(1.0, 1.5),
    dead_seconds=(0.3, 0.8),
    tracker_flips=(2, 4),
    gap_seconds=(0.2, 0.5),
    # RSS of a 15 s window: first use of a code path (a reload, a kill's
    # aftermath) may still allocate; fds and tasks must come back exactly
    rss_growth_kib=6 * 1024,
)


def test_soak_short(lab: Any, tmp_path: Path) -> None:
    net = lab(3)
    report = run_soak(net, tmp_path, PARAMS)
    table = report.table()
    print(table)
    assert report.violations == [], table
    assert all(report.faults.get(k) == 1 for k in FAULTS), table
    assert report.reloads >= 100, table
    # the faults moved VIPs, and every move was notified three ways
    assert report.transitions >= 10, table
    assert report.notify_checked >= report.transitions // 2, table
    assert report.plugin_raised > 0 and report.hangs_killed >= 1, table
    # the status reports the asyncio tasks of both loops
    assert report.baseline is not None and report.final is not None, table
    assert report.baseline.tasks is not None and report.baseline.tasks >= 2, table


def _stale_vip_start(cls: type[Node], host: Host, tmp_path: Path) -> Node:
    """A VIP on eth0 as a killed MASTER leaves it, then a daemon that starts
    as a backup (advert_int 1: it cannot become MASTER for 3.6 s)."""
    host.ip("addr", "add", "192.0.2.100/24", "dev", "eth0")
    node = cls(host, tmp_path)
    node.start(global_defs(host.name) + instance(priority=100, advert_int=1))
    node.wait_log("Entering BACKUP STATE (init)", timeout=30)
    return node


def _gone_before_master(node: Node, host: Host) -> bool:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not node.count("Entering MASTER STATE"):
        if "192.0.2.100" not in host.addresses():
            return True
        time.sleep(0.05)
    return False


def test_keepalived_drops_stale_vip_at_start(lab: Any, tmp_path: Path) -> None:
    """The oracle: keepalived 2.2.7 removes a configured VIP it finds on the
    interface when it starts in BACKUP (logged as "(VI_1) removing VIPs." with -D)."""
    host = lab(1)[0]
    node = _stale_vip_start(KaNode, host, tmp_path)
    assert _gone_before_master(node, host), node.tail()


def test_restarted_backup_drops_stale_vip(lab: Any, tmp_path: Path) -> None:
    """Found by the soak: a daemon restarted after kill -9 as a backup kept
    the VIPs its killed MASTER run left, and two hosts answered for them."""
    host = lab(1)[0]
    node = _stale_vip_start(PyNode, host, tmp_path)
    assert _gone_before_master(node, host), node.tail()
