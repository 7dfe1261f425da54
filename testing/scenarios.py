"""End-to-end helpers: tracker scenarios through real daemons in a lab.

Used by ``tests/test_e2e_trackers.py``, ``tests/test_e2e_notify.py`` and
``bench/trackers.py``.  One *tracker case* is the same keepalived.conf
fragment for pykeepalived and for the reference keepalived, plus three
callables run against the tracked node: ``setup`` (make the tracker happy:
start the service, create the interface, write the file), ``fail`` (the
event: kill the service, set the link down, write a value) and ``recover``.

A :class:`Pair` is two VRRP nodes on ``h1``/``h2`` of a lab: ``h1`` has
priority 150 and the tracker, ``h2`` priority 100 and none, so a tracker
going down (weight -60, or weight 0 = FAULT) hands the VIP to ``h2`` and
its recovery hands it back by preemption.

Everything a case starts runs through ``host.popen`` (the lab kills it at
teardown) and everything it writes lives in the pair's work directory.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykeepalived.testing.daemons import KaNode, Node, PyNode, holders, wait_holder
from pykeepalived.testing.lab import Host, Lab

PRIO_TRACKED = 150
PRIO_PEER = 100
#: Generous bound for "event -> VIP on the other host" at advert_int 1:
#: tracker latency (<= 1 s script interval) + Master_Down_Interval (3.6 s).
MOVE_BOUND = 8.0


# -- per-node context ------------------------------------------------------------------
@dataclass
class Ctx:
    """What a case's callables get: the tracked host and a private directory."""

    host: Host
    dir: Path
    tag: str
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    def service_name(self) -> str:
        """A process name (comm, <= 15 chars) unique to this lab and host.

        All lab hosts share one PID namespace, so ``killall -0 NAME`` or a
        track_process would see another node's service of the same name.
        """
        return f"sv{self.tag[-4:]}{self.host.name}"[:15]

    def start_service(self) -> subprocess.Popen[Any]:
        """A long sleep whose comm is :meth:`service_name` (a copy of sleep)."""
        exe = self.dir / self.service_name()
        if not exe.exists():
            shutil.copy("/bin/sleep", exe)
        proc = self.host.popen([str(exe), "100000"])
        (self.dir / "service.pid").write_text(f"{proc.pid}\n")
        self.procs["service"] = proc
        return proc

    def stop_service(self) -> None:
        proc = self.procs.pop("service")
        proc.kill()
        proc.wait(5)


@dataclass
class TrackerCase:
    """One tracker kind: config fragments plus its event callables."""

    name: str
    #: Top-level definitions (``vrrp_script X {...}``), ``str.format``-ed with ``d``
    #: (the node directory) and ``svc`` (the service name).
    defs: str
    #: Lines inside the tracked node's ``vrrp_instance``.
    track: str
    setup: Callable[[Ctx], object]
    fail: Callable[[Ctx], object]
    recover: Callable[[Ctx], object]
    #: The instance is expected to enter FAULT (weight 0) rather than lose priority.
    faults: bool = False


def _noop(ctx: Ctx) -> None:
    pass


def _add_iface(ctx: Ctx) -> None:
    ctx.host.ip("link", "del", "trk0", check=False)
    ctx.host.ip("link", "add", "trk0", "type", "veth", "peer", "name", "trk0p")
    ctx.host.ip("link", "set", "trk0p", "up")
    ctx.host.ip("link", "set", "trk0", "up")


def _write_track_file(value: str) -> Callable[[Ctx], None]:
    def write(ctx: Ctx) -> None:
        # keepalived and pykeepalived both re-read on close-after-write (inotify).
        with open(ctx.dir / "track.val", "w") as f:
            f.write(value + "\n")

    return write


def tracker_cases() -> dict[str, TrackerCase]:
    """The tracker kinds of the seed scenarios, keyed by short name."""
    return {
        # The seed's `killall -0 haproxy`, with a per-node service name.
        "script": TrackerCase(
            "script",
            "vrrp_script chk_svc {{\n"
            '    script "/usr/bin/killall -0 {svc}"\n'
            "    interval 1\n    fall 1\n    rise 1\n    weight -60\n}}\n",
            "    track_script {\n        chk_svc\n    }\n",
            Ctx.start_service,
            Ctx.stop_service,
            Ctx.start_service,
        ),
        # A pidfile check through sh -c: keepalived's quoting of a nested
        # single-quoted argument; weight 0 -> FAULT.
        "script_fault": TrackerCase(
            "script_fault",
            "vrrp_script chk_pid {{\n"
            "    script \"/bin/sh -c 'kill -0 $(cat {d}/service.pid)'\"\n"
            "    interval 1\n    fall 1\n    rise 1\n}}\n",
            "    track_script {\n        chk_pid\n    }\n",
            Ctx.start_service,
            Ctx.stop_service,
            Ctx.start_service,
            faults=True,
        ),
        "process": TrackerCase(
            "process",
            "vrrp_track_process trk_svc {{\n    process {svc}\n    weight -60\n}}\n",
            "    track_process {\n        trk_svc\n    }\n",
            Ctx.start_service,
            Ctx.stop_service,
            Ctx.start_service,
        ),
        "interface": TrackerCase(
            "interface",
            "",
            "    track_interface {\n        trk0\n    }\n",
            _add_iface,
            lambda c: c.host.link_set("trk0", False),
            lambda c: c.host.link_set("trk0", True),
            faults=True,
        ),
        "file": TrackerCase(
            "file",
            "track_file trk_file {{\n    file {d}/track.val\n    weight 1\n}}\n",
            "    track_file {\n        trk_file\n    }\n",
            _write_track_file("0"),
            _write_track_file("-60"),
            _write_track_file("0"),
        ),
    }


# -- configuration ----------------------------------------------------------------------
def render(
    router_id: str,
    *,
    priority: int,
    state: str = "BACKUP",
    vrid: int = 51,
    vip: str = "192.0.2.100",
    defs: str = "",
    track: str = "",
    extra: str = "",
    global_extra: str = "",
    advert_int: float = 1,
) -> str:
    """A keepalived.conf both daemons accept (same text for each)."""
    return (
        "global_defs {\n"
        f"    router_id {router_id}\n"
        "    script_user root\n"
        f"{global_extra}"
        "}\n"
        f"{defs}"
        "vrrp_instance VI_1 {\n"
        f"    state {state}\n"
        "    interface eth0\n"
        f"    virtual_router_id {vrid}\n"
        f"    priority {priority}\n"
        f"    advert_int {advert_int:g}\n"
        "    authentication {\n        auth_type PASS\n        auth_pass e2e\n    }\n"
        f"    virtual_ipaddress {{\n        {vip}/24\n    }}\n"
        f"{track}{extra}"
        "}\n"
    )


# -- a tracked pair ------------------------------------------------------------------------
class Pair:
    """``tracked`` (priority 150 + tracker) and ``peer`` (priority 100)."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        case: TrackerCase,
        *,
        kind: str = "pyk",
        hosts: tuple[Host, Host] | None = None,
        vrid: int = 51,
        vip: str = "192.0.2.100",
    ) -> None:
        a, b = hosts if hosts is not None else (lab.hosts[0], lab.hosts[1])
        cls: type[Node] = PyNode if kind == "pyk" else KaNode
        self.kind = kind
        self.case = case
        self.vip = vip
        self.vrid = vrid
        self.hosts = [a, b]
        self.tracked = cls(a, workdir, f"{kind}-{case.name}-{a.name}")
        self.peer = cls(b, workdir, f"{kind}-{case.name}-{b.name}")
        self.ctx = Ctx(a, self.tracked.dir, lab.tag)

    def start(self, timeout: float = 15.0) -> None:
        self.case.setup(self.ctx)
        defs = self.case.defs.format(d=self.ctx.dir, svc=self.ctx.service_name())
        self.tracked.start(
            render(
                self.tracked.label,
                priority=PRIO_TRACKED,
                state="MASTER",
                vrid=self.vrid,
                vip=self.vip,
                defs=defs,
                track=self.case.track,
            )
        )
        # The tracked node wins first, alone: started together, a peer whose interpreter
        # came up faster on a busy machine could win the start-up election (both begin
        # in BACKUP; its Master_Down_Interval runs out first) and count one MASTER more.
        wait_holder([self.tracked.host], self.vip, self.tracked.host.name, timeout)
        self.peer.start(render(self.peer.label, priority=PRIO_PEER, vrid=self.vrid, vip=self.vip))
        self.peer.wait_log("Entering BACKUP STATE", timeout)
        wait_holder(self.hosts, self.vip, self.tracked.host.name, timeout)

    def move(self, action: Callable[[Ctx], None], to: Host, timeout: float = 15.0) -> float:
        """Run ``action``; seconds until exactly ``to`` holds the VIP."""
        t0 = time.monotonic()
        action(self.ctx)
        wait_holder(self.hosts, self.vip, to.name, timeout, interval=0.01)
        return time.monotonic() - t0

    def stop(self) -> None:
        """Stop both daemons (SIGTERM: VIPs removed) and the tracked service."""
        for node in (self.tracked, self.peer):
            if node.running():
                try:
                    node.terminate(10)
                except subprocess.TimeoutExpired:
                    node.kill()
        for proc in self.ctx.procs.values():
            kill_quietly(proc)
        self.ctx.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {n.label}\n{n.tail(40)}" for n in (self.tracked, self.peer))


# -- advert capture ----------------------------------------------------------------------
_CAPTURE = r"""
import json, select, socket, sys, time
src, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
print(json.dumps({"ready": time.monotonic()}), flush=True)
end = time.monotonic() + seconds
while (left := end - time.monotonic()) > 0:
    if not select.select([s], [], [], left)[0]:
        break
    data, addr = s.recvfrom(2048)
    now = time.monotonic()
    if addr[0] != src:
        continue
    ihl = (data[0] & 0x0F) * 4
    v = data[ihl:]
    print(json.dumps({"t": now, "vrid": v[1], "prio": v[2]}), flush=True)
"""


def capture_adverts(host: Host, src: str, seconds: float) -> list[dict[str, Any]]:
    """VRRP adverts from ``src`` received on ``host`` during ``seconds`` (blocking).

    A raw IPPROTO_VRRP socket in the host's namespace; each advert is
    ``{"t": monotonic, "vrid": ..., "prio": ...}`` in arrival order.
    """
    proc = host.popen(
        [sys.executable, "-I", "-S", "-c", _CAPTURE, src, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=seconds + 10)
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in rows if "t" in r]


def gaps(adverts: list[dict[str, Any]]) -> list[float]:
    ts = [a["t"] for a in adverts]
    return [b - a for a, b in itertools.pairwise(ts)]


# -- an entry-point plugin without pip ---------------------------------------------------
def fake_distribution(root: Path, name: str, module_source: str, entry_points: str) -> Path:
    """Make ``root`` importable as an installed distribution ``name``.

    Writes ``<name>.py`` and ``<name>-0.dist-info/{METADATA,entry_points.txt}``:
    with ``root`` on ``PYTHONPATH`` a daemon discovers the entry points exactly
    as for a pip-installed plugin.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def with_env(node: Node, env: dict[str, str]) -> None:
    """Start ``node``'s daemon with extra environment variables."""
    original = node.host.popen

    def popen(cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        kw["env"] = {**os.environ, **env, **kw.get("env", {})}
        return original(cmd, **kw)

    node.host = _HostProxy(node.host, popen)  # type: ignore[assignment]


class _HostProxy:
    def __init__(self, host: Host, popen: Callable[..., subprocess.Popen[Any]]) -> None:
        self._host = host
        self.popen = popen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


def kill_quietly(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(5)


__all__ = [
    "MOVE_BOUND",
    "PRIO_PEER",
    "PRIO_TRACKED",
    "Ctx",
    "Pair",
    "TrackerCase",
    "capture_adverts",
    "fake_distribution",
    "gaps",
    "holders",
    "kill_quietly",
    "render",
    "tracker_cases",
    "with_env",
]


_TRACKER_PLUGIN = '''
"""A test tracker plugin of family {family!r}: its run() is the case under test."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from pykeepalived import hookimpl
from pykeepalived.core.plugin.base import Tracker, TrackStatus
from pykeepalived.core.config.grammar import track_block_kw
from pykeepalived.core.config.schema import BlockSpec, Kw


class E2ETracker(Tracker):
    family = {family!r}
    config_key = {family!r}
    value_based = False
    runs = 0

{run}


def _definition(node, ctx):
    return SimpleNamespace(name=node.args[0])


@hookimpl
def pykeepalived_register_keywords(grammar):
    grammar.add(
        "top",
        Kw({family!r}, _definition, 1, 1, block=BlockSpec({family!r}),
           needs_block=True, multiple=True),
    )
    grammar.add("vrrp_instance", track_block_kw("track_" + {family!r}, {family!r}))


@hookimpl
def pykeepalived_register_trackers():
    return {{{family!r}: E2ETracker}}
'''


def tracker_plugin(family: str, run_method: str) -> str:
    """Source of a one-tracker plugin module; ``run_method`` is the body of
    the class from ``async def run`` on (indented by four spaces)."""
    return _TRACKER_PLUGIN.format(family=family, run=run_method)
