"""Notify FIFOs read by real readers: keepalived's line format, routing, no reader."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pluggy
import pytest

from pykeepalived.core.config.model import Config
from pykeepalived.core.events import EventDispatcher
from pykeepalived.core.labels import lvs_subject_name
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry
from pykeepalived.plugins.notify.fifo import FifoNotifier
from pykeepalived.testing import load_text


def registry() -> PluginRegistry:
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    return PluginRegistry(pm, notifiers={"fifo": FifoNotifier})


def config(text: str) -> Config:
    res = load_text(text)
    assert res.ok, [str(d) for d in res.diagnostics.errors]
    return res.config


VS = """
virtual_server 192.0.2.100 80 {
    protocol TCP
    lb_algo wlc
    real_server 192.0.2.21 80 { weight 1 }
}
"""


async def wait_for_lines(path: Path, n: int, timeout: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if path.exists():
            got = path.read_text().splitlines()
            if len(got) >= n:
                return got
        await asyncio.sleep(0.02)
    return path.read_text().splitlines() if path.exists() else []


async def test_fifo_scripts_read_keepalived_lines(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    reader = tmp_path / "reader"
    # keepalived passes the FIFO path as the reader's last argument.
    reader.write_text(
        '#!/bin/sh\nout="$1"; fifo="$2"\nwhile read -r line; do echo "$line" >> "$out"; done < "$fifo"\n'
    )
    reader.chmod(0o755)
    all_out, vrrp_out, lvs_out = tmp_path / "all.txt", tmp_path / "vrrp.txt", tmp_path / "lvs.txt"
    cfg = config(f"""
global_defs {{
    notify_fifo {tmp_path}/all.fifo
    notify_fifo_script "{reader} {all_out}"
    vrrp_notify_fifo {tmp_path}/vrrp.fifo
    vrrp_notify_fifo_script "{reader} {vrrp_out}"
    lvs_notify_fifo {tmp_path}/lvs.fifo
    lvs_notify_fifo_script "{reader} {lvs_out}"
}}
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
}}
{VS}
""")
    vs = cfg.virtual_servers[0]
    rs = vs.real_servers[0]
    d = EventDispatcher(cfg, registry(), "r1")
    await d.start()
    for name in ("all", "vrrp", "lvs"):
        assert stat.S_ISFIFO(os.stat(tmp_path / f"{name}.fifo").st_mode)
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    d.emit(StateEvent(EventKind.GROUP, "G1", "MASTER"))
    d.emit(
        StateEvent(
            EventKind.REAL_SERVER,
            lvs_subject_name(rs, vs),
            "DOWN",
            real_server=rs,
            virtual_server=vs,
        )
    )
    d.emit(StateEvent(EventKind.VIRTUAL_SERVER, "[192.0.2.100]:tcp:80", "DOWN", virtual_server=vs))
    await d.wait_idle(timeout=5)
    vrrp_lines = ['INSTANCE "VI_1" BACKUP 100', 'INSTANCE "VI_1" MASTER 100', 'GROUP "G1" MASTER 0']
    lvs_lines = [
        "RS [192.0.2.21]:tcp:80 [192.0.2.100]:tcp:80 DOWN",
        "VS [192.0.2.100]:tcp:80 DOWN",
    ]
    got_all = await wait_for_lines(all_out, 5)
    got_vrrp = await wait_for_lines(vrrp_out, 3)
    got_lvs = await wait_for_lines(lvs_out, 2)
    # Lines of one subject keep their order; different subjects may interleave.
    assert sorted(got_vrrp) == sorted(vrrp_lines)
    assert sorted(got_lvs) == sorted(lvs_lines)
    assert sorted(got_all) == sorted(vrrp_lines + lvs_lines)
    for got in (got_all, got_vrrp):
        assert [ln for ln in got if "VI_1" in ln] == vrrp_lines[:2]
    await d.close()
    # The FIFOs we created are removed; the readers are gone.
    assert not any((tmp_path / f"{n}.fifo").exists() for n in ("all", "vrrp", "lvs"))
    # ... and so are the tasks that watched them.
    assert [t.get_name() for t in asyncio.all_tasks() if not t.done()] == [
        asyncio.current_task().get_name()  # type: ignore[union-attr]
    ]


async def test_no_reader_never_blocks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fifo = tmp_path / "k.fifo"
    cfg = config(f"global_defs {{ vrrp_notify_fifo {fifo} }}\n")
    d = EventDispatcher(cfg, registry(), "r1")
    await d.start()
    # 64 KiB pipe buffer: thousands of lines fill it; the rest are dropped, logged.
    for i in range(3000):
        d.emit(StateEvent(EventKind.INSTANCE, f"VI_{i % 7}", "MASTER", priority=100))
    await d.wait_idle(timeout=10)
    assert "notify fifo" in caplog.text and "line dropped" in caplog.text
    # A reader that comes later gets whole lines that were buffered.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    first = data.decode().split("\n")[0]
    assert first == 'INSTANCE "VI_0" MASTER 100'
    await d.close()
    assert not fifo.exists()


async def test_existing_regular_file_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    planted = tmp_path / "planted"
    planted.write_text("not a fifo\n")
    if os.geteuid() == 0:
        os.chown(planted, 65534, 65534)  # owned by someone else
    cfg = config(f"global_defs {{ notify_fifo {planted} }}\n")
    d = EventDispatcher(cfg, registry(), "r1")
    await d.start()
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=5)
    assert "is not a fifo we own - not using" in caplog.text
    assert planted.read_text() == "not a fifo\n"
    await d.close()
    assert planted.exists()  # not ours: never unlinked


async def test_an_existing_fifo_is_used_and_kept(tmp_path: Path) -> None:
    """keepalived removes at exit only the FIFO it created: one that was there (made by
    the reader's owner, say) is written to and left in place."""
    fifo = tmp_path / "existing.fifo"
    os.mkfifo(fifo, 0o600)
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        d = EventDispatcher(config(f"global_defs {{ notify_fifo {fifo} }}\n"), registry(), "r1")
        await d.start()
        d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "FAULT", priority=0))
        await d.wait_idle(timeout=5)
        assert os.read(reader_fd, 4096) == b'INSTANCE "VI_1" FAULT 0\n'
        await d.close()
    finally:
        os.close(reader_fd)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


async def test_reader_scripts_end_and_are_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader that exits is logged and the daemon goes on writing (the FIFO is opened
    read-write: no EPIPE); one that ignores SIGTERM is killed at close, group and all."""
    os.chmod(tmp_path, 0o755)
    quits = tmp_path / "quits"
    quits.write_text("#!/bin/sh\nexit 0\n")
    stubborn = tmp_path / "stubborn"
    pidfile = tmp_path / "stubborn.pid"
    stubborn.write_text(
        f"#!/bin/sh\ntrap '' TERM\necho $$ > {pidfile}\nwhile :; do sleep 0.1; done\n"
    )
    for script in (quits, stubborn):
        script.chmod(0o755)
    cfg = config(f"""
global_defs {{
    vrrp_notify_fifo {tmp_path}/vrrp.fifo
    vrrp_notify_fifo_script {quits}
    lvs_notify_fifo {tmp_path}/lvs.fifo
    lvs_notify_fifo_script {stubborn}
}}
""")
    caplog.set_level("INFO")
    d = EventDispatcher(cfg, registry(), "r1")
    await d.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while ("notify fifo script terminated" not in caplog.text or not pidfile.exists()) and (
        loop.time() < end
    ):
        await asyncio.sleep(0.02)
    # keepalived 2.2.7's line (vrrp/vrrp.c:116).
    assert "vrrp notify fifo script terminated" in caplog.text, caplog.text
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=5)
    pid = int(pidfile.read_text())
    os.kill(pid, 0)  # the stubborn reader runs
    await d.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Traceback" not in caplog.text
