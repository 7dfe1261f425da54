"""Reload (SIGHUP) of virtual servers: health carried over, table not flushed."""

from __future__ import annotations

import pytest
from checkhelp import manager

from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.base import CheckResult

DOWN = CheckResult(False)


def conf(reals: range) -> str:
    body = "\n".join(
        f"  real_server 192.0.2.{20 + i} 80 {{\n    TCP_CHECK {{\n      connect_port {8000 + i}\n    }}\n  }}"
        for i in reals
    )
    return f"virtual_server 192.0.2.100 80 {{\n  protocol TCP\n  lb_algo wlc\n  lb_kind DR\n{body}\n}}\n"


def alive(m: VirtualServerManager) -> dict[str, bool]:
    return {r.label: r.alive for vs in m.virtual_servers for r in vs.reals}


async def test_reload_keeps_health_and_does_not_flush() -> None:
    old, _, backend = manager(conf(range(1, 3)))
    await old.start()
    old.checker_result(0, 0, 0, False, DOWN)  # 192.0.2.21 fails
    await old.settled()
    assert alive(old) == {"[192.0.2.21]:tcp:80": False, "[192.0.2.22]:tcp:80": True}
    await old.stop(remove_services=False)
    pushed = len(backend.pushes)
    assert backend.pushes[-1] != []  # the table was not emptied

    new, _, _ = manager(conf(range(1, 4)))
    new.backend = backend
    assert new.inherit(old) == 2
    await new.start()
    try:
        await new.settled()
        # the failed server stays out of service; the added one comes in
        assert alive(new) == {
            "[192.0.2.21]:tcp:80": False,
            "[192.0.2.22]:tcp:80": True,
            "[192.0.2.23]:tcp:80": True,
        }
        (svc,) = backend.pushes[-1]
        assert {str(d.address) for d in svc.destinations} == {"192.0.2.22", "192.0.2.23"}
        assert len(backend.pushes) > pushed
        status = new.status()
        assert status[0]["virtual_server"] == "[192.0.2.100]:tcp:80"
    finally:
        await new.stop()
    assert backend.pushes[-1] == []  # a real stop removes what we programmed


async def test_daemon_passes_lvs_flush_settings_to_the_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    from pykeepalived.core.config import load_text
    from pykeepalived.core.lvs import ipvs
    from pykeepalived.core.lvs.ipvs import FlushOnStop
    from pykeepalived.core.lvs.manager import NullBackend
    from pykeepalived.core.plugin.manager import build_registry
    from pykeepalived.core.shell.daemon import Daemon

    seen: dict[str, object] = {}

    class Backend(NullBackend):
        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

    async def fake_open_backend(**kw: object) -> Backend:
        seen.update(kw)
        return Backend()

    monkeypatch.setattr(ipvs, "open_backend", fake_open_backend)
    registry = build_registry()
    # Loopback real server: any check the scheduler starts stays on this host.
    text = "global_defs {\n lvs_flush\n lvs_flush_on_stop VS\n}\n" + conf(range(1, 2)).replace(
        "192.0.2.21 80", "127.0.0.1 9"
    )
    result = load_text(text, grammar=registry.grammar())
    args = argparse.Namespace(
        check=True, vrrp=False, http_listen=None, status_socket=None, file="t"
    )
    daemon = Daemon(args, result, registry)
    await daemon.start()
    try:
        assert seen == {"flush_at_start": True, "flush_on_stop": FlushOnStop.VS, "kind": "auto"}
    finally:
        await daemon.stop()
