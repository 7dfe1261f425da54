"""Tests of the example plugin, with pykeepalived's pytest plugin fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pykeepalived_example import plugin

from pykeepalived.api import CheckTarget, EventKind, StateEvent
from pykeepalived.testing import build_registry, load_text

CONF = """\
global_defs {
    example_event_log %s
}
virtual_server 127.0.0.1 %d {
    real_server 127.0.0.1 %d {
        EXAMPLE_CHECK {
            expect "220 "
            connect_timeout 2
        }
    }
}
"""


def _load(log: Path, port: int):  # type: ignore[no-untyped-def]
    registry = build_registry(extra=[("example", plugin)], autoload=False)
    return load_text(CONF % (log, port, port), registry=registry), registry


def test_check_against_a_real_server(tmp_path: Path, free_port: int) -> None:
    result, registry = _load(tmp_path / "events.log", free_port)
    assert result.ok, result.diagnostics.items
    [rs] = result.config.virtual_servers[0].real_servers
    [conf] = rs.checkers

    async def scenario() -> tuple[bool, bool]:
        async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 ready\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(banner, "127.0.0.1", free_port)
        async with server:
            check = registry.checkers["EXAMPLE_CHECK"](conf, CheckTarget("127.0.0.1", free_port))
            up = (await check.check()).ok
        check = registry.checkers["EXAMPLE_CHECK"](conf, CheckTarget("127.0.0.1", free_port))
        try:
            down = (await check.check()).ok
        except OSError:
            down = False
        return up, down

    assert asyncio.run(scenario()) == (True, False)


def test_notifier_appends_events(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    result, registry = _load(log, 80)
    notifier = registry.notifiers["event_log"](result.config)
    event = StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100)
    assert notifier.wants(event)
    asyncio.run(notifier.notify(event))
    asyncio.run(notifier.notify(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100)))
    assert [line.split()[1:] for line in log.read_text().splitlines()] == [
        ["INSTANCE", "VI_1", "MASTER", "100"],
        ["INSTANCE", "VI_1", "BACKUP", "100"],
    ]


def test_expect_is_required() -> None:
    registry = build_registry(extra=[("example", plugin)], autoload=False)
    text = (
        "virtual_server 127.0.0.1 80 {\n real_server 127.0.0.1 80 {\n EXAMPLE_CHECK {\n }\n }\n}\n"
    )
    result = load_text(text, name="k.conf", registry=registry)
    assert [str(d) for d in result.diagnostics.errors] == [
        "k.conf:3: error: EXAMPLE_CHECK: needs expect STRING"
    ]
