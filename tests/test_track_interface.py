"""track_interface: rtnetlink link events inside a network namespace.

The tracker runs in a small Python subprocess started with ``ip netns exec``
(as the daemon runs in tests); it prints one JSON line per status change,
and the test flips the links from outside with ``ip -n NS link set``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.plugins.checks.track_interface import (
    IFF_RUNNING,
    IFF_UP,
    RTM_NEWLINK,
    link_up,
    parse_links,
)

RUNNER = r"""
import asyncio, json, sys, time
from pykeepalived.core.tracking import InterfaceTrackConf
from pykeepalived.plugins.checks.track_process import TrackProcess
from pykeepalived.plugins.checks.{module} import {cls}

async def main():
    args = json.loads(sys.argv[1])
    def changed(t):
        print(json.dumps({{"up": t.status.up, "t": time.monotonic(), "mode": getattr(t, "mode", "")}}), flush=True)
    t = {cls}(args["name"], {conf}, changed)
    await t.run()

asyncio.run(main())
"""


def test_grammar_up_down_delays() -> None:
    res = load_text(
        "interface_up_down_delays {\n  eth0 0.5 2\n  eth1 1\n}\n",
        name="k.conf",
        grammar=build_registry().grammar(),
    )
    assert not res.diagnostics.failing
    assert res.config.ext["interface_up_down_delays"] == {"eth0": (0.5, 2.0), "eth1": (1.0, 0.0)}


def test_parse_links_and_flags() -> None:
    import struct

    name = b"veth0\0"
    rta = struct.pack("=HH", 4 + len(name), 3) + name + b"\0\0"
    body = struct.pack("=BxHiII", 0, 1, 7, IFF_UP | IFF_RUNNING, 0) + rta
    msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, 0, 0, 0) + body
    assert list(parse_links(msg)) == [(RTM_NEWLINK, "veth0", IFF_UP | IFF_RUNNING)]
    assert link_up(IFF_UP | IFF_RUNNING) and not link_up(IFF_UP) and not link_up(IFF_RUNNING)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"pka-trk-{uuid.uuid4().hex[:6]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "tva", "type", "veth", "peer", "name", "tvb")
        _ip("-n", name, "link", "set", "tva", "up")
        _ip("-n", name, "link", "set", "tvb", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Runner:
    """A tracker in a subprocess inside the namespace; reads its JSON lines."""

    def __init__(self, ns: str, module: str, cls: str, conf: str, args: dict[str, Any]) -> None:
        code = RUNNER.format(module=module, cls=cls, conf=conf)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []

    def next(self, timeout: float = 3.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("no event from the tracker in time")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise AssertionError(f"tracker process ended: {err}")
        ev: dict[str, Any] = json.loads(line)
        self.events.append(ev)
        return ev

    def quiet(self, seconds: float) -> bool:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        return not ready

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.netns
def test_link_down_and_up_inside_a_namespace(netns: str) -> None:
    r = Runner(
        netns,
        "track_interface",
        "InterfaceTracker",
        'InterfaceTrackConf(args["name"])',
        {"name": "tva"},
    )
    try:
        assert r.next()["up"] is True  # initial dump
        t0 = time.monotonic()
        _ip("-n", netns, "link", "set", "tvb", "down")  # carrier lost on tva
        ev = r.next()
        print(f"peer down seen after {(ev['t'] - t0) * 1000:.1f} ms")
        assert ev["up"] is False and ev["t"] - t0 < 1.0
        _ip("-n", netns, "link", "set", "tvb", "up")
        assert r.next()["up"] is True
        _ip("-n", netns, "link", "set", "tva", "down")
        assert r.next()["up"] is False
        _ip("-n", netns, "link", "set", "tva", "up")
        assert r.next()["up"] is True
        _ip("-n", netns, "link", "del", "tva")  # deleted: down
        assert r.next()["up"] is False
    finally:
        r.close()


@pytest.mark.netns
def test_missing_interface_then_created(netns: str) -> None:
    r = Runner(
        netns,
        "track_interface",
        "InterfaceTracker",
        'InterfaceTrackConf(args["name"])',
        {"name": "tvc"},
    )
    try:
        assert r.next()["up"] is False
        _ip("-n", netns, "link", "add", "tvc", "type", "veth", "peer", "name", "tvd")
        _ip("-n", netns, "link", "set", "tvd", "up")
        _ip("-n", netns, "link", "set", "tvc", "up")
        assert r.next()["up"] is True
    finally:
        r.close()


@pytest.mark.netns
def test_down_delay_debounces_a_flap(netns: str) -> None:
    r = Runner(
        netns,
        "track_interface",
        "InterfaceTracker",
        'InterfaceTrackConf(args["name"], down_delay=0.5, up_delay=0.0)',
        {"name": "tva"},
    )
    try:
        assert r.next()["up"] is True
        _ip("-n", netns, "link", "set", "tvb", "down")
        _ip("-n", netns, "link", "set", "tvb", "up")
        assert r.quiet(0.8)  # the flap was shorter than the down delay
        t0 = time.monotonic()
        _ip("-n", netns, "link", "set", "tvb", "down")
        ev = r.next()
        assert ev["up"] is False and 0.4 < ev["t"] - t0 < 1.5
    finally:
        r.close()


@pytest.mark.netns
def test_process_tracker_inside_a_namespace_uses_the_connector(netns: str, tmp_path: Any) -> None:
    """The daemon runs inside a netns: process events still arrive (no polling)."""
    comm = "pka" + uuid.uuid4().hex[:8]
    exe = tmp_path / comm
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    r = Runner(
        netns,
        "track_process",
        "ProcessTracker",
        'TrackProcess(args["name"], process=args["name"])',
        {"name": comm},
    )
    p = None
    try:
        first = r.next()
        assert first["up"] is False and first["mode"] == "connector"
        p = subprocess.Popen([str(exe), "1000"])
        assert r.next()["up"] is True
        t0 = time.monotonic()
        p.kill()
        ev = r.next()
        print(f"death seen from inside the netns after {(ev['t'] - t0) * 1000:.1f} ms")
        assert ev["up"] is False and ev["t"] - t0 < 1.0
    finally:
        if p is not None:
            p.kill()
            p.wait()
        r.close()
