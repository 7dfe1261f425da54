"""track_file: grammar, strtol-like reading, inotify reaction to writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pykeepalived.api import parse_strtol
from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Config, TrackRef
from pykeepalived.core.plugin.base import Tracker
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.core.tracking import TrackingState
from pykeepalived.plugins.checks.track_file import FileTracker, TrackFile


def parse(text: str) -> Config:
    res = load_text(text, name="k.conf", grammar=build_registry().grammar())
    assert not res.diagnostics.errors, [str(d) for d in res.diagnostics.items]
    return res.config


def test_grammar_both_spellings() -> None:
    res = load_text(
        """
track_file tf1 {
    file "/run/pka/tf1"
    weight -3 reverse
    init_file 7 overwrite
}
vrrp_track_file tf2 {
    file /run/pka/tf2
}
vrrp_instance VI_1 {
    interface lo
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1/24
    }
    track_file {
        tf1
        tf2 weight 5
    }
}
""",
        name="k.conf",
        grammar=build_registry().grammar(),
    )
    files = res.config.ext["track_file"]
    a: TrackFile = files["tf1"]
    assert (a.file, a.weight, a.reverse, a.init_value, a.init_overwrite) == (
        "/run/pka/tf1",
        -3,
        True,
        7,
        True,
    )
    b: TrackFile = files["tf2"]
    assert (b.file, b.weight, b.reverse, b.init_value) == ("/run/pka/tf2", 1, False, None)
    assert any(
        "vrrp_track_file" in str(d) and "deprecated" in str(d) for d in res.diagnostics.items
    )
    refs = res.config.vrrp_instances[0].tracks
    assert [(r.kind, r.name, r.weight) for r in refs] == [("file", "tf1", None), ("file", "tf2", 5)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5\n", 5),
        ("  -12 xyz", -12),
        ("0x10", 16),
        ("010", 8),
        ("abc", 0),
        ("", 0),
        ("+3", 3),
        ("99999999999", None),
    ],
)
def test_parse_strtol(text: str, value: int | None) -> None:
    assert parse_strtol(text) == value


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_reacts_to_writes_renames_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "weight"
    conf = parse(f'track_file tf {{\n file "{path}"\n weight 2\n init_file 4\n}}\n').ext[
        "track_file"
    ]["tf"]
    changes: list[int] = []
    t = FileTracker("tf", conf, lambda tr: changes.append(tr.status.value))
    task = asyncio.create_task(t.run())
    try:
        await until(lambda: not t.pending)
        assert path.read_text().strip() == "4"  # init_file created it
        assert t.status.value == 4
        path.write_text("10\n")
        took = await until(lambda: t.status.value == 10)
        print(f"write seen after {took * 1000:.1f} ms")
        assert took < 1.0
        assert TrackingState(100, [(_ref(), t)]).evaluate().priority == 120
        tmp = tmp_path / "weight.new"
        tmp.write_text("-7")
        os.rename(tmp, path)
        await until(lambda: t.status.value == -7)
        path.unlink()
        await until(lambda: t.status.value == 0)  # deleted reads as 0, as keepalived
        (tmp_path / "other").write_text("99")  # another file in the directory: ignored
        await asyncio.sleep(0.05)
        assert t.status.value == 0
        assert changes == [4, 10, -7, 0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_init_file_does_not_overwrite_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text("3")
    conf = TrackFile("tf", file=str(path), init_value=9)
    FileTracker("tf", conf, lambda tr: None).init_file()
    assert path.read_text() == "3"
    conf.init_overwrite = True
    FileTracker("tf", conf, lambda tr: None).init_file()
    assert path.read_text().strip() == "9"


def _ref() -> TrackRef:
    return TrackRef("file", "tf")


async def test_weight_zero_faults_on_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "f"
    conf = TrackFile("tf", file=str(path), weight=0)
    t: Tracker = FileTracker("tf", conf, lambda tr: None)
    task = asyncio.create_task(t.run())
    try:
        await until(lambda: not t.pending)  # type: ignore[attr-defined]
        assert not TrackingState(100, [(_ref(), t)]).evaluate().fault
        path.write_text("1")
        await until(lambda: t.status.value == 1)
        assert TrackingState(100, [(_ref(), t)]).evaluate().fault
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
