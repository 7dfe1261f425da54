"""Weight aggregation (keepalived's rules) and the TrackerSet lifecycle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from keepalived_oracle import keepalived_test

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import TrackRef
from pykeepalived.core.plugin.base import Tracker, TrackStatus
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.core.tracking import TrackerSet, TrackingState, TrackVerdict


class Static(Tracker):
    """A tracker whose status the test sets."""

    family = "static"

    def __init__(
        self,
        up: bool = True,
        value: int = 0,
        weight: int = 0,
        reverse: bool = False,
        value_based: bool = False,
        pending: bool = False,
    ) -> None:
        conf = type("Conf", (), {"weight": weight, "reverse": reverse})()
        super().__init__("t", conf, lambda t: None)
        self.status = TrackStatus(up=up, value=value)
        self.value_based = value_based  # type: ignore[misc]
        self.pending = pending

    async def run(self) -> None:
        await asyncio.Event().wait()


def ref(kind: str = "script", weight: int | None = None, reverse: bool = False) -> TrackRef:
    return TrackRef(kind, "t", weight=weight, reverse=reverse)


# (base priority, [(ref, tracker)], expected priority, expected fault)
CASES: list[tuple[str, int, list[tuple[TrackRef, Tracker]], int, bool]] = [
    ("no trackers", 100, [], 100, False),
    ("weight 0 up", 100, [(ref(), Static(up=True))], 100, False),
    ("weight 0 down faults", 100, [(ref(), Static(up=False))], 100, True),
    ("weight 0 reverse up faults", 100, [(ref(reverse=True), Static(up=True))], 100, True),
    ("weight 0 reverse down ok", 100, [(ref(reverse=True), Static(up=False))], 100, False),
    ("+w up adds", 100, [(ref(weight=20), Static(up=True))], 120, False),
    ("+w down nothing", 100, [(ref(weight=20), Static(up=False))], 100, False),
    ("-w down subtracts", 100, [(ref(weight=-20), Static(up=False))], 80, False),
    ("-w up nothing", 100, [(ref(weight=-20), Static(up=True))], 100, False),
    ("+w reverse up subtracts", 100, [(ref(weight=20, reverse=True), Static(up=True))], 80, False),
    ("-w reverse down adds", 100, [(ref(weight=-20, reverse=True), Static(up=False))], 120, False),
    ("tracker's own weight", 100, [(ref(), Static(up=False, weight=-30))], 70, False),
    ("ref weight overrides", 100, [(ref(weight=5), Static(up=True, weight=-30))], 105, False),
    ("tracker's own reverse", 100, [(ref(), Static(up=True, weight=10, reverse=True))], 90, False),
    ("clamped to 254", 250, [(ref(weight=50), Static(up=True))], 254, False),
    ("clamped to 1", 10, [(ref(weight=-50), Static(up=False))], 1, False),
    (
        "sum of several",
        100,
        [
            (ref(weight=10), Static(up=True)),
            (ref(weight=-25), Static(up=False)),
            (ref(weight=7), Static(up=False)),
        ],
        85,
        False,
    ),
    ("owner stays 255", 255, [(ref(weight=-50), Static(up=False))], 255, False),
    ("owner can fault", 255, [(ref(), Static(up=False))], 255, True),
    (
        "file value * weight",
        100,
        [(ref("file", weight=2), Static(value=15, value_based=True))],
        130,
        False,
    ),
    (
        "file negative",
        100,
        [(ref("file", weight=1), Static(value=-40, value_based=True))],
        60,
        False,
    ),
    (
        "file reverse",
        100,
        [(ref("file", weight=2, reverse=True), Static(value=15, value_based=True))],
        70,
        False,
    ),
    (
        "file capped +253",
        100,
        [(ref("file", weight=10), Static(value=100, value_based=True))],
        254,
        False,
    ),
    (
        "file <= -254 faults",
        100,
        [(ref("file", weight=1), Static(value=-254, value_based=True))],
        100,
        True,
    ),
    (
        "file weight 0 non-zero faults",
        100,
        [(ref("file", weight=0), Static(value=3, value_based=True))],
        100,
        True,
    ),
    (
        "file weight 0 zero ok",
        100,
        [(ref("file", weight=0), Static(value=0, value_based=True))],
        100,
        False,
    ),
    (
        "file weight 0 reverse zero faults",
        100,
        [(ref("file", weight=0, reverse=True), Static(value=0, value_based=True))],
        100,
        True,
    ),
    (
        "owner file default weight 1 -> 0",
        255,
        [(ref("file"), Static(value=2, weight=1, value_based=True))],
        255,
        True,
    ),
    (
        "pending weighted adds nothing",
        100,
        [(ref(weight=-20), Static(up=False, pending=True))],
        100,
        False,
    ),
    ("pending unweighted no fault", 100, [(ref(), Static(up=False, pending=True))], 100, False),
]


@pytest.mark.parametrize(
    ("base", "pairs", "prio", "fault"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_aggregation(
    base: int, pairs: list[tuple[TrackRef, Tracker]], prio: int, fault: bool
) -> None:
    verdict = TrackingState(base, pairs).evaluate()
    assert (verdict.priority, verdict.fault) == (prio, fault), verdict.reasons


def test_pending_flag_and_reasons() -> None:
    v = TrackingState(100, [(ref(), Static(up=False, pending=True))]).evaluate()
    assert v.pending and not v.fault
    v = TrackingState(100, [(ref(), Static(up=False))]).evaluate()
    assert v.fault and v.reasons == ["script t down"]


CONF = """
vrrp_script chk_a {
  script /bin/true
  weight -10
}
vrrp_script chk_b {
  script /bin/true
}
vrrp_instance VI_1 {
  interface lo
  virtual_router_id 1
  priority 100
  virtual_ipaddress { 192.0.2.1/24 }
  track_script { chk_a }
}
vrrp_instance VI_2 {
  interface lo
  dont_track_primary
  virtual_router_id 2
  priority 90
  virtual_ipaddress { 192.0.2.2/24 }
  track_script { chk_a weight 20 }
}
vrrp_instance VI_3 {
  interface lo
  dont_track_primary
  virtual_router_id 3
  priority 90
  virtual_ipaddress { 192.0.2.3/24 }
}
vrrp_sync_group G1 {
  group {
    VI_2
    VI_3
  }
  track_script { chk_b }
  sync_group_tracking_weight
}
"""


class Flip(Tracker):
    """Up/down on command; crashes when told to."""

    family = "script"
    crash = False
    instances: list[Flip] = []

    def __init__(self, name: str, conf: Any, on_change: Any) -> None:
        super().__init__(name, conf, on_change)
        self.go = asyncio.Event()
        self.starts = 0
        Flip.instances.append(self)

    async def run(self) -> None:
        self.starts += 1
        if self.crash:
            self.crash = False
            raise RuntimeError("boom")
        await self.go.wait()


class Always(Tracker):
    family = "interface"

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_tracker_set_feeds_instances_and_survives_crashes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = build_registry()
    res = load_text(CONF, grammar=registry.grammar())
    assert res.ok, [str(d) for d in res.diagnostics.items]
    Flip.instances = []
    changes: list[str] = []
    ts = TrackerSet(res.config, {"script": Flip, "interface": Always}, on_change=changes.append)
    # one tracker object per named tracker, shared by the instances
    assert sorted(ts.trackers) == [("interface", "lo"), ("script", "chk_a"), ("script", "chk_b")]
    chk_a = ts.trackers[("script", "chk_a")]
    assert ts.verdict("VI_1") == TrackVerdict(100)
    chk_a.report(TrackStatus(up=False))
    assert changes == ["VI_1", "VI_2"]
    assert ts.verdict("VI_1").priority == 90  # its own weight -10
    assert ts.verdict("VI_2").priority == 90  # ref weight 20: only while up
    chk_a.report(TrackStatus(up=True))
    assert ts.verdict("VI_2").priority == 110
    # the sync group's track applies to both members
    chk_b = ts.trackers[("script", "chk_b")]
    changes.clear()
    chk_b.report(TrackStatus(up=False))
    assert changes == ["VI_2", "VI_3"]
    assert ts.verdict("VI_3").fault and not ts.verdict("VI_1").fault
    # a crashing tracker is logged with its name, marked down, and restarted
    chk_b.report(TrackStatus(up=True))
    chk_a.crash = True  # type: ignore[attr-defined]
    caplog.set_level(logging.ERROR, "pykeepalived.tracking")
    import pykeepalived.core.tracking as tracking

    old = tracking.RESTART_BACKOFF
    tracking.RESTART_BACKOFF = (0.05,)
    try:
        await ts.start()
        for _ in range(100):
            if chk_a.starts >= 2:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        assert chk_a.starts == 2  # type: ignore[attr-defined]
        assert "tracker script chk_a failed: RuntimeError: boom" in caplog.text
        assert not chk_a.status.up
        assert ts.verdict("VI_1").priority == 90
    finally:
        tracking.RESTART_BACKOFF = old
        await ts.stop()


def test_unknown_tracker_reference_is_reported_with_place(tmp_path: Path) -> None:
    registry = build_registry()
    text = CONF.replace("track_script { chk_a }", "track_script {\n chk_a\n chk_nope\n }")
    res = load_text(text, name="k.conf", grammar=registry.grammar())
    msgs = [str(d) for d in res.diagnostics.items]
    assert "k.conf:16: warning: (VI_1) track script chk_nope not found, ignoring..." in msgs
    # Line and text are keepalived's: it says the same of the same file.
    conf = tmp_path / "k.conf"
    conf.write_text(text)
    _, ka = keepalived_test(conf)
    assert (16, "(VI_1) track script chk_nope not found, ignoring...") in ka, ka
    assert [r.name for r in res.config.instance("VI_1").tracks] == ["chk_a"]  # type: ignore[union-attr]


def test_sync_group_members_lose_script_weights() -> None:
    """keepalived: weighted tracks of sync-group members never move the priority."""
    registry = build_registry()
    res = load_text(CONF.replace("  sync_group_tracking_weight\n", ""), grammar=registry.grammar())
    ts = TrackerSet(res.config, {"script": Flip, "interface": Always})
    ts.trackers[("script", "chk_a")].report(TrackStatus(up=True))
    assert ts.verdict("VI_2").priority == 90
    assert ts.verdict("VI_1").priority == 100


def test_sync_group_member_drops_weighted_scripts_and_files() -> None:
    """keepalived 2.2.7: a weighted track_script of a sync-group member is
    dropped (not turned into a weight-0 tracker that could FAULT the instance);
    so is a track_file with an explicit weight other than 1, while the default
    weight 1 becomes 0."""
    from pykeepalived.core.tracking import instance_refs
    from pykeepalived.testing import load_text

    text = (
        "vrrp_script chk_w {\n script /bin/true\n weight -20\n}\n"
        "vrrp_script chk_0 {\n script /bin/true\n}\n"
        "vrrp_track_file tf {\n file /tmp/pka-tf\n}\n"
        "vrrp_sync_group G {\n group {\n V1\n V2\n }\n}\n"
        "vrrp_instance V1 {\n interface eth0\n virtual_router_id 1\n dont_track_primary\n"
        " track_script {\n chk_w\n chk_0\n }\n track_file {\n tf weight 5\n }\n"
        " virtual_ipaddress {\n 192.0.2.1\n }\n}\n"
        "vrrp_instance V2 {\n interface eth0\n virtual_router_id 2\n dont_track_primary\n"
        " track_file {\n tf\n }\n virtual_ipaddress {\n 192.0.2.2\n }\n}\n"
    )
    cfg = load_text(text).config
    v1, v2 = cfg.vrrp_instances
    assert [(r.kind, r.name, r.weight) for r in instance_refs(cfg, v1)] == [
        ("script", "chk_0", None)
    ]
    assert [(r.kind, r.name, r.weight) for r in instance_refs(cfg, v2)] == [("file", "tf", 0)]
