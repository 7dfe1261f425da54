"""Health checks driving the table: keepalived and pykeepalived, step by step.

Two real servers behind one NAT service, TCP_CHECK every second; one is a
plain real server (removed when it fails), the other has
inhibit_on_failure (kept with weight 0).  Both listeners stop, then come
back.  At each step keepalived must reach the expected table (so the
expectation is keepalived's behaviour), then, in a second run, our
checkers + virtual-server manager + IPVS backend must reach the same tables,
with the weight changes done as edits (the inhibited real server is never
deleted, so its connections would live on).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from vmhelp import ipvsadm_rules, start_keepalived, stop_keepalived

from pykeepalived.core.config import load_text
from pykeepalived.core.lvs.ipvs import IpvsBackend, OpKind
from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.manager import build_registry

CONF = """
virtual_server 192.0.2.60 8081 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 198.51.100.71 8081 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 198.51.100.72 8081 {
        weight 3
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
"""
SERVICE = "-A -t 192.0.2.60:8081 -s wrr"
BOTH_UP = sorted(
    [
        SERVICE,
        "-a -t 192.0.2.60:8081 -r 198.51.100.71:8081 -m -w 2",
        "-a -t 192.0.2.60:8081 -r 198.51.100.72:8081 -m -w 3",
    ]
)
BOTH_DOWN = sorted([SERVICE, "-a -t 192.0.2.60:8081 -r 198.51.100.72:8081 -m -w 0"])
STEP_TIMEOUT = 25.0


class Listeners:
    """One busybox httpd per real server, to stop and start at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *addresses: str) -> None:
        for address in addresses:
            self.procs[address] = subprocess.Popen(
                ["busybox", "httpd", "-f", "-p", f"{address}:8081", "-h", str(self.root)]
            )

    def stop(self, *addresses: str) -> None:
        for address in addresses:
            proc = self.procs.pop(address)
            proc.kill()
            proc.wait()


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    ls = Listeners(tmp_path)
    yield ls
    ls.stop(*list(ls.procs))


async def reach(expected: list[str], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    rules: list[str] = []
    while time.monotonic() < deadline:
        rules = await asyncio.to_thread(ipvsadm_rules)
        if rules == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: table never became {expected}; last {rules}")


async def scenario(listeners: Listeners, who: str, settle: Callable[[], Awaitable[None]]) -> None:
    await reach(BOTH_UP, f"{who}, both up")
    listeners.stop("198.51.100.71", "198.51.100.72")
    await reach(BOTH_DOWN, f"{who}, both down")
    listeners.start("198.51.100.71", "198.51.100.72")
    await reach(BOTH_UP, f"{who}, both back")
    await settle()


async def test_checks_drive_the_table_as_keepalived_does(
    listeners: Listeners, tmp_path: Path
) -> None:
    addresses = ("198.51.100.71", "198.51.100.72")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)

    # 1. keepalived: the expected tables are its tables.
    listeners.start(*addresses)
    keepalived, log = start_keepalived(conf, tmp_path)

    async def nothing() -> None:
        return None

    try:
        await scenario(listeners, "keepalived", nothing)
    except AssertionError as exc:
        log.seek(0)
        raise AssertionError(f"{exc}\n{log.read()}") from None
    finally:
        stop_keepalived(keepalived)
    assert ipvsadm_rules() == []

    # 2. pykeepalived: checkers, manager and backend, same steps.
    registry = build_registry(autoload=False)
    loaded = load_text(CONF, grammar=registry.grammar())
    assert not loaded.diagnostics.errors
    backend = IpvsBackend()
    ops: list[tuple[OpKind, str]] = []
    apply = backend.apply

    async def recording_apply(services: list) -> object:  # type: ignore[type-arg]
        result = await apply(services)
        ops.extend((op.kind, str(op.dest or op.service)) for op in result.done)
        return result

    backend.apply = recording_apply  # type: ignore[method-assign]
    logging.getLogger("pykeepalived").setLevel(logging.WARNING)
    manager = VirtualServerManager(loaded.config, registry.checkers, backend=backend)
    await manager.start()
    try:
        await scenario(listeners, "pykeepalived", manager.settled)
    finally:
        await manager.stop()
    await backend.stop()
    assert ipvsadm_rules() == []

    # The service was created once; the inhibited real server was only ever
    # edited (weight 3 -> 0 -> 3), the other deleted and added back.
    def phase(*items: tuple[OpKind, str]) -> list[str]:
        return sorted(f"{kind.name} {what}" for kind, what in items)

    assert ops[:3] == [
        (OpKind.ADD_SERVICE, "[192.0.2.60]:tcp:8081"),
        (OpKind.ADD_DEST, "[198.51.100.71]:8081"),
        (OpKind.ADD_DEST, "[198.51.100.72]:8081"),
    ], ops
    assert phase(*ops[3:5]) == phase(
        (OpKind.EDIT_DEST, "[198.51.100.72]:8081"), (OpKind.DEL_DEST, "[198.51.100.71]:8081")
    ), ops
    assert phase(*ops[5:7]) == phase(
        (OpKind.EDIT_DEST, "[198.51.100.72]:8081"), (OpKind.ADD_DEST, "[198.51.100.71]:8081")
    ), ops
    assert ops[7:] == [(OpKind.DEL_SERVICE, "[192.0.2.60]:tcp:8081")], ops
