"""``pykeepalived status`` against a real daemon in a namespace lab, the
transition reasons it shows, and keepalived's pid-file habits.

One node runs two VRRP instances (each tracking a script that tests for a
file, weight 0: a missing file means FAULT) and a virtual server with two
real servers (one listening, one not); a peer shares VI_1.  Files are
created and removed to move the instances, and each step is read back with
the command an operator runs, exit code included (0 all as wanted, 1
something FAULT or down, 2 unreachable).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.shell.statusview import health, summary_line
from pykeepalived.testing.daemons import KEEPALIVED, PYKEEPALIVED, PyNode, instance
from pykeepalived.testing.lab import Host, Lab
from pykeepalived.testing.scenarios import fake_distribution, with_env

pytestmark = pytest.mark.netns

VIP1 = "192.0.2.100"
VIP2 = "192.0.2.101"


def _status_cli(node: PyNode, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYKEEPALIVED, "status", "--socket", str(node.status_socket), *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _wait(what: str, probe: Callable[[], bool], node: PyNode, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout}s\n{node.tail()}")


def _inst(node: PyNode, name: str) -> dict[str, Any]:
    return node.instance_status(name)


def _config(d: Path, router_id: str, *, with_vs: bool) -> str:
    def script(name: str) -> str:
        return (
            f"vrrp_script {name} {{\n"
            f"    script \"/bin/sh -c 'test -e {d}/{name}'\"\n"
            "    interval 1\n"
            "}\n"
        )

    track1 = "    track_script {\n        chk_one\n    }"
    track2 = "    track_script {\n        chk_two\n    }"
    vs = ""
    if with_vs:
        reals = "".join(
            f"    real_server 192.0.2.11 {port} {{\n"
            "        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n"
            for port in (8081, 8082)
        )
        vs = (
            "virtual_server 192.0.2.200 80 {\n    delay_loop 1\n    lb_algo rr\n"
            f"    lb_kind NAT\n    protocol TCP\n{reals}}}\n"
        )
    return (
        f"global_defs {{\n    router_id {router_id}\n    script_user root\n}}\n"
        + script("chk_one")
        + script("chk_two")
        + instance(
            "VI_1", vrid=51, priority=150, state="MASTER", vips=(f"{VIP1}/24",), extra=track1
        )
        + instance("VI_2", vrid=52, priority=100, vips=(f"{VIP2}/24",), extra=track2)
        + vs
    )


#: A plugin that writes every instance event's detail (the transition's
#: reason) as notifiers and actions receive it.
EVENT_LOGGER = """
import os
from pykeepalived.api import hookimpl

@hookimpl
def pykeepalived_state_change(event):
    if event.kind.value == "INSTANCE":
        with open(os.environ["PYK_TEST_EVENTS"], "a") as fh:
            fh.write(f"{event.name} {event.state} {event.detail}\\n")
"""


def _listen(host: Host, port: int) -> subprocess.Popen[Any]:
    return host.popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", host.ip4],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_status_command_and_transition_reasons(lab: type[Lab], tmp_path: Path) -> None:
    net = lab(2)
    h1, h2 = net.hosts
    d1, d2 = tmp_path / "f1", tmp_path / "f2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "chk_one").touch()  # VI_1 healthy; chk_two missing: VI_2 in FAULT
    (d2 / "chk_one").touch()
    (d2 / "chk_two").touch()
    listener = _listen(h1, 8081)  # 8081 up, 8082 down
    node = PyNode(h1, tmp_path, "st")
    peer = PyNode(h2, tmp_path, "peer")
    events = tmp_path / "events.txt"
    plugin = fake_distribution(
        tmp_path / "plugin", "pka_evlog", EVENT_LOGGER, "[pykeepalived]\nevlog = pka_evlog\n"
    )
    with_env(node, {"PYTHONPATH": str(plugin), "PYK_TEST_EVENTS": str(events)})
    node.start(_config(d1, "st", with_vs=True))
    peer.start(_config(d2, "peer", with_vs=False).replace("priority 150", "priority 100"))
    try:
        _wait("VI_1 MASTER", lambda: _inst(node, "VI_1")["state"] == "MASTER", node)
        _wait("VI_2 FAULT", lambda: _inst(node, "VI_2")["state"] == "FAULT", node)

        def real_servers() -> list[bool]:
            vss = node.status().get("virtual_servers", [])
            return [r["alive"] for vs in vss for r in vs["real_servers"]]

        _wait("one real server up", lambda: real_servers() == [True, False], node)

        # The table, with a problem: exit 1
        proc = _status_cli(node)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        out = proc.stdout
        print(out)
        assert "2 instances: 1 MASTER 1 FAULT; 1 virtual server, 1/2 real servers up" in out
        vi1 = next(line for line in out.splitlines() if line.startswith("VI_1 "))
        assert "MASTER" in vi1 and VIP1 in vi1 and "master down timer expired" in vi1, out
        vi2 = next(line for line in out.splitlines() if line.startswith("VI_2 "))
        assert "FAULT" in vi2 and "tracker script chk_two" in vi2, out
        assert "script chk_two" in out and "DOWN" in out
        assert "[192.0.2.11]:tcp:8082" in out
        assert "instance VI_2 is FAULT" in out

        # --json: the same document, with health and problems, for scripts
        proc = _status_cli(node, "--json")
        assert proc.returncode == 1
        doc = json.loads(proc.stdout)
        assert doc["health"] == 1 and health(doc) == 1
        assert summary_line(doc).startswith("2 instances: 1 MASTER 1 FAULT")
        by_name = {i["name"]: i for i in doc["vrrp_instances"]}
        assert by_name["VI_1"]["master"] == h1.ip4
        assert by_name["VI_1"]["priority"] == 150
        assert by_name["VI_2"]["last_transition_reason"].startswith("tracker script chk_two")
        trackers = {(t["kind"], t["name"]): t for t in doc["trackers"]}
        assert trackers[("script", "chk_two")]["up"] is False
        assert trackers[("script", "chk_one")]["instances"] == ["VI_1"]

        # Everything as wanted: exit 0
        (d1 / "chk_two").touch()
        second = _listen(h1, 8082)
        _wait("VI_2 out of FAULT", lambda: _inst(node, "VI_2")["state"] != "FAULT", node)
        _wait("both real servers up", lambda: real_servers() == [True, True], node)
        assert _inst(node, "VI_2")["last_transition_reason"] == "fault cleared"
        proc = _status_cli(node)
        assert proc.returncode == 0, proc.stdout
        assert "All as wanted." in proc.stdout
        second.kill()

        # A tracker fails on the master: FAULT with the tracker named (status
        # and the log line's tail); the peer takes over on our priority-0 advert.
        node.mark()
        peer.mark()
        (d1 / "chk_one").unlink()
        node.wait_log("(VI_1) Entering FAULT STATE (tracker script chk_one", 10)
        peer.wait_log("(VI_1) Entering MASTER STATE", 10)
        assert _inst(node, "VI_1")["last_transition_reason"].startswith("tracker script chk_one")
        assert (
            _inst(peer, "VI_1")["last_transition_reason"]
            == f"priority 0 advert from {h1.ip4} (master resigned)"
        ), peer.tail()

        # Back up: we preempt; the peer says who took over and why
        (d1 / "chk_one").touch()
        peer.wait_log("(VI_1) Entering BACKUP STATE", 15)
        assert (
            _inst(peer, "VI_1")["last_transition_reason"]
            == f"advert from {h1.ip4} with higher priority 150"
        )
        assert _inst(peer, "VI_1")["master"] == h1.ip4
        # the same reasons reached the plugins, in StateEvent.detail
        lines = events.read_text().splitlines()
        assert "VI_2 FAULT tracker script chk_two down (failed (exited with status 1))" in lines
        assert "VI_2 BACKUP fault cleared" in lines
        assert any(line.startswith("VI_1 FAULT tracker script chk_one down") for line in lines)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.tail()}\n{peer.tail()}") from None
    finally:
        listener.kill()

    # The daemon gone: exit 2, one line, no traceback
    node.terminate()
    proc = _status_cli(node)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot reach pykeepalived" in proc.stderr


def test_pid_files_like_keepalived(lab: type[Lab], tmp_path: Path) -> None:
    """-p holds our pid (and -r while VRRP runs; -c only with virtual servers,
    as keepalived writes its children's); `pykeepalived reload` signals it; a
    live pid file makes a second daemon exit 0, as keepalived 2.2.7 does; a
    stale one is removed; all are removed at exit."""
    net = lab(1)
    (h1,) = net.hosts
    run = tmp_path / "run"
    run.mkdir()
    pid, vrrp_pid, chk_pid = run / "keepalived.pid", run / "vrrp.pid", run / "checkers.pid"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(
        "global_defs {\n    router_id pid\n}\n" + instance("VI_1", vips=(f"{VIP1}/24",))
    )
    log = tmp_path / "daemon.log"
    pid.write_text("999999\n")  # a dead pid: a stale file

    def start(*extra: str) -> subprocess.Popen[Any]:
        with open(log, "ab") as fh:
            return h1.popen(
                [
                    PYKEEPALIVED,
                    "-n",
                    "-l",
                    "-f",
                    str(conf),
                    "-p",
                    str(pid),
                    "-r",
                    str(vrrp_pid),
                    "-c",
                    str(chk_pid),
                    "--status-socket",
                    str(run / "s.sock"),
                    *extra,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    proc = start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Entering BACKUP STATE" not in log.read_text():
        time.sleep(0.1)
    text = log.read_text()
    assert f"Remove a zombie pid file {pid}" in text, text
    assert pid.read_text() == f"{proc.pid}\n"
    assert vrrp_pid.read_text() == f"{proc.pid}\n"
    assert not chk_pid.exists()  # no virtual server: keepalived starts no checker child

    # `pykeepalived reload` finds the daemon through the pid file
    ctl = subprocess.run(
        [PYKEEPALIVED, "reload", "-p", str(pid)], capture_output=True, text=True, timeout=30
    )
    assert ctl.returncode == 0, ctl.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Reloading configuration" not in log.read_text():
        time.sleep(0.1)
    assert "Reloading configuration" in log.read_text()

    # A second daemon refuses to run: ours and keepalived 2.2.7 alike (exit 0)
    second = start()
    assert second.wait(30) == 0
    assert "daemon is already running" in log.read_text()
    ka = h1.run(
        [
            KEEPALIVED,
            "-n",
            "-l",
            "-f",
            str(conf),
            "-p",
            str(pid),
            "-r",
            str(run / "ka-vrrp.pid"),
            "-c",
            str(run / "ka-chk.pid"),
        ],
        timeout=30,
    )
    assert ka.returncode == 0
    assert "daemon is already running" in ka.stdout + ka.stderr
    assert proc.poll() is None

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not pid.exists() and not vrrp_pid.exists()

    # -p given but nothing there: a clear message when reloading
    ctl = subprocess.run(
        [PYKEEPALIVED, "reload", "-p", str(pid)], capture_output=True, text=True, timeout=30
    )
    assert ctl.returncode == 2 and "no running daemon" in ctl.stderr


def test_interface_down_is_the_reason(lab: type[Lab], tmp_path: Path) -> None:
    """A tracked interface losing its carrier: FAULT, with the interface named."""
    net = lab(1)
    (h1,) = net.hosts
    h1.run(["ip", "link", "add", "t0", "type", "veth", "peer", "name", "t1"])
    h1.run(["ip", "link", "set", "t0", "up"])
    h1.run(["ip", "link", "set", "t1", "up"])
    node = PyNode(h1, tmp_path, "if")
    track = "    track_interface {\n        t0\n    }"
    node.start(
        "global_defs {\n    router_id if\n}\n"
        + instance("VI_1", state="MASTER", priority=150, vips=(f"{VIP1}/24",), extra=track)
    )
    try:
        _wait("VI_1 MASTER", lambda: _inst(node, "VI_1")["state"] == "MASTER", node)
        h1.run(["ip", "link", "set", "t1", "down"])  # t0 loses its carrier
        node.wait_log("(VI_1) Entering FAULT STATE (tracker interface t0 down", 10)
        assert _inst(node, "VI_1")["last_transition_reason"].startswith("tracker interface t0 down")
        proc = _status_cli(node)
        assert proc.returncode == 1
        assert "instance VI_1 is FAULT (tracker interface t0 down" in proc.stdout
        h1.run(["ip", "link", "set", "t1", "up"])
        node.wait_log("(VI_1) Entering BACKUP STATE (fault cleared)", 10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.tail()}") from None
