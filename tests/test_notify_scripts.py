"""Notify scripts really executed through the dispatcher: arguments, order, timeouts, security."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import stat
import time
from pathlib import Path

import pluggy
import pytest

from pykeepalived.core.config.model import Config
from pykeepalived.core.events import EventDispatcher
from pykeepalived.core.labels import lvs_subject_name
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry
from pykeepalived.plugins.notify.scripts import ScriptNotifier
from pykeepalived.testing import load_text


def registry() -> PluginRegistry:
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    return PluginRegistry(pm, notifiers={"script": ScriptNotifier})


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    # Every script appends "<name> <argv...>" to out.log; "slow" sleeps first.
    out = tmp_path / "out.log"
    for name in (
        "master",
        "backup",
        "fault",
        "stop",
        "generic",
        "rxlow",
        "up",
        "down",
        "qup",
        "qdown",
    ):
        p = d / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> {out}\n')
        p.chmod(0o755)
    slow = d / "slow"
    slow.write_text(
        f'#!/bin/sh\necho "slow-start $*" >> {out}\nsleep 0.3\necho "slow-end $*" >> {out}\n'
    )
    slow.chmod(0o755)
    hang = d / "hang"
    hang.write_text(f'#!/bin/sh\necho "hang $$" >> {out}\nexec sleep 3600\n')
    hang.chmod(0o755)
    return d


def lines(bin_dir: Path) -> list[str]:
    out = bin_dir.parent / "out.log"
    return out.read_text().splitlines() if out.exists() else []


def config(text: str) -> Config:
    res = load_text(text)
    assert res.ok, [str(d) for d in res.diagnostics.errors]
    return res.config


async def test_instance_and_group_scripts_in_order(bin_dir: Path) -> None:
    b = bin_dir
    cfg = config(f"""
global_defs {{ router_id r1 }}
vrrp_sync_group G1 {{
    group {{ VI_1 }}
    notify_master {b}/master
    notify "{b}/generic grp-arg"
}}
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    priority 150
    virtual_ipaddress {{ 192.0.2.100/24 }}
    notify_master "{b}/master 'arg one' two"
    notify_backup {b}/backup
    notify_fault {b}/fault
    notify_stop {b}/stop
    notify_master_rx_lower_pri {b}/rxlow
    notify {b}/generic
}}
""")
    d = EventDispatcher(cfg, registry(), "r1")
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=150))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=150))
    d.emit(StateEvent(EventKind.GROUP, "G1", "MASTER"))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER_RX_LOWER_PRI", priority=150))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "FAULT", priority=0))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "STOP", priority=150))
    await d.wait_idle(timeout=20)
    got = lines(b)
    inst = [ln for ln in got if ln != "master " and "grp-arg" not in ln]
    assert inst == [
        "backup ",
        "generic INSTANCE VI_1 BACKUP 150",
        "master arg one two",
        "generic INSTANCE VI_1 MASTER 150",
        "rxlow ",  # no generic notify for MASTER_RX_LOWER_PRI
        "fault ",
        "generic INSTANCE VI_1 FAULT 0",
        "stop ",
        "generic INSTANCE VI_1 STOP 150",
    ]
    grp = [ln for ln in got if ln == "master " or "grp-arg" in ln]
    assert grp == ["master ", "generic grp-arg GROUP G1 MASTER 0"]
    await d.close()


async def test_one_subject_never_runs_two_scripts_at_once(bin_dir: Path) -> None:
    b = bin_dir
    cfg = config(f"""
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
    notify {b}/slow
}}
vrrp_instance VI_2 {{
    interface lo
    virtual_router_id 52
    virtual_ipaddress {{ 192.0.2.101/24 }}
    notify {b}/slow
}}
""")
    d = EventDispatcher(cfg, registry(), "r1")
    t0 = time.monotonic()
    for s in ("BACKUP", "MASTER", "FAULT"):
        d.emit(StateEvent(EventKind.INSTANCE, "VI_1", s, priority=100))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_2", "MASTER", priority=100))
    await d.wait_idle(timeout=20)
    elapsed = time.monotonic() - t0
    got = [ln for ln in lines(b) if "VI_1" in ln]
    assert got == [
        "slow-start INSTANCE VI_1 BACKUP 100",
        "slow-end INSTANCE VI_1 BACKUP 100",
        "slow-start INSTANCE VI_1 MASTER 100",
        "slow-end INSTANCE VI_1 MASTER 100",
        "slow-start INSTANCE VI_1 FAULT 100",
        "slow-end INSTANCE VI_1 FAULT 100",
    ]
    # VI_2 ran alongside VI_1, not after it: it started before VI_1's chain of
    # three 0.3 s scripts ended (a start, not an end: on a loaded machine a
    # process can take a while to start, seen beside bench/scale)
    assert lines(b).index("slow-start INSTANCE VI_2 MASTER 100") < lines(b).index(
        "slow-end INSTANCE VI_1 FAULT 100"
    )
    assert elapsed >= 0.9  # VI_1's three ran one after another (wait_idle bounds the top)
    await d.close()


async def test_script_timeout_kills_and_carries_on(
    bin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = bin_dir
    cfg = config(f"""
global_defs {{ script_timeout 0.3 }}
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
    notify_master {b}/hang
    notify_backup {b}/backup
}}
""")
    d = EventDispatcher(cfg, registry(), "r1")
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
    await d.wait_idle(timeout=10)
    got = lines(b)
    assert got[0].startswith("hang ") and got[1] == "backup "
    pid = int(got[0].split()[1])
    await asyncio.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert f"(VI_1) notify_master script {b}/hang timed out after 0.3s - killed" in caplog.text
    await d.close()


async def test_real_server_and_quorum_scripts(bin_dir: Path) -> None:
    b = bin_dir
    cfg = config(f"""
virtual_server 192.0.2.100 80 {{
    protocol TCP
    lb_algo wlc
    quorum_up "{b}/qup vs80"
    quorum_down {b}/qdown
    real_server 192.0.2.21 80 {{
        notify_up "{b}/up rs21"
        notify_down "{b}/down rs21"
    }}
}}
""")
    vs = cfg.virtual_servers[0]
    rs = vs.real_servers[0]
    assert rs.address == ipaddress.ip_address("192.0.2.21")
    name = lvs_subject_name(rs, vs)
    d = EventDispatcher(cfg, registry(), "r1")
    d.emit(StateEvent(EventKind.REAL_SERVER, name, "UP", real_server=rs, virtual_server=vs))
    d.emit(StateEvent(EventKind.VIRTUAL_SERVER, "[192.0.2.100]:tcp:80", "UP", virtual_server=vs))
    d.emit(StateEvent(EventKind.REAL_SERVER, name, "DOWN"))  # found by name
    d.emit(StateEvent(EventKind.VIRTUAL_SERVER, "[192.0.2.100]:tcp:80", "DOWN"))
    await d.wait_idle(timeout=10)
    got = lines(b)
    assert [ln for ln in got if "rs21" in ln] == ["up rs21", "down rs21"]
    assert [ln for ln in got if ln.startswith("q")] == ["qup vs80", "qdown "]
    await d.close()


async def test_insecure_root_script_refused(
    bin_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: script security applies to scripts run as root")
    if _user_exists("keepalived_script"):
        pytest.skip("keepalived_script exists: scripts would not run as root")
    b = bin_dir
    wdir = tmp_path / "world"
    wdir.mkdir()
    wdir.chmod(0o777)  # writable by others: unsafe for a root script
    evil = wdir / "evil"
    evil.write_text(f'#!/bin/sh\necho "evil $*" >> {tmp_path / "out.log"}\n')
    evil.chmod(0o755)
    os.chmod(evil, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    cfg = config(f"""
global_defs {{ enable_script_security }}
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
    notify_master {evil}
    notify_backup {b}/backup
}}
""")
    caplog.set_level(logging.INFO)
    d = EventDispatcher(cfg, registry(), "r1")
    assert f"unsafe permissions found for script '{evil}'" in caplog.text
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
    await d.wait_idle(timeout=10)
    assert lines(b) == ["backup "]
    assert f"(VI_1) notify_master script {evil} refused" in caplog.text
    await d.close()


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
