"""EventDispatcher: ordering per subject, isolation, timeouts, hooks, close."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import pluggy
import pytest

from pykeepalived import hookimpl
from pykeepalived.core.config.model import Config, VrrpInstance
from pykeepalived.core.events import EventDispatcher
from pykeepalived.core.labels import format_rs, format_vs, lvs_subject_name
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import EventKind, Notifier, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry


def registry(notifiers: dict[str, type[Notifier]], *plugins: tuple[str, object]) -> PluginRegistry:
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    for name, p in plugins:
        pm.register(p, name=name)
    return PluginRegistry(pm, notifiers=dict(notifiers))


LOG: list[tuple[str, str, str, int]] = []


class Recorder(Notifier):
    name = "recorder"

    async def notify(self, event: StateEvent) -> None:
        # A small await inside, so interleaving between lanes can happen.
        await asyncio.sleep(0.001)
        LOG.append(("recorder", event.name, event.state, event.seq))


class SlowForA(Notifier):
    """Slow only for instance A: must not delay B or other notifiers."""

    name = "slow"
    timeout = 5.0

    async def notify(self, event: StateEvent) -> None:
        if event.name == "A":
            await asyncio.sleep(0.5)
        LOG.append(("slow", event.name, event.state, event.seq))


class Hangs(Notifier):
    name = "hangs"
    timeout = 0.2

    async def notify(self, event: StateEvent) -> None:
        await asyncio.sleep(3600)


class Raises(Notifier):
    name = "raises"

    async def notify(self, event: StateEvent) -> None:
        raise RuntimeError("boom from raises")


class BadFilter(Notifier):
    name = "badfilter"

    def wants(self, event: StateEvent) -> bool:
        raise ValueError("bad filter")

    async def notify(self, event: StateEvent) -> None:  # pragma: no cover - never called
        LOG.append(("badfilter", event.name, event.state, event.seq))


class BrokenInit(Notifier):
    name = "broken"

    def __init__(self, config: Config) -> None:
        raise RuntimeError("cannot build")

    async def notify(self, event: StateEvent) -> None:  # pragma: no cover
        pass


class OnlyMaster(Notifier):
    name = "onlymaster"
    seen: ClassVar[list[str]] = []

    def wants(self, event: StateEvent) -> bool:
        return event.state == "MASTER"

    async def notify(self, event: StateEvent) -> None:
        LOG.append(("onlymaster", event.name, event.state, event.seq))


@pytest.fixture(autouse=True)
def _clear() -> None:
    LOG.clear()


def ev(name: str, state: str, kind: EventKind = EventKind.INSTANCE, **kw: Any) -> StateEvent:
    return StateEvent(kind, name, state, **kw)


async def test_order_per_subject_and_isolation(caplog: pytest.LogCaptureFixture) -> None:
    reg = registry(
        {
            "recorder": Recorder,
            "hangs": Hangs,
            "raises": Raises,
            "badfilter": BadFilter,
            "broken": BrokenInit,
            "onlymaster": OnlyMaster,
        }
    )
    caplog.set_level(logging.INFO)
    d = EventDispatcher(Config(), reg, "r1")
    assert {type(p) for p in d.plugins} == {Recorder, Hangs, Raises, BadFilter, OnlyMaster}
    assert "notifier broken could not be configured" in caplog.text
    states = ["BACKUP", "MASTER", "BACKUP", "FAULT", "BACKUP", "MASTER"]
    t0 = time.monotonic()
    stamped = []
    for s in states:
        stamped.append(d.emit(ev("A", s)))
        stamped.append(d.emit(ev("B", s)))
    # emit only stamps and queues: no notifier has run before the loop gets control back.
    # (The bound is 10x what 12 emits take here, see bench/micro: "did not block".)
    assert LOG == [], "emit must not wait for delivery"
    assert time.monotonic() - t0 < 0.5
    assert [e.seq for e in stamped] == list(range(1, 13))
    assert all(e.router_id == "r1" for e in stamped)
    await d.wait_idle(timeout=10)
    for name in ("A", "B"):
        got = [s for (who, n, s, _) in LOG if who == "recorder" and n == name]
        assert got == states
        seqs = [q for (who, n, _, q) in LOG if who == "recorder" and n == name]
        assert seqs == sorted(seqs)
        assert [s for (who, n, s, _) in LOG if who == "onlymaster" and n == name] == ["MASTER"] * 2
    # Each hanging call timed out and was logged with the plugin's name; same for raises.
    assert caplog.text.count("hangs: timed out after 0.2s handling INSTANCE A") == len(states)
    assert (
        "raises: failed handling INSTANCE B BACKUP (#2): RuntimeError: boom from raises"
        in caplog.text
    )
    assert "badfilter: wants() failed: ValueError: bad filter" in caplog.text
    await d.close()


async def test_slow_notifier_of_a_does_not_delay_b() -> None:
    d = EventDispatcher(Config(), registry({"slow": SlowForA, "recorder": Recorder}), "r1")
    t0 = time.monotonic()
    d.emit(ev("A", "MASTER"))
    d.emit(ev("A", "BACKUP"))
    d.emit(ev("B", "MASTER"))
    # B (and the other notifier for A) are delivered before A's slow notifier finishes:
    # an ordering in the delivery log, not a stopwatch (bench/micro times it).
    await d.wait_idle(timeout=5)
    assert [(n, s) for (w, n, s, _) in LOG if w == "slow"] == [
        ("B", "MASTER"),
        ("A", "MASTER"),
        ("A", "BACKUP"),
    ]
    assert LOG.index(("recorder", "A", "BACKUP", 2)) < LOG.index(("slow", "A", "MASTER", 1))
    assert time.monotonic() - t0 >= 1.0  # A's two slow deliveries ran one after the other
    await d.close()


class HookPlugin:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @hookimpl
    def pykeepalived_state_change(self, event: StateEvent) -> Any:
        async def later() -> None:
            await asyncio.sleep(0.001)
            self.events.append((event.name, event.state))

        return later()


class SyncHookPlugin:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @hookimpl
    def pykeepalived_state_change(self, event: StateEvent) -> None:
        self.events.append((event.name, event.state))


class RaisingHookPlugin:
    @hookimpl
    def pykeepalived_state_change(self, event: StateEvent) -> None:
        raise KeyError("hook boom")


class HangingHookPlugin:
    @hookimpl
    def pykeepalived_state_change(self, event: StateEvent) -> Any:
        return asyncio.sleep(3600)


async def test_state_change_hook_fan_out(caplog: pytest.LogCaptureFixture) -> None:
    a, s = HookPlugin(), SyncHookPlugin()
    reg = registry(
        {},
        ("asyncplug", a),
        ("raiser", RaisingHookPlugin()),
        ("hanger", HangingHookPlugin()),
        ("syncplug", s),
    )
    d = EventDispatcher(Config(), reg, "r1", hook_timeout=0.2)
    d.emit(ev("VI_1", "BACKUP"))
    d.emit(ev("VI_1", "MASTER"))
    await d.wait_idle(timeout=5)
    assert a.events == [("VI_1", "BACKUP"), ("VI_1", "MASTER")]
    assert s.events == [("VI_1", "BACKUP"), ("VI_1", "MASTER")]
    assert "plugin raiser: failed handling INSTANCE VI_1 BACKUP (#1): KeyError" in caplog.text
    assert "plugin hanger: timed out after 0.2s handling INSTANCE VI_1 MASTER (#2)" in caplog.text
    await d.close()


async def test_deleted_is_fault_unless_notify_deleted() -> None:
    d = EventDispatcher(Config(), registry({"recorder": Recorder}), "r1")
    plain = VrrpInstance("VI_1")
    got = d.emit(ev("VI_1", "DELETED", subject=plain))
    assert got.state == "FAULT" and got.detail == "deleted"
    from pykeepalived.core.config.schema import Script

    keep = VrrpInstance("VI_2", notify_deleted=Script(["/bin/true"]))
    assert d.emit(ev("VI_2", "DELETED", subject=keep)).state == "DELETED"
    await d.close()


async def test_close_cancels_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    class Forever(Notifier):
        name = "forever"
        timeout = 3600.0
        closed = False

        async def notify(self, event: StateEvent) -> None:
            await asyncio.sleep(3600)

        async def close(self) -> None:
            type(self).closed = True

    d = EventDispatcher(Config(), registry({"forever": Forever}), "r1")
    d.emit(ev("A", "MASTER"))
    d.emit(ev("A", "BACKUP"))
    t0 = time.monotonic()
    await d.close(timeout=0.2)
    assert time.monotonic() - t0 < 2
    assert Forever.closed
    assert "shutting down with 1 undelivered event(s)" in caplog.text
    # After close, emit is refused (logged), never raises.
    d.emit(ev("A", "FAULT"))
    assert "dispatcher closed, dropping INSTANCE A FAULT" in caplog.text


def test_keepalived_lvs_names() -> None:
    import ipaddress

    from pykeepalived.core.config.model import RealServer, VirtualServer

    vs = VirtualServer(address=ipaddress.ip_address("192.0.2.100"), port=80, protocol="TCP")
    rs = RealServer(ipaddress.ip_address("192.0.2.21"), 8080)
    assert format_vs(vs) == "[192.0.2.100]:tcp:80"
    assert format_rs(rs, vs) == "[192.0.2.21]:tcp:8080"
    assert lvs_subject_name(rs, vs) == "[192.0.2.21]:tcp:8080 [192.0.2.100]:tcp:80"
    assert format_vs(VirtualServer(fwmark=7)) == "FWM 7"
    v6 = VirtualServer(address=ipaddress.ip_address("2001:db8::1"), port=53, protocol="UDP")
    assert format_vs(v6) == "[2001:db8::1]:udp:53"
