"""vrrp_script: grammar, and real scripts that succeed, fail, hang and shout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Config
from pykeepalived.core.plugin.base import Tracker
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.plugins.checks.track_script import ScriptTracker, VrrpScript


def parse(text: str) -> Config:
    res = load_text(text, name="k.conf", grammar=build_registry().grammar())
    assert not res.diagnostics.failing, [str(d) for d in res.diagnostics.items]
    return res.config


def test_grammar_and_defaults() -> None:
    cfg = parse(
        """
vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 2
    timeout 3
    weight -20 reverse
    rise 2
    fall 3
    user nobody nogroup
    init_fail
}
vrrp_script chk_plain {
    script /bin/true
}
vrrp_instance VI_1 {
    interface lo
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1/24
    }
    track_script {
        chk_haproxy
        chk_plain weight 10 reverse
    }
}
"""
    )
    scripts = cfg.ext["vrrp_script"]
    a: VrrpScript = scripts["chk_haproxy"]
    assert a.script is not None and a.script.argv == ["/usr/bin/killall", "-0", "haproxy"]
    assert (a.script.user, a.script.group) == ("nobody", "nogroup")
    assert (a.interval, a.timeout, a.effective_timeout) == (2.0, 3.0, 3.0)
    assert (a.weight, a.reverse, a.rise, a.fall, a.init_fail) == (-20, True, 2, 3, True)
    b: VrrpScript = scripts["chk_plain"]
    # keepalived's defaults: interval 1, timeout = interval, weight 0, rise/fall 1
    assert (b.interval, b.effective_timeout, b.weight, b.reverse, b.rise, b.fall) == (
        1.0,
        1.0,
        0,
        False,
        1,
        1,
    )
    refs = cfg.vrrp_instances[0].tracks
    assert [(r.kind, r.name, r.weight, r.reverse) for r in refs] == [
        ("script", "chk_haproxy", None, False),
        ("script", "chk_plain", 10, True),
    ]


def test_bad_values_have_places() -> None:
    res = load_text(
        "vrrp_script x {\n  script /bin/true\n  weight 300\n  rise 0\n}\nvrrp_script y {\n  interval 1\n}\n",
        name="k.conf",
        grammar=build_registry().grammar(),
    )
    msgs = [str(d) for d in res.diagnostics.items]
    assert any(
        m.startswith("k.conf:3: error: weight: weight 300 must be in [-253, 253]") for m in msgs
    ), msgs
    assert any(m.startswith("k.conf:4: error: rise:") for m in msgs), msgs
    assert any("k.conf:6: error" in m and "No script set for vrrp_script y" in m for m in msgs), (
        msgs
    )


@contextlib.asynccontextmanager
async def running(tracker: Tracker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(tracker.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def make(tmp_path: Path, body: str, **kw: object) -> ScriptTracker:
    path = tmp_path / "chk.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    text = (
        f'vrrp_script chk {{\n script "{path}"\n'
        + "".join(f" {k} {v}\n" for k, v in kw.items())
        + "}\n"
    )
    conf = parse(text).ext["vrrp_script"]["chk"]
    return ScriptTracker("chk", conf, lambda t: None)


async def test_success_failure_and_rise_fall(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pykeepalived")
    state = tmp_path / "rc"
    state.write_text("0")
    # timeout 5: the default (the interval, 50 ms) times scripts out on a busy machine
    t = make(tmp_path, f'exit $(cat "{state}")', interval=0.05, timeout=5, rise=2, fall=3)
    assert t.pending
    async with running(t):
        await until(lambda: not t.pending)
        assert t.status.up  # one success is enough at start
        assert "VRRP_Script(chk) succeeded" in caplog.text
        state.write_text("1")
        runs = t.runs
        await until(lambda: not t.status.up)
        assert t.runs - runs >= 3  # fall 3
        assert "VRRP_Script(chk) failed (exited with status 1)" in caplog.text
        state.write_text("0")
        runs = t.runs
        await until(lambda: t.status.up)
        assert t.runs - runs >= 2  # rise 2
    assert "Script `chk` now returning 1" in caplog.text


async def test_init_fail_starts_down(tmp_path: Path) -> None:
    t = make(tmp_path, "exit 0", interval=0.05, timeout=5, init_fail="")
    assert not t.pending and not t.status.up
    async with running(t):
        await until(lambda: t.status.up)


async def test_timeout_kills_the_process_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pykeepalived")
    pidfile = tmp_path / "child.pid"
    # the script starts a grandchild that would outlive a plain kill of the script
    t = make(tmp_path, f'sleep 1000 & echo $! > "{pidfile}"; wait', interval=5, timeout=0.3)
    async with running(t):
        took = await until(lambda: not t.pending, timeout=5)
        print(f"hung script declared timed_out after {took:.3f}s (timeout 0.3s)")
        assert not t.status.up
        assert 0.25 < took < 2.0
        assert "VRRP_Script(chk) timed_out" in caplog.text
        child = int(pidfile.read_text())
        await until(lambda: not _alive(child), timeout=3)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


async def test_megabytes_of_output_do_not_hurt(tmp_path: Path) -> None:
    t = make(
        tmp_path, "head -c 20000000 /dev/zero; head -c 5000000 /dev/zero >&2; exit 0", interval=5
    )
    async with running(t):
        took = await until(lambda: not t.pending, timeout=10)
        print(f"25 MB of output: result after {took:.3f}s")
        assert t.status.up


async def test_insecure_script_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run scripts as root")
    caplog.set_level(logging.INFO, "pykeepalived")
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    t = make(d, "exit 0", interval=0.05, timeout=5)
    cfg = parse("global_defs {\n enable_script_security\n script_user root\n}\n")
    t.configure(cfg)
    async with running(t):
        await until(lambda: not t.pending)
        assert not t.status.up
        assert t.runs == 0
    assert "VRRP_Script(chk) disabled:" in caplog.text
    assert "is writable by group or others" in caplog.text
