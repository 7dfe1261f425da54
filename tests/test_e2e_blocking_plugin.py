"""A plugin that blocks its event loop does not stop adverts.

The VRRP engine runs on a loop of its own (core/shell/loopthread.py); a tracker
plugin calling ``time.sleep`` (or any blocking I/O) in ``run()`` stalls the
plugins' loop only.  Before that split, such a plugin left 1.9 s gaps
between adverts at advert_int 1.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from pykeepalived.testing.daemons import PyNode, wait_holder
from pykeepalived.testing.lab import Lab
from pykeepalived.testing.scenarios import (
    capture_adverts,
    fake_distribution,
    gaps,
    render,
    tracker_plugin,
    with_env,
)

BLOCKING_PLUGIN = tracker_plugin(
    "e2e_block",
    textwrap.indent(
        textwrap.dedent(
            """\
            async def run(self) -> None:
                self.report(TrackStatus(up=True))
                while True:
                    print("e2e tracker blocking", flush=True)
                    time.sleep(1.8)  # the bug under test: blocks its loop
                    await asyncio.sleep(0.05)
            """
        ),
        "    ",
    ),
)


def test_blocking_plugin_does_not_delay_adverts(lab: type[Lab], tmp_path: Path) -> None:
    net = lab(2)
    h1, h2 = net.hosts
    plugin = fake_distribution(
        tmp_path / "plugin",
        "pka_e2e_block",
        BLOCKING_PLUGIN,
        "[pykeepalived]\ne2e_block = pka_e2e_block\n",
    )
    master = PyNode(h1, tmp_path, "master")
    backup = PyNode(h2, tmp_path, "backup")
    with_env(master, {"PYTHONPATH": str(plugin)})
    defs = "e2e_block anything {\n}\n"
    track = "    track_e2e_block {\n        anything weight 0\n    }\n"
    master.start(render("master", priority=150, state="MASTER", defs=defs, track=track))
    try:
        # the backup after the master holds the VIP (see test_e2e_trackers: started
        # together, a slow-starting master may let the backup be MASTER a moment)
        wait_holder(net.hosts, "192.0.2.100", "h1", 15)
        backup.start(render("backup", priority=100))
        backup.wait_log("Entering BACKUP STATE", 10)
        adverts = capture_adverts(h2, h1.ip4, 5.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{master.tail()}\n{backup.tail()}") from None
    g = gaps(adverts)
    print(
        f"\nadverts in 5 s: {len(adverts)}, gaps min {min(g, default=0):.3f}s max {max(g, default=0):.3f}s"
    )
    assert len(adverts) >= 4, master.tail()
    assert max(g) < 1.3, (g, master.tail())
    assert backup.count("Entering MASTER STATE", since_mark=False) == 0, backup.tail()
