"""notify_action: parsed through the plugin's grammar, run after the delay, isolated."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pluggy
import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Config
from pykeepalived.core.events import EventDispatcher
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry, build_registry
from pykeepalived.plugins.actions import service
from pykeepalived.plugins.actions.service import ServiceAction, ServiceActionRunner


def grammar_registry() -> PluginRegistry:
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    pm.register(service, name="service_action")
    return PluginRegistry(pm, actions={"service": ServiceActionRunner})


def load(text: str) -> tuple[Config, list[str]]:
    res = load_text(text, grammar=grammar_registry().grammar())
    return res.config, [str(d) for d in res.diagnostics.errors]


def instance(body: str) -> str:
    return f"""
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
{body}
}}
"""


def test_registered_through_entry_points() -> None:
    reg = build_registry(autoload=False)
    assert reg.actions.get("service") is ServiceActionRunner
    cfg = load_text(
        instance("notify_action master { systemd_reload haproxy.service }"), grammar=reg.grammar()
    )
    assert cfg.ok


def test_parse_block() -> None:
    cfg, errors = load(
        instance("""
    notify_action master {
        systemd_reload haproxy.service
        command "/usr/local/bin/rebind 192.0.2.100" nobody
        delay 2.5
        timeout 7
    }
    notify_action BACKUP { systemd_restart nginx }
""")
    )
    assert errors == []
    acts = cfg.vrrp_instances[0].ext["notify_action"]
    assert [type(a) for a in acts] == [ServiceAction, ServiceAction]
    m, b = acts
    assert (m.state, m.delay, m.timeout) == ("MASTER", 2.5, 7.0)
    assert [s.argv for s in m.steps] == [
        ["systemctl", "reload", "haproxy.service"],
        ["/usr/local/bin/rebind", "192.0.2.100"],
    ]
    assert m.steps[1].script is not None and m.steps[1].script.user == "nobody"
    assert (b.state, b.steps[0].argv) == ("BACKUP", ["systemctl", "restart", "nginx"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("notify_action primary { command /bin/true }", "state 'primary' is not one of master"),
        ("notify_action master { delay 1 }", "needs at least one of systemd_reload"),
        ("notify_action master { command /bin/true\n delay -1 }", "out of range"),
        ("notify_action master", "needs a { ... } block"),
    ],
)
def test_bad_blocks_are_clear_errors(body: str, message: str) -> None:
    _, errors = load(instance(body))
    assert errors and message in errors[0], errors
    assert ":" in errors[0]  # FILE:LINE


async def test_command_runs_after_delay_and_only_for_its_state(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    out = tmp_path / "out.log"
    script = tmp_path / "rebind"
    script.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {out}\n')
    script.chmod(0o755)
    cfg, errors = load(
        instance(f"""
    notify_action master {{
        command "{script} master 192.0.2.100"
        delay 0.4
    }}
    notify_action backup {{ command "{script} backup" }}
""")
    )
    assert errors == []
    d = EventDispatcher(cfg, grammar_registry(), "r1")
    runner = next(p for p in d.plugins if isinstance(p, ServiceActionRunner))
    t0 = time.time()
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=5)
    await runner.wait_idle()
    (line,) = out.read_text().splitlines()
    stamp, args = line.split(" ", 1)
    assert args == "master 192.0.2.100"
    # Not before its delay: the script's own clock says so (a lower bound cannot flake
    # on a busy machine, unlike a sleep racing the delay).
    assert float(stamp) - t0 >= 0.4, "ran before its delay"
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "FAULT", priority=0))  # no action for FAULT
    await d.wait_idle(timeout=5)
    await runner.wait_idle()
    assert len(out.read_text().splitlines()) == 1
    await d.close()


async def test_flap_cancels_pending_action(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.chmod(tmp_path, 0o755)
    out = tmp_path / "out.log"
    caplog.set_level(logging.INFO)
    cfg, _ = load(
        instance(f"""
    notify_action master {{ command "/bin/sh -c 'echo master >> {out}'"
        delay 30 }}
    notify_action backup {{ command "/bin/sh -c 'echo backup >> {out}'" }}
""")
    )
    d = EventDispatcher(cfg, grammar_registry(), "r1")
    runner = next(p for p in d.plugins if isinstance(p, ServiceActionRunner))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=5)
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
    await d.wait_idle(timeout=5)
    # The 30 s delay cannot run out on the way here, however busy the machine: the MASTER
    # action was pending when BACKUP came, and cancelled (its task is done, never ran).
    await runner.wait_idle()
    assert out.read_text().splitlines() == ["backup"]
    assert "(VI_1) notify_action cancelled: now BACKUP" in caplog.text
    await d.close()


async def test_timeout_and_failure_are_logged_and_isolated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.chmod(tmp_path, 0o755)
    out = tmp_path / "out.log"
    cfg, _ = load(
        instance(f"""
    notify_action master {{
        command "/bin/sleep 30"
        command "/bin/sh -c 'echo oops; exit 3'"
        command "/bin/sh -c 'echo done >> {out}'"
        timeout 0.3
    }}
""")
    )
    d = EventDispatcher(cfg, grammar_registry(), "r1")
    runner = next(p for p in d.plugins if isinstance(p, ServiceActionRunner))
    t0 = time.monotonic()
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=5)
    await runner.wait_idle()
    assert time.monotonic() - t0 < 3
    assert out.read_text().splitlines() == ["done"]
    assert "(VI_1) notify_action command /bin/sleep 30 timed out after 0.3s - killed" in caplog.text
    assert "exited with status 3 oops" in caplog.text
    await d.close()


async def test_docs_haproxy_plugin_example(tmp_path: Path) -> None:
    """The plugin example of docs/actions.md, executed against a real HAProxy's runtime API
    (its admin socket on a tmp path; no frontend, so nothing listens on the network)."""
    import importlib.util
    import re

    doc = (Path(__file__).parent.parent / "docs" / "actions.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    mod_path = tmp_path / "pykeepalived_haproxy_doc.py"
    mod_path.write_text(code.group(1))
    spec = importlib.util.spec_from_file_location("pykeepalived_haproxy_doc", mod_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    haproxy = "/usr/sbin/haproxy"
    assert os.path.exists(haproxy), "haproxy is missing: `make setup` installs it"
    sock = str(tmp_path / "haproxy.sock")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n"
        f"  stats socket {sock} mode 600 level admin\n"
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n"
        "  timeout server 1s\n"
        "backend be_web\n  server web1 127.0.0.1:9 weight 1\n"
    )
    proc = await asyncio.create_subprocess_exec(
        haproxy, "-db", "-f", str(cfg), stdout=asyncio.subprocess.DEVNULL
    )

    async def runtime(command: str) -> str:
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(command.encode() + b"\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer.decode()

    async def admin_state() -> int:
        # "show servers state": srv_admin_state is field 7 (0 ready, 1 forced maint).
        rows = [
            line.split()
            for line in (await runtime("show servers state be_web")).splitlines()
            if line and not line.startswith("#") and len(line.split()) > 7
        ]
        (row,) = [r for r in rows if r[3] == "web1"]
        return int(row[6])

    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            await asyncio.sleep(0.05)
        await runtime("disable server be_web/web1")  # start from maint: READY must be seen
        assert await admin_state() == 1
        pm = pluggy.PluginManager("pykeepalived")
        pm.add_hookspecs(hookspecs)
        pm.register(module, name="haproxy_state")
        pm.check_pending()
        reg = PluginRegistry(pm, actions=dict(module.pykeepalived_register_actions()))
        res = load_text(instance(f"    haproxy_server {sock} be_web/web1"), grammar=reg.grammar())
        assert res.ok, [str(d) for d in res.diagnostics.errors]
        d = EventDispatcher(res.config, reg, "r1")
        d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
        await d.wait_idle(timeout=5)
        assert await admin_state() == 0  # "set server ... state ready" taken by HAProxy
        d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
        await d.wait_idle(timeout=5)
        assert await admin_state() == 1  # "... state maint"
        await d.close()
    finally:
        proc.terminate()
        await proc.wait()
