"""Hostile VRRP traffic from a rogue host: every packet the protocol says to drop
is dropped, counted under the right reason, and changes nobody's state.

A short slice of bench/hostile (which sends 10^5 packets and measures advert
timing and CPU under a flood).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import dump_logs, holders
from pykeepalived.testing.hostile import HostileLab, delta, expected_counts

pytestmark = pytest.mark.netns

#: Our AH anti-replay lets a peer that restarted begin again at sequence 1:
#: numbers below 16 are always taken (keepalived 2.2.7 takes none it has seen
#: and resets on becoming MASTER instead).  A replay is therefore only
#: refused for a captured advert numbered 16 or more: at advert_int 1 (AH is
#: VRRPv2, whole seconds) the master gets there 16 s after it took over.
AH_REPLAYABLE_AFTER = 17.0


def _check(run: HostileLab, plan: list[Any], sent: dict[str, int], before: Any) -> None:
    after = run.settled_counters()
    for node in ("master", "backup"):
        got = delta(after[node], before[node])
        want = expected_counts(plan, sent, node)
        assert got == want, f"{node}: counted {got}, sent {want}\n" + dump_logs(
            [run.master, run.backup]
        )


def test_hostile_packets_are_dropped_counted_and_change_nothing(lab: Any, tmp_path: Path) -> None:
    net = lab(3)
    run = HostileLab(net, tmp_path)
    try:
        run.start()
        master_since = time.monotonic()
        plan = run.cases()
        # a short flood of everything at full speed: nobody moves
        flood = run.send(plan, seconds=2.0)
        assert sum(flood.sent.values()) > 1000
        # then each case 20 times: counted under its reason, on both nodes
        before = run.settled_counters()
        sent = run.send(plan, count=20)
        assert not sent.errors, sent.errors
        assert all(n == 20 for n in sent.sent.values()), sent.sent
        _check(run, plan, sent.sent, before)
        # a genuine AH advert of the master, replayed once it is old
        time.sleep(max(0.0, AH_REPLAYABLE_AFTER - (time.monotonic() - master_since)))
        replay = run.capture_ah()
        time.sleep(1.5)
        replays = [c for c in run.cases(ah_replay=replay) if c.name == "ah_replay"]
        before = run.settled_counters()
        sent = run.send(replays, count=20)
        _check(run, replays, sent.sent, before)
        assert run.alive()
        assert run.transitions() == 0, dump_logs([run.master, run.backup])
        assert holders(net.hosts, run.target.vip4) == ["h1"]
    finally:
        run.stop()
