"""vrrp_track_process: grammar, matching rules, and real processes appearing and dying."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.plugins.checks.track_process import ProcessTracker, TrackProcess, matches

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the process events connector needs root")


def parse(text: str) -> dict[str, TrackProcess]:
    res = load_text(text, name="k.conf", grammar=build_registry().grammar())
    assert not res.diagnostics.errors, [str(d) for d in res.diagnostics.items]
    return res.config.ext["vrrp_track_process"]  # type: ignore[no-any-return]


def test_grammar() -> None:
    procs = parse(
        """
vrrp_track_process haproxy {
    process haproxy
    weight -10 reverse
    quorum 2
    quorum_max 3
    delay 0.5
    fork_delay 0.25
}
vrrp_track_process nginx {
    process /usr/sbin/nginx -g "daemon off;"
    param_match partial
}
vrrp_track_process none_allowed {
    process rogue
    quorum_max 0
}
"""
    )
    h = procs["haproxy"]
    assert (h.process, h.params, h.param_match, h.full_command) == ("haproxy", [], None, False)
    assert (h.weight, h.reverse, h.quorum, h.quorum_max) == (-10, True, 2, 3)
    assert (h.fork_delay, h.terminate_delay) == (0.25, 0.5)
    n = procs["nginx"]
    assert (n.process, n.params, n.param_match, n.full_command) == (
        "/usr/sbin/nginx",
        ["-g", "daemon off;"],
        "partial",
        True,
    )
    assert (n.weight, n.quorum, n.quorum_max) == (0, 1, None)  # keepalived's defaults
    r = procs["none_allowed"]
    assert (r.quorum, r.quorum_max) == (0, 0)


def test_quorum_max_below_quorum_is_an_error() -> None:
    res = load_text(
        "vrrp_track_process p {\n process x\n quorum 3\n quorum_max 2\n}\n",
        name="k.conf",
        grammar=build_registry().grammar(),
    )
    assert any(
        "k.conf:1: error" in str(d) and "quorum_max is less than quorum" in str(d)
        for d in res.diagnostics.items
    )


def argv(*words: str) -> list[bytes]:
    return [w.encode() for w in words]


@pytest.mark.parametrize(
    ("conf", "comm", "cmd", "expected"),
    [
        (TrackProcess("p", process="sshd"), "sshd", None, True),
        (TrackProcess("p", process="ssh"), "sshd", None, False),  # exact, unlike pgrep
        (TrackProcess("p", process="/bin/x", full_command=True), "x", argv("/bin/x", "a"), True),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a"], param_match="exact", full_command=True
            ),
            "x",
            argv("/bin/x", "a"),
            True,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a"], param_match="exact", full_command=True
            ),
            "x",
            argv("/bin/x", "a", "b"),
            False,
        ),
        (
            TrackProcess("p", process="/bin/x", params=[], param_match="exact", full_command=True),
            "x",
            argv("/bin/x"),
            True,
        ),
        (
            TrackProcess("p", process="/bin/x", params=[], param_match="exact", full_command=True),
            "x",
            argv("/bin/x", "a"),
            False,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a"], param_match="partial", full_command=True
            ),
            "x",
            argv("/bin/x", "a", "b"),
            True,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a"], param_match="partial", full_command=True
            ),
            "x",
            argv("/bin/x", "ab"),
            False,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a"], param_match="initial", full_command=True
            ),
            "x",
            argv("/bin/x", "abc"),
            True,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a", "b"], param_match="initial", full_command=True
            ),
            "x",
            argv("/bin/x", "a", "bcd", "e"),
            True,
        ),
        (
            TrackProcess(
                "p", process="/bin/x", params=["a", "b"], param_match="initial", full_command=True
            ),
            "x",
            argv("/bin/x", "ab"),
            False,
        ),
    ],
)
def test_matching(conf: TrackProcess, comm: str, cmd: list[bytes] | None, expected: bool) -> None:
    assert matches(conf, comm, cmd) is expected


# -- real processes ---------------------------------------------------------------------


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `sleep 1000` under a distinctive comm (a copy of sleep named pkaNNNN)."""
    name = "pka" + uuid.uuid4().hex[:8]
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([str(exe), "1000"])
        procs.append(p)
        return p

    start.comm = name  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.kill()
        p.wait()


@contextlib.asynccontextmanager
async def running(t: ProcessTracker, mode: str = "connector") -> AsyncIterator[None]:
    task = asyncio.create_task(t.run() if mode == "connector" else t._run_polling())
    try:
        await until(lambda: not t.pending)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)
    return time.monotonic() - start


@needs_root
@pytest.mark.parametrize("mode", ["connector", "poll"])
async def test_process_start_and_death_are_seen_quickly(
    sleeper: Callable[[], subprocess.Popen[bytes]], mode: str
) -> None:
    comm = sleeper.comm  # type: ignore[attr-defined]
    t = ProcessTracker("p", TrackProcess("p", process=comm), lambda tr: None)
    async with running(t, mode):
        assert t.mode == mode
        assert not t.status.up
        p = sleeper()
        appeared = await until(lambda: t.status.up)
        p.kill()
        died = await until(lambda: not t.status.up)
        p.wait()
    print(f"[{mode}] start seen after {appeared * 1000:.1f} ms, death after {died * 1000:.1f} ms")
    assert died < 1.0 and appeared < 1.0  # generous bounds; connector/pidfd take a few ms


@needs_root
async def test_quorum_and_initial_scan(sleeper: Callable[[], subprocess.Popen[bytes]]) -> None:
    comm = sleeper.comm  # type: ignore[attr-defined]
    first = sleeper()
    await asyncio.sleep(0.05)  # let it exec
    conf = TrackProcess("p", process=comm, quorum=2, quorum_max=2)
    t = ProcessTracker("p", conf, lambda tr: None)
    async with running(t):
        assert t.pids == {first.pid} and not t.status.up  # found by the initial scan
        second = sleeper()
        await until(lambda: t.status.up)
        third = sleeper()
        await until(lambda: not t.status.up)  # above quorum_max
        third.kill()
        await until(lambda: t.status.up)
        second.kill()
        await until(lambda: not t.status.up)


@needs_root
async def test_terminate_delay_rides_out_a_restart(
    sleeper: Callable[[], subprocess.Popen[bytes]],
) -> None:
    comm = sleeper.comm  # type: ignore[attr-defined]
    p = sleeper()
    changes: list[bool] = []
    t = ProcessTracker(
        "p",
        TrackProcess("p", process=comm, terminate_delay=0.5),
        lambda tr: changes.append(tr.status.up),
    )
    async with running(t):
        await until(lambda: t.status.up)
        changes.clear()
        p.kill()
        p.wait()
        sleeper()  # restarted within the delay: no down
        await until(lambda: len(t.pids) == 1)
        await asyncio.sleep(0.6)
        assert changes == [] and t.status.up
        for q in list(t.pids):
            os.kill(q, 9)
        took = await until(lambda: not t.status.up)
        assert 0.4 < took < 1.5
