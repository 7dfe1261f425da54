"""A short soak (testing/soak.py, bench/soak for the long one): three nodes,
every kind of fault once (VRRP loss, a link flap, kill -9 and restart, 100
SIGHUPs, a flapping tracker, a hanging notify script) with a plugin that
raises from every hook, and every invariant asserted: holder times within
their bounds, notify calls, FIFO lines and log lines of each transition in
the same order, no growth of open fds or asyncio tasks, the daemons alive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
