"""Trackers end to end: the real daemon in namespaces moves the VIP.

Each tracker kind of the seed scenarios (vrrp_script ``killall -0``-style
with weight -60, a ``sh -c`` pidfile script with weight 0 -> FAULT,
vrrp_track_process, track_interface, track_file) runs on ``h1`` (priority
150) beside ``h2`` (priority 100): the tracker's event hands the VIP to
``h2``, its recovery brings it back by preemption.  Both times are printed
(``pytest -s``) and bounded.  Then a hanging script and a plugin tracker
that raises must not disturb the adverts the backup sees.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pykeepalived.testing.daemons import PyNode, holders, wait_holder
from pykeepalived.testing.lab import Lab
from pykeepalived.testing.scenarios import (
    MOVE_BOUND,
    Pair,
    TrackerCase,
    capture_adverts,
    fake_distribution,
    gaps,
    render,
    tracker_cases,
    tracker_plugin,
    with_env,
)

pytestmark = pytest.mark.netns

CASES = tracker_cases()


@pytest.mark.parametrize("name", list(CASES))
def test_tracker_moves_vip_and_back(lab: type[Lab], tmp_path: Path, name: str) -> None:
    case: TrackerCase = CASES[name]
    net = lab(2)
    h1, h2 = net.hosts
    pair = Pair(net, tmp_path, case)
    try:
        pair.start()
        away = pair.move(case.fail, h2)
        if case.faults:
            pair.tracked.wait_log("Entering FAULT STATE", 5)
        else:
            pair.tracked.wait_log(f"Changing effective priority from 150 to {150 - 60}", 5)
        back = pair.move(case.recover, h1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pair.logs()}") from None
    print(f"\n{name}: event -> VIP on h2 {away:.2f}s, recovery -> VIP back on h1 {back:.2f}s")
    assert away < MOVE_BOUND, pair.logs()
    assert back < MOVE_BOUND, pair.logs()
    # keepalived's wording, once each way.
    assert pair.peer.count("Entering MASTER STATE") == 1, pair.logs()


HANG_PLUGIN = tracker_plugin(
    "e2e_raise",
    textwrap.indent(
        textwrap.dedent(
            """\
            async def run(self) -> None:
                E2ETracker.runs += 1
                if E2ETracker.runs % 2:
                    raise RuntimeError("e2e tracker raised")
                self.report(TrackStatus(up=True))
                await asyncio.sleep(0.3)
                raise ValueError("e2e tracker raised later")
            """
        ),
        "    ",
    ),
)


def test_hanging_script_and_raising_plugin_keep_advert_timing(
    lab: type[Lab], tmp_path: Path
) -> None:
    """A script that never returns (killed at its timeout, again and again)
    and a plugin tracker that keeps raising: the backup still sees an advert
    every second from the same master."""
    net = lab(2)
    h1, h2 = net.hosts
    plugin = fake_distribution(
        tmp_path / "plugin",
        "pka_e2e_raise",
        HANG_PLUGIN,
        "[pykeepalived]\ne2e_raise = pka_e2e_raise\n",
    )
    master = PyNode(h1, tmp_path, "master")
    backup = PyNode(h2, tmp_path, "backup")
    with_env(master, {"PYTHONPATH": str(plugin)})
    defs = (
        "vrrp_script hang {\n"
        '    script "/bin/sleep 1000"\n'
        "    interval 1\n    timeout 2\n    weight -10\n}\n"
        "vrrp_script busy {\n"
        "    script \"/bin/sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'\"\n"
        "    interval 1\n    weight 2\n}\n"
    )
    defs += "e2e_raise anything {\n}\n"
    track = (
        "    track_script {\n        hang\n        busy\n    }\n"
        "    track_e2e_raise {\n        anything weight -5\n    }\n"
    )
    master.start(render("master", priority=150, state="MASTER", defs=defs, track=track))
    try:
        # The backup starts once the master holds the VIP: started together,
        # a master slow to start (its plugin, its scripts, a loaded machine)
        # may reach its Master_Down_Interval after the backup reaches its own,
        # and the backup is MASTER for a moment, as the protocol says.
        wait_holder(net.hosts, "192.0.2.100", "h1", 15)
        backup.start(render("backup", priority=100))
        backup.wait_log("Entering BACKUP STATE", 10)
        # Let the hang script time out once and the plugin raise a few times.
        master.wait_log("VRRP_Script(hang) timed_out", 5)
        master.wait_log("e2e tracker raised", 5)
        adverts = capture_adverts(h2, h1.ip4, 5.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{master.tail()}\n{backup.tail()}") from None
    g = gaps(adverts)
    print(
        f"\nadverts from the master in 5 s: {len(adverts)}, gaps "
        f"min {min(g, default=0):.3f}s max {max(g, default=0):.3f}s, "
        f"priorities {sorted({a['prio'] for a in adverts})}"
    )
    assert len(adverts) >= 4, master.tail()
    assert max(g) < 1.5, (g, master.tail())
    assert min(g) > 0.5, (g, master.tail())  # no burst of queued adverts either
    assert {a["vrid"] for a in adverts} == {51}
    assert holders(net.hosts, "192.0.2.100") == ["h1"]  # only the master holds the VIP
    assert master.count("Entering MASTER STATE", since_mark=False) == 1, master.tail()
    assert backup.count("Entering MASTER STATE", since_mark=False) == 0, backup.tail()
    # The plugin really was loaded and really raised; the script really hung.
    assert master.count("e2e tracker raised") >= 2, master.tail()
