"""systemd's notify protocol, heard by a real AF_UNIX datagram listener.

The unit tests speak to a listener bound where ``$NOTIFY_SOCKET`` points (a
path, and an abstract ``@name``), which is all systemd reads.  The lab test
runs the real daemon in a namespace with ``NOTIFY_SOCKET`` and
``WATCHDOG_USEC`` set as systemd sets them for ``Type=notify`` +
``WatchdogSec=``, and checks READY / RELOADING + MONOTONIC_USEC / READY /
STATUS / WATCHDOG / STOPPING, and that the pings stop while the VRRP loop is
wedged: a test plugin posts a blocking ``time.sleep`` onto that loop (the
loop of the thread named ``vrrp``), the honest stand-in for a stuck engine.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pykeepalived.core.shell.sdnotify import (
    SdNotifier,
    WatchdogPinger,
    monotonic_usec,
    socket_address,
    watchdog_interval,
)
from pykeepalived.testing.daemons import PyNode, wait_holder
from pykeepalived.testing.lab import Lab
from pykeepalived.testing.scenarios import fake_distribution, render, tracker_plugin, with_env


class Listener:
    """What systemd does with NOTIFY_SOCKET: bind a datagram socket, read."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str, since: int = 0) -> list[tuple[float, dict[str, str]]]:
        return [m for m in self.messages[since:] if key in m[1]]

    def wait(self, key: str, timeout: float, since: int = 0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_key(key, since)
            if found:
                return found[0][1]
            time.sleep(0.05)
        raise AssertionError(f"no {key} within {timeout}s; got {self.messages[since:]}")

    def wait_count(self, key: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.with_key(key)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} {key} within {timeout}s: {self.messages}")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="pyk-sd-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- the protocol -------------------------------------------------------------------------


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address("") is None
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval_rules() -> None:
    me = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}, me) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(me)}, me) == 5.0
    # meant for another process (sd_watchdog_enabled(3)): no pings
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, me) is None
    assert watchdog_interval({}, me) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, me) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}, me) is None


def test_messages_reach_a_path_socket_and_env_is_cleared(short_dir: Path) -> None:
    path = str(short_dir / "notify")
    listener = Listener(path)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "OTHER": "x"}
    try:
        sd = SdNotifier(env)
        # children (notify scripts) must not inherit the daemon's socket
        assert env == {"OTHER": "x"}
        assert sd.enabled and sd.watchdog_interval == 1.0
        before = monotonic_usec()
        sd.ready("1 instance: 1 BACKUP")
        sd.reloading()
        sd.status("1 instance: 1 MASTER")
        sd.status("1 instance: 1 MASTER")  # unchanged: not sent again
        sd.watchdog()
        sd.stopping()
        sd.close()
        listener.wait("STOPPING", 5)
    finally:
        listener.close()
    msgs = [m for _, m in listener.messages]
    assert msgs[0] == {"READY": "1", "STATUS": "1 instance: 1 BACKUP"}
    assert msgs[1]["RELOADING"] == "1"
    assert before <= int(msgs[1]["MONOTONIC_USEC"]) <= monotonic_usec()
    assert msgs[2] == {"STATUS": "1 instance: 1 MASTER"}
    assert msgs[3] == {"WATCHDOG": "1"}
    assert msgs[4]["STOPPING"] == "1"
    assert len(msgs) == 5


def test_same_datagrams_as_systemd_notify(short_dir: Path) -> None:
    """systemd's own client is the reference for the bytes on the wire."""

    def raw(send: Callable[[str], None]) -> bytes:
        path = str(short_dir / "raw")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            send(path)
            data = sock.recv(4096)
        os.unlink(path)
        return data

    def theirs(*args: str) -> Callable[[str], None]:
        def send(path: str) -> None:
            subprocess.run(
                ["systemd-notify", "--no-block", *args],
                env={**os.environ, "NOTIFY_SOCKET": path},
                check=True,
                timeout=30,
            )

        return send

    def ours(call: Callable[[SdNotifier], None]) -> Callable[[str], None]:
        return lambda path: call(SdNotifier({"NOTIFY_SOCKET": path}))

    summary = "3 instances: 2 MASTER 1 BACKUP; 2 virtual servers, 5/6 real servers up"
    assert raw(theirs("--ready", f"--status={summary}")) == raw(ours(lambda n: n.ready(summary)))
    assert raw(theirs("WATCHDOG=1")) == raw(ours(lambda n: n.watchdog()))
    assert raw(theirs(f"STATUS={summary}")) == raw(ours(lambda n: n.status(summary)))


def test_abstract_socket_and_no_socket() -> None:
    name = f"pyk-sd-test-{os.getpid()}"
    listener = Listener(b"\0" + name.encode())
    try:
        sd = SdNotifier({"NOTIFY_SOCKET": "@" + name})
        sd.ready()
        assert listener.wait("READY", 5) == {"READY": "1"}
    finally:
        listener.close()
    quiet = SdNotifier({})
    assert not quiet.enabled
    assert quiet.send("READY=1") is False
    # a listener that went away: no exception, the daemon carries on
    gone = SdNotifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert gone.send("READY=1") is False


def test_watchdog_pinger_runs_on_its_loop(short_dir: Path) -> None:
    import asyncio

    path = str(short_dir / "notify")
    listener = Listener(path)
    sd = SdNotifier({"NOTIFY_SOCKET": path})

    async def run() -> None:
        pinger = WatchdogPinger(sd, 0.05)
        pinger.start(asyncio.get_running_loop())
        await asyncio.sleep(0.6)
        pinger.stop()

    try:
        asyncio.run(run())
        count = len(listener.with_key("WATCHDOG"))
        time.sleep(0.3)
        assert count >= 3
        assert len(listener.with_key("WATCHDOG")) == count  # stopped means stopped
    finally:
        listener.close()


# -- the real daemon ------------------------------------------------------------------------

BLOCK_VRRP_LOOP = tracker_plugin(
    "wdblock",
    textwrap.indent(
        textwrap.dedent(
            """\
            async def run(self) -> None:
                import gc, os, threading
                self.report(TrackStatus(up=True))
                trigger = os.environ["PYK_TEST_BLOCK_FILE"]
                while not os.path.exists(trigger):
                    await asyncio.sleep(0.05)
                os.unlink(trigger)
                vrrp = next(t for t in threading.enumerate() if t.name == "vrrp")
                loops = [
                    o for o in gc.get_objects()
                    if isinstance(o, asyncio.AbstractEventLoop)
                    and getattr(o, "_thread_id", None) == vrrp.ident
                ]
                seconds = float(os.environ["PYK_TEST_BLOCK_SECONDS"])
                print(f"test plugin: blocking the VRRP loop for {seconds}s", flush=True)
                loops[0].call_soon_threadsafe(time.sleep, seconds)
                while True:
                    await asyncio.sleep(3600)
            """
        ),
        "    ",
    ),
)


@pytest.mark.netns
def test_daemon_speaks_notify_protocol(lab: type[Lab], tmp_path: Path, short_dir: Path) -> None:
    net = lab(2)
    h1, h2 = net.hosts
    notify_path = str(short_dir / "notify")
    trigger = short_dir / "block"
    listener = Listener(notify_path)
    plugin = fake_distribution(
        tmp_path / "plugin",
        "pka_wdblock",
        BLOCK_VRRP_LOOP,
        "[pykeepalived]\nwdblock = pka_wdblock\n",
    )
    node = PyNode(h1, tmp_path, "sd")
    peer = PyNode(h2, tmp_path, "peer")
    with_env(
        node,
        {
            "NOTIFY_SOCKET": notify_path,
            # systemd's WatchdogSec=1s: a ping every 0.5 s
            "WATCHDOG_USEC": "1000000",
            "PYTHONPATH": str(plugin),
            "PYK_TEST_BLOCK_FILE": str(trigger),
            "PYK_TEST_BLOCK_SECONDS": "7",
        },
    )
    defs = "wdblock anything {\n}\n"
    track = "    track_wdblock {\n        anything weight 0\n    }\n"
    try:
        node.start(render("sd", priority=150, state="MASTER", defs=defs, track=track))
        ready = listener.wait("READY", 20)
        assert ready.get("STATUS", "").startswith("1 instance: 1 "), ready
        wait_holder(net.hosts, "192.0.2.100", "h1", 15)
        # STATUS follows the transition to MASTER
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            statuses = [m["STATUS"] for _, m in listener.with_key("STATUS")]
            if statuses and statuses[-1] == "1 instance: 1 MASTER":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no MASTER status: {listener.messages}")
        # pings arrive, every half WATCHDOG_USEC
        listener.wait_count("WATCHDOG", 3, 10)

        # SIGHUP: RELOADING=1 with this host's CLOCK_MONOTONIC, then READY=1
        mark = len(listener.messages)
        before = monotonic_usec()
        node.signal(signal.SIGHUP)
        reloading = listener.wait("RELOADING", 10, since=mark)
        assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec()
        after = listener.messages.index(
            next(m for m in listener.messages[mark:] if "RELOADING" in m[1])
        )
        listener.wait("READY", 10, since=after + 1)

        # A wedged VRRP loop: the pings stop (and the peer becomes MASTER,
        # the proof that the loop really stood still); afterwards they resume.
        peer.start(render("peer", priority=100))
        peer.wait_log("Entering BACKUP STATE", 10)
        mark = len(listener.messages)
        trigger.write_text("")
        node.wait_log("blocking the VRRP loop", 10)
        t_block = time.monotonic()
        peer.wait_log("Entering MASTER STATE", 15)  # our adverts stopped
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until the pings resume
            if any(t > t_block + 5.0 for t, _ in listener.with_key("WATCHDOG", mark)):
                break
            time.sleep(0.1)
        pings = [t for t, _ in listener.with_key("WATCHDOG")]
        # (one ping may still be on its way while the blocking call is queued)
        during = [t for t in pings if t_block + 1.0 < t < t_block + 5.0]
        assert during == [], (pings, t_block)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps, default=0) >= 4.0, (gaps, t_block, listener.messages[mark - 3 :])
        # and they come back once the loop turns again
        listener.wait_count("WATCHDOG", len(pings) + 2, 10)

        mark = len(listener.messages)
        assert node.terminate() == 0
        stopping = listener.wait("STOPPING", 5, since=mark)
        assert stopping["STOPPING"] == "1"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.tail()}\n{peer.tail()}") from None
    finally:
        listener.close()
