"""A soak: three pykeepalived nodes under a seeded schedule of faults, with the
invariants of issue 12 checked on the whole run.

The lab: hosts h1, h2, h3 on one bridge, each running pykeepalived with two
VRRPv3 instances (VI_1 on VRID 51 with VIP 192.0.2.100, h1 > h2 > h3; VI_2 on
VRID 52 with VIP 192.0.2.101, h2 > h3 > h1), a ``track_file`` on both
instances, a ``notify_master`` script that hangs while a flag file exists, a
generic ``notify`` script, ``notify_fifo`` with a reader script, and a small
third-party plugin (a real entry point in the group ``pykeepalived``, put on
the daemons' PYTHONPATH) whose hooks raise on every event and every
(re)configuration.

The faults, one at a time, in seeded random order (every kind once per round):

* ``loss``: nftables ``numgen random`` drops a share of one host's incoming
  VRRP for a few seconds (netem is not available here);
* ``flap``: one host's ``eth0`` down for a moment, then up;
* ``kill``: ``kill -9`` of a daemon (h1 or h2: h3 is the witness whose
  resources are watched over the whole run), restarted after a pause;
* ``sighup``: a storm of SIGHUP reloads, half of them with the same
  configuration as the one running, half changing priorities and a VIP;
* ``tracker``: the ``track_file`` of one host flapped (weight -60);
* ``hang``: the ``notify_master`` script of the VI_1 master hangs (killed
  after ``script_timeout``) while its tracker flaps, so it becomes MASTER
  again with the script hanging.

Between faults the harness waits until every VIP has one holder again.

What is recorded: every add and delete of a VIP on each host, from an
rtnetlink listener in the host stamped with CLOCK_MONOTONIC (the clock of
``time.monotonic()`` here), so holder times are exact, not polled; when each
daemon was started, killed, and each link went down and up; every daemon's
log, notify script calls and FIFO lines (both tagged with the daemon's pid);
RSS, open fds and asyncio tasks of each daemon every two seconds.

The invariants (:meth:`Soak.check`):

* a *holder* of a VIP is a host that has it, whose daemon is alive and whose
  link is up (a killed daemon leaves its VIPs behind: that host answers for
  nothing until it is restarted, and keepalived behaves the same);
* two holders: a node that took over wrongly (adverts lost) yields on the
  next advert of the better master, and the protocol lets a backup wait one
  Master_Down_Interval before it takes over; the bound for two holders is
  one Master_Down_Interval plus ``margin``;
* no holder: while at least one host is eligible (daemon alive, link up),
  at most Master_Down_Interval plus ``margin``;
* each daemon life's state changes (``Entering X STATE`` log lines) equal
  its notify script calls and its FIFO lines, in the same order; a life
  ended by ``kill -9`` may lose the tail that was still queued (counted);
* the witness's RSS, open fds and asyncio tasks at the end of the run, in a
  quiet moment, no higher than at the first baseline (a quiet moment after
  ``baseline_at`` seconds) plus the stated bounds.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykeepalived.testing.daemons import PyNode, global_defs, instance
from pykeepalived.testing.lab import Host, Lab
from pykeepalived.testing.watch import Watcher

VIPS = {"VI_1": "192.0.2.100", "VI_2": "192.0.2.101"}
#: Added to VI_2 by the "changed" configurations of a SIGHUP storm.
EXTRA_VIP = "192.0.2.150"
#: Priorities by host; VI_1 prefers h1, VI_2 prefers h2.
PRIORITIES = {
    "VI_1": {"h1": 150, "h2": 100, "h3": 50},
    "VI_2": {"h1": 50, "h2": 150, "h3": 100},
}
VRIDS = {"VI_1": 51, "VI_2": 52}
#: track_file weight: a tracked 1 takes 60 off, so the master of either
#: instance falls below its first backup.
TRACK_WEIGHT = -60
#: The host whose daemon is never killed: its resources are compared over the run.
WITNESS = "h3"
FAULTS = ("loss", "flap", "kill", "sighup", "tracker", "hang")
PLUGIN_NAME = "soak_raiser"

#: The states of ``Entering X STATE``; the FIFO also carries events that are
#: not transitions (MASTER_RX_LOWER_PRI, SPLIT_BRAIN...).
STATES = frozenset({"MASTER", "BACKUP", "FAULT", "STOP", "DELETED"})
#: A MASTER restarted by a reload that changed its priority or VIPs (see
#: Report.reload_restarts).
RELOAD_RESTART = "Entering STOP STATE (reload: configuration changed)"
ENTERING = re.compile(r"\((VI_\d)\) Entering (\w+) STATE")
PLUGIN_FAILED = f"plugin {PLUGIN_NAME}"
HANG_KILLED = "timed out after"

NOTIFY = """#!/bin/sh
# $PPID is the daemon that ran us: it tells the daemon's lives apart
echo "$PPID $*" >> {out}
"""
NOTIFY_MASTER = """#!/bin/sh
# hangs while the flag exists: the daemon must kill it after script_timeout
if [ -e {flag} ]; then exec sleep 60; fi
"""
FIFO_READER = """#!/bin/sh
while read -r line; do echo "$PPID $line" >> {out}; done < "$1"
"""
PLUGIN = '''"""A third-party plugin that raises from every hook (bench/soak)."""
from pykeepalived.api import hookimpl


@hookimpl
def pykeepalived_configure(config):
    raise RuntimeError("soak: configure raises on purpose")


@hookimpl
def pykeepalived_state_change(event):
    raise RuntimeError("soak: state_change raises on purpose")
'''


@dataclass
class Params:
    """One soak's length, timing and bounds."""

    seconds: float = 180.0
    seed: int = 1
    #: Rounds of faults (each kind once per round, in seeded order) instead of
    #: ``seconds``: the test's way to have each kind exactly once.
    rounds: int | None = None
    advert_int: float = 0.2
    #: Added to Master_Down_Interval for the dual- and no-holder bounds:
    #: scheduling delays of a loaded machine, not protocol time.
    margin: float = 1.0
    #: When the resource baseline is taken (a quiet moment after this).
    baseline_at: float = 60.0
    #: Seconds without faults before the baseline and the final sample.
    quiet: float = 4.0
    script_timeout: float = 2.0
    reloads: int = 100
    #: Seconds between two SIGHUPs of a storm.
    reload_gap: float = 0.03
    loss_seconds: tuple[float, float] = (3.0, 8.0)
    loss_percent: tuple[int, int] = (10, 40)
    flap_seconds: tuple[float, float] = (1.0, 3.0)
    dead_seconds: tuple[float, float] = (0.5, 2.0)
    tracker_flips: tuple[int, int] = (4, 8)
    gap_seconds: tuple[float, float] = (0.5, 2.0)
    #: Growth allowed from the baseline to the end, on the witness.
    rss_growth_kib: int = 4096
    fd_growth: int = 0
    task_growth: int = 0
    #: Every other kill -9 restarts the daemon with its tracker down, so it
    #: must start as a backup and drop the VIPs its killed run left behind.
    restart_as_backup: bool = True
    #: Seconds a VIP may take to have one holder again after a fault.
    settle_timeout: float = 20.0

    @property
    def master_down_interval(self) -> float:
        """RFC 5798 6.1: 3 x advert_int + skew, skew at its largest here
        (the lowest priority a backup runs with, 1 after a tracker)."""
        return 3 * self.advert_int + (256 - 1) / 256 * self.advert_int

    @property
    def dual_bound(self) -> float:
        return self.master_down_interval + self.margin

    @property
    def zero_bound(self) -> float:
        return self.master_down_interval + self.margin


@dataclass
class Life:
    """One run of one daemon, from start to kill (or the end of the soak)."""

    node: str
    pid: int
    started: float
    log_from: int
    log_to: int | None = None
    killed: bool = False


@dataclass
class Sample:
    t: float
    node: str
    pid: int
    rss_kib: int
    fds: int
    tasks: int | None


@dataclass
class Report:
    params: Params
    elapsed: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    reloads: int = 0
    transitions: int = 0
    #: Two holders, one of them a restarted daemon with the VIP its killed
    #: run left (kept apart: see the soak's findings in docs/reliability.md).
    max_dual: float = 0.0
    max_dual_inherited: float = 0.0
    max_zero: float = 0.0
    dual_episodes: int = 0
    zero_episodes: int = 0
    notify_checked: int = 0
    lost_to_kill: int = 0
    plugin_raised: int = 0
    hangs_killed: int = 0
    #: Instances a reload stopped and started again (priority or VIPs changed).
    #: keepalived 2.2.7 keeps an instance matched by VRID, family, interface
    #: and unicast across a reload, MASTER included, and diffs its VIPs
    #: (vrrp.c clear_diff_vrrp, restore_vrrp_state): it would count 0 here.
    reload_restarts: int = 0
    baseline: Sample | None = None
    final: Sample | None = None
    violations: list[str] = field(default_factory=list)

    def table(self) -> str:
        p = self.params
        rows: list[tuple[str, str]] = [
            ("run", f"{self.elapsed:.0f} s, seed {p.seed}, advert_int {p.advert_int:g} s"),
        ]
        for kind in FAULTS:
            rows.append((f"faults: {kind}", str(self.faults.get(kind, 0))))
        rows += [
            ("SIGHUP reloads sent", str(self.reloads)),
            ("state transitions (log lines)", str(self.transitions)),
            (
                "max dual-holder time",
                f"{self.max_dual:.3f} s in {self.dual_episodes} episodes"
                f" (bound {p.dual_bound:.2f} s)",
            ),
            (
                "  with a VIP left by kill -9",
                f"{self.max_dual_inherited:.3f} s (keepalived removes it at start)",
            ),
            (
                "max no-holder time",
                f"{self.max_zero:.3f} s in {self.zero_episodes} episodes"
                f" (bound {p.zero_bound:.2f} s)",
            ),
            (
                "notify/FIFO/log in order",
                f"{self.notify_checked} transitions checked,"
                f" {self.lost_to_kill} queued ones lost to kill -9",
            ),
            (
                "instances restarted by a reload",
                f"{self.reload_restarts} (keepalived 2.2.7 keeps their state: 0)",
            ),
            ("plugin hook raised (logged)", str(self.plugin_raised)),
            ("hung notify scripts killed", str(self.hangs_killed)),
        ]
        for label, s in (("at baseline", self.baseline), ("at end", self.final)):
            if s is not None:
                rows.append(
                    (
                        f"{s.node} {label} ({s.t:.0f} s)",
                        f"RSS {s.rss_kib / 1024:.1f} MiB, {s.fds} fds, {s.tasks} asyncio tasks",
                    )
                )
        rows.append(
            (
                "growth bound",
                f"RSS +{p.rss_growth_kib // 1024} MiB, fds +{p.fd_growth}, tasks +{p.task_growth}",
            )
        )
        rows.append(("violations", str(len(self.violations))))
        width = max(len(k) for k, _ in rows)
        out = [f"{k:<{width}}  {v}" for k, v in rows]
        out += [f"  VIOLATION: {v}" for v in self.violations]
        return "\n".join(out)


# -- nodes ---------------------------------------------------------------------------


class SoakNode(PyNode):
    """A PyNode whose daemon sees the raising plugin on its PYTHONPATH."""

    def __init__(self, host: Host, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(host, workdir)
        self.env = env

    def start(self, config: str) -> SoakNode:
        self.write(config)
        self.mark()
        with open(self.log, "ab") as logf:
            self.proc = self.host.popen(
                self.argv(), stdout=logf, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def write(self, config: str) -> None:
        """Atomically (a new file renamed over the old): a SIGHUP still being
        handled must not read a half-written file (it would remove instances)."""
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(config)
        os.replace(tmp, self.conf)

    @property
    def log_offset(self) -> int:
        return self._log_offset


def write_plugin(root: Path) -> Path:
    """A distribution on disk: the module plus its dist-info with the entry point."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{PLUGIN_NAME}.py").write_text(PLUGIN)
    info = root / f"{PLUGIN_NAME}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN_NAME}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pykeepalived]\n{PLUGIN_NAME} = {PLUGIN_NAME}\n")
    return root


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the soak ------------------------------------------------------------------------


class Soak:
    """Build the lab's daemons, run the faults, check the invariants."""

    def __init__(
        self, lab: Lab, workdir: Path, params: Params, say: Callable[[str], None] | None = None
    ) -> None:
        self.lab = lab
        self.p = params
        self.rng = random.Random(params.seed)
        self.say = say or (lambda _msg: None)
        self.workdir = workdir
        plugin_dir = write_plugin(workdir / "plugin")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(plugin_dir), *filter(None, [env.get("PYTHONPATH")])]
        )
        self.hosts = {h.name: h for h in lab.hosts[:3]}
        self.nodes = {name: SoakNode(h, workdir, env) for name, h in self.hosts.items()}
        self.watchers: dict[str, Watcher] = {}
        self.lives: list[Life] = []
        #: (t, host, alive) and (t, host, link up)
        self.alive_events: list[tuple[float, str, bool]] = []
        self.link_events: list[tuple[float, str, bool]] = []
        self.samples: list[Sample] = []
        self.report = Report(params)
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._sample_lock = threading.Lock()
        self.t0 = 0.0
        #: Quiet moments: (label, t_from, t_to)
        self.quiet_windows: list[tuple[str, float, float]] = []

    # -- configuration -------------------------------------------------------------

    def config(self, name: str, changed: bool = False) -> str:
        node = self.nodes[name]
        d = node.dir
        fifo_reader = _script(d / "fifo_reader.sh", FIFO_READER.format(out=d / "fifo.out"))
        notify = _script(d / "notify.sh", NOTIFY.format(out=d / "notify.out"))
        notify_master = _script(d / "notify_master.sh", NOTIFY_MASTER.format(flag=d / "hang"))
        conf = global_defs(
            name,
            f"    script_timeout {self.p.script_timeout:g}\n"
            f"    notify_fifo {d / 'notify.fifo'}\n"
            f"    notify_fifo_script {fifo_reader}\n",
        )
        conf += f'track_file trk {{\n    file "{d / "trk"}"\n}}\n'
        for inst, vip in VIPS.items():
            prio = PRIORITIES[inst][name] - (5 if changed else 0)
            vips = [f"{vip}/24"]
            if changed and inst == "VI_2":
                vips.append(f"{EXTRA_VIP}/24")
            conf += instance(
                inst,
                vrid=VRIDS[inst],
                priority=prio,
                version=3,
                advert_int=self.p.advert_int,
                vips=vips,
                extra=(
                    f"    track_file {{\n        trk weight {TRACK_WEIGHT}\n    }}\n"
                    f'    notify_master "{notify_master}"\n'
                    f'    notify "{notify}"'
                ),
            )
        return conf

    # -- lifecycle -----------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self.t0 = time.monotonic()
        for name, host in self.hosts.items():
            self.watchers[name] = Watcher(host, adverts=False)
            self.link_events.append((time.monotonic(), name, True))
        for name in self.nodes:
            (self.nodes[name].dir / "trk").write_text("0\n")
            self._start_daemon(name)
        for name in self.nodes:
            self.nodes[name].status(timeout=30.0)
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True, name="soak-sample")
        self._sampler.start()
        self.settle()

    def _start_daemon(self, name: str) -> None:
        node = self.nodes[name]
        node.start(self.config(name))
        t = time.monotonic()
        self.lives.append(Life(name, node.pid, t, node.log_offset))
        self.alive_events.append((t, name, True))

    def _kill_daemon(self, name: str) -> None:
        node = self.nodes[name]
        t = time.monotonic()
        node.kill()
        self.alive_events.append((t, name, False))
        life = self.current_life(name)
        life.killed = True
        life.log_to = len(node.text())

    def current_life(self, name: str) -> Life:
        return [lf for lf in self.lives if lf.node == name][-1]

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(10)
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.terminate()

    # -- observation ---------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stop.wait(2.0):
            self.sample_all()

    def sample_all(self) -> None:
        # one sampler at a time: another's status connection would count as
        # an open fd and an asyncio task of the daemon
        with self._sample_lock:
            self._sample_all()

    def _sample_all(self) -> None:
        for name, node in self.nodes.items():
            if not node.running():
                continue
            try:
                pid = node.pid
                rss, fds = rss_kib(pid), open_fds(pid)
                tasks = node.status(timeout=5.0).get("asyncio_tasks")
            except (OSError, ValueError):
                continue
            self.samples.append(Sample(self.now(), name, pid, rss, fds, tasks))

    def holders(self, vip: str) -> list[str]:
        """Hosts that hold ``vip`` now (see the module doc)."""
        return [
            n
            for n in self.nodes
            if self.nodes[n].running() and self._link_up(n) and self.watchers[n].has_addr(vip)
        ]

    def _link_up(self, name: str) -> bool:
        return [up for _, n, up in self.link_events if n == name][-1]

    def settle(self) -> None:
        """Wait until every VIP is held by its preferred master alone (every
        fault is undone by then, and preemption is on): protocol time."""
        want = {vip: [max(PRIORITIES[i], key=PRIORITIES[i].__getitem__)] for i, vip in VIPS.items()}
        deadline = time.monotonic() + self.p.settle_timeout
        while time.monotonic() < deadline:
            if all(self.holders(v) == want[v] for v in VIPS.values()):
                return
            time.sleep(0.05)
        got = {v: self.holders(v) for v in VIPS.values()}
        self.report.violations.append(
            f"{self.now():.1f} s: not back to the preferred masters"
            f" within {self.p.settle_timeout:g} s: {got}"
        )

    def quiet(self, label: str) -> None:
        """No faults for a while; sample everything at its end."""
        self.settle()
        self.say(f"{self.now():6.1f} s  quiet for {self.p.quiet:g} s ({label})")
        t_from = self.now()
        time.sleep(self.p.quiet)
        self.wait_notified(self.p.script_timeout * 4 + 10)
        self.sample_all()
        self.quiet_windows.append((label, t_from, self.now()))

    # -- faults --------------------------------------------------------------------

    def run(self) -> Report:
        """The faults until ``seconds`` have passed, then the checks.  A
        daemon that does not come up (it crashed at start) ends the faults
        with a violation naming it, and the checks still run."""
        try:
            self.start()
            self._faults()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            dead = [
                f"{n}:\n{node.tail(15)}" for n, node in self.nodes.items() if not node.running()
            ]
            self.report.violations.append(
                f"{self.now():.1f} s: the soak stopped: {type(exc).__name__}: {exc}"
                + "".join(f"\n  daemon not running on {d}" for d in dead)
            )
        self.report.elapsed = self.now()
        self.check()
        return self.report

    def _faults(self) -> None:
        baseline_taken = False
        end = self.p.seconds
        rounds = 0
        while (self.now() < end) if self.p.rounds is None else (rounds < self.p.rounds):
            rounds += 1
            for kind in self.rng.sample(FAULTS, len(FAULTS)):
                if self.p.rounds is None and self.now() >= end:
                    break
                if not baseline_taken and self.now() >= self.p.baseline_at:
                    self.quiet("baseline")
                    baseline_taken = True
                self.fault(kind)
                self.settle()
                time.sleep(self.rng.uniform(*self.p.gap_seconds))
        if not baseline_taken:
            self.quiet("baseline")
        self.quiet("end")

    def fault(self, kind: str) -> None:
        self.report.faults[kind] = self.report.faults.get(kind, 0) + 1
        getattr(self, f"fault_{kind}")()

    def _pick(self, names: list[str] | None = None) -> str:
        return self.rng.choice(names or sorted(self.nodes))

    def fault_loss(self) -> None:
        name = self._pick()
        pct = self.rng.randint(*self.p.loss_percent)
        secs = self.rng.uniform(*self.p.loss_seconds)
        self.say(f"{self.now():6.1f} s  loss {pct}% of VRRP into {name} for {secs:.1f} s")
        self.hosts[name].drop_random(pct)
        time.sleep(secs)
        self.hosts[name].clear_drop()

    def fault_flap(self) -> None:
        name = self._pick()
        secs = self.rng.uniform(*self.p.flap_seconds)
        self.say(f"{self.now():6.1f} s  link of {name} down for {secs:.1f} s")
        self.link_events.append((time.monotonic(), name, False))
        self.hosts[name].link_set("eth0", False)
        time.sleep(secs)
        self.hosts[name].link_set("eth0", True)
        self.link_events.append((time.monotonic(), name, True))

    def fault_kill(self) -> None:
        """kill -9, then a restart; every other time the daemon comes back
        with its tracker down, so it must start as a backup and the VIPs the
        killed daemon left on the host must go (else two holders)."""
        name = self._pick([n for n in sorted(self.nodes) if n != WITNESS])
        secs = self.rng.uniform(*self.p.dead_seconds)
        as_backup = self.p.restart_as_backup and self.report.faults["kill"] % 2 == 1
        self.say(
            f"{self.now():6.1f} s  kill -9 {name}, restart after {secs:.1f} s"
            + (" with its tracker down" if as_backup else "")
        )
        self._kill_daemon(name)
        time.sleep(secs)
        trk = self.nodes[name].dir / "trk"
        if as_backup:
            trk.write_text("1\n")
        self._start_daemon(name)
        self.nodes[name].status(timeout=30.0)
        if as_backup:
            # a backup for longer than the dual-holder bound (a kept VIP is a
            # violation then), then back to normal
            time.sleep(self.p.dual_bound + 1.0)
            trk.write_text("0\n")

    def fault_sighup(self) -> None:
        """Half the storm reloads the running configuration again (nothing may
        move), the other half alternates a changed one (priorities -5, one VIP
        more on VI_2) and the same again, ending on the base configuration."""
        # every other storm hits the witness, whose resources are compared
        name = WITNESS if self.report.faults["sighup"] % 2 == 1 else self._pick()
        node = self.nodes[name]
        self.say(f"{self.now():6.1f} s  {self.p.reloads} SIGHUPs to {name}")
        base, changed = self.config(name), self.config(name, changed=True)
        half = self.p.reloads // 2
        before = len(node.text())
        for _ in range(half):
            node.signal(signal.SIGHUP)
            self.report.reloads += 1
            time.sleep(self.p.reload_gap)
        self._wait_config(name)
        moved = ENTERING.findall(node.text()[before:])
        if moved:
            self.report.violations.append(
                f"{self.now():.1f} s: {name}: reloads of an unchanged configuration moved {moved}"
            )
        for i in range(self.p.reloads - half):
            # pairs: a changed configuration, then the same again (unchanged)
            node.write(changed if (i // 2) % 2 == 0 else base)
            node.signal(signal.SIGHUP)
            self.report.reloads += 1
            time.sleep(self.p.reload_gap)
        if node.conf.read_text() != base:
            node.write(base)
            node.signal(signal.SIGHUP)
            self.report.reloads += 1
        self._wait_config(name)

    def _wait_config(self, name: str) -> None:
        """Until the daemon answers with the base priorities (the last reload
        done), then a moment for what the last reload started."""
        node = self.nodes[name]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                st = node.status(timeout=5.0)
                prios = {i["name"]: i["priority"] for i in st["vrrp_instances"]}
                if all(prios.get(k) == PRIORITIES[k][name] for k in VIPS):
                    break
            time.sleep(0.1)
        time.sleep(max(0.5, 2 * self.p.advert_int))

    def _flip_tracker(self, name: str, flips: int) -> None:
        trk = self.nodes[name].dir / "trk"
        for i in range(flips):
            trk.write_text("1\n" if i % 2 == 0 else "0\n")
            time.sleep(self.rng.uniform(0.3, 1.5) * max(1.0, self.p.advert_int / 0.2))
        trk.write_text("0\n")

    def fault_tracker(self) -> None:
        name = self._pick()
        flips = self.rng.randint(*self.p.tracker_flips)
        self.say(f"{self.now():6.1f} s  track_file of {name} flapped {flips} times")
        self._flip_tracker(name, flips)

    def fault_hang(self) -> None:
        vip = VIPS["VI_1"]
        held = self.holders(vip)
        name = held[0] if held else "h1"
        flag = self.nodes[name].dir / "hang"
        self.say(f"{self.now():6.1f} s  notify_master of {name} hangs, its tracker flaps")
        node = self.nodes[name]
        killed = node.text().count(HANG_KILLED)
        flag.write_text("")
        try:
            for _ in range(2):
                (node.dir / "trk").write_text("1\n")
                self._wait(lambda: name not in self.holders(vip), 10.0)
                (node.dir / "trk").write_text("0\n")
                self._wait(lambda: self.holders(vip) == [name], 10.0)
            # the flag stays until the script has hung and been killed: the
            # daemon runs notify_master after the VIP is up, not before
            if not self._wait(
                lambda: node.text().count(HANG_KILLED) > killed, 2 * self.p.script_timeout + 10
            ):
                self.report.violations.append(
                    f"{self.now():.1f} s: {name}: hung notify_master not killed"
                    f" within {2 * self.p.script_timeout + 10:g} s"
                )
        finally:
            flag.unlink()

    @staticmethod
    def _wait(pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        return False

    # -- notify bookkeeping ---------------------------------------------------------

    def _states(self, life: Life) -> dict[str, list[str]]:
        text = self.nodes[life.node].text()[life.log_from : life.log_to]
        out: dict[str, list[str]] = {k: [] for k in VIPS}
        for m in ENTERING.finditer(text):
            out.setdefault(m.group(1), []).append(m.group(2))
        return out

    def _records(self, life: Life, fname: str) -> dict[str, list[str]]:
        """Notify calls or FIFO lines of one life: pid INSTANCE [\"]VI_1[\"] STATE prio."""
        out: dict[str, list[str]] = {k: [] for k in VIPS}
        path = self.nodes[life.node].dir / fname
        if not path.exists():
            return out
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if (
                len(parts) >= 4
                and parts[0] == str(life.pid)
                and parts[1] == "INSTANCE"
                and parts[3] in STATES
            ):
                out.setdefault(parts[2].strip('"'), []).append(parts[3])
        return out

    def _caught_up(self) -> bool:
        for life in self.lives:
            if life.killed:
                continue
            states = self._states(life)
            for fname in ("notify.out", "fifo.out"):
                rec = self._records(life, fname)
                if any(len(rec[k]) < len(states[k]) for k in states):
                    return False
        return True

    def wait_notified(self, timeout: float) -> None:
        """Until every live daemon's notify calls and FIFO lines caught up with its log."""
        self._wait(self._caught_up, timeout)

    # -- the invariants ------------------------------------------------------------------

    def check(self) -> None:
        r = self.report
        self._check_holders()
        for life in self.lives:
            states = self._states(life)
            rec = {f: self._records(life, f) for f in ("notify.out", "fifo.out")}
            for inst, seq in states.items():
                r.transitions += len(seq)
                for fname, got in rec.items():
                    g = got.get(inst, [])
                    where = f"{life.node} pid {life.pid} {inst} {fname}"
                    if life.killed and seq[: len(g)] == g:
                        r.lost_to_kill += len(seq) - len(g)
                        r.notify_checked += len(g)
                    elif g == seq:
                        r.notify_checked += len(g)
                    else:
                        r.violations.append(f"{where}: log {seq} but {g}")
            text = self.nodes[life.node].text()[life.log_from : life.log_to]
            r.plugin_raised += text.count(PLUGIN_FAILED)
            r.hangs_killed += text.count(HANG_KILLED)
            r.reload_restarts += text.count(RELOAD_RESTART)
        # divided by two: notify and FIFO each counted
        r.notify_checked //= 2
        r.lost_to_kill = (r.lost_to_kill + 1) // 2
        if r.plugin_raised == 0:
            r.violations.append("the raising plugin never ran (no 'plugin soak_raiser' log line)")
        if r.faults.get("hang") and r.hangs_killed == 0:
            r.violations.append("a hanging notify_master was never killed")
        for name, node in self.nodes.items():
            if not node.running():
                r.violations.append(f"{name}: daemon not running at the end\n{node.tail()}")
        self._check_resources()

    def _check_holders(self) -> None:
        """Sweep every event in time order (see the module doc for the bounds)."""
        r, p = self.report, self.p
        events: list[tuple[float, str, str, Any]] = []
        for t, n, up in self.alive_events:
            events.append((t, "alive", n, up))
        for t, n, up in self.link_events:
            events.append((t, "link", n, up))
        for n, w in self.watchers.items():
            for ev in w.snapshot():
                if ev.kind in ("ADDR+", "ADDR-"):
                    events.append((ev.t, "addr", n, (ev.kind == "ADDR+", ev.args[0])))
        events.sort(key=lambda e: e[0])
        end = time.monotonic()
        alive = dict.fromkeys(self.nodes, False)
        link = dict.fromkeys(self.nodes, True)
        has: dict[tuple[str, str], bool] = {}
        dual_since: dict[str, float | None] = dict.fromkeys(VIPS.values(), None)
        zero_since: dict[str, float | None] = dict.fromkeys(VIPS.values(), None)
        seen_holder: dict[str, bool] = dict.fromkeys(VIPS.values(), False)
        dual_who: dict[str, list[str]] = {}
        dual_kept: dict[str, set[str]] = {}
        #: a VIP on the host when its daemon started (left by a killed one),
        #: not added or removed since
        inherited: set[tuple[str, str]] = set()

        def close_dual(vip: str, t: float) -> None:
            since = dual_since[vip]
            if since is not None:
                d = t - since
                who = dual_who.get(vip, [])
                kept = sorted(dual_kept.pop(vip, set()))
                if kept:
                    r.max_dual_inherited = max(r.max_dual_inherited, d)
                else:
                    r.max_dual = max(r.max_dual, d)
                r.dual_episodes += 1
                if d > p.dual_bound:
                    why = (
                        f"; {', '.join(kept)} kept the VIP its killed daemon left"
                        " (keepalived 2.2.7 removes it when it starts as backup)"
                        if kept
                        else ""
                    )
                    r.violations.append(
                        f"{since - self.t0:.1f} s: {vip} had two holders ({', '.join(who)})"
                        f" for {d:.2f} s{why}"
                    )
                dual_since[vip] = None

        def close_zero(vip: str, t: float) -> None:
            since = zero_since[vip]
            if since is not None:
                d = t - since
                r.max_zero = max(r.max_zero, d)
                r.zero_episodes += 1
                if d > p.zero_bound:
                    r.violations.append(
                        f"{since - self.t0:.1f} s: {vip} had no holder for {d:.2f} s"
                    )
                zero_since[vip] = None

        for t, kind, n, value in [*events, (end, "end", "", None)]:
            if kind == "alive":
                alive[n] = value
                for vip in VIPS.values():
                    if value and has.get((n, vip)):
                        inherited.add((n, vip))
            elif kind == "link":
                link[n] = value
            elif kind == "addr":
                has[(n, value[1])] = value[0]
                inherited.discard((n, value[1]))
            for vip in VIPS.values():
                held = [h for h in self.nodes if alive[h] and link[h] and has.get((h, vip))]
                eligible = any(alive[h] and link[h] for h in self.nodes)
                if held:
                    seen_holder[vip] = True
                if len(held) >= 2:
                    if dual_since[vip] is None:
                        dual_since[vip] = t
                        dual_who[vip] = held
                    dual_kept.setdefault(vip, set()).update(
                        h for h in held if (h, vip) in inherited
                    )
                else:
                    close_dual(vip, t)
                if not held and eligible and seen_holder[vip] and kind != "end":
                    if zero_since[vip] is None:
                        zero_since[vip] = t
                else:
                    close_zero(vip, t)

    def _check_resources(self) -> None:
        r, p = self.report, self.p
        windows = {label: (a, b) for label, a, b in self.quiet_windows}
        if "baseline" not in windows or "end" not in windows:
            return
        life = self.current_life(WITNESS)
        mine = [s for s in self.samples if s.node == WITNESS and s.pid == life.pid]

        def last_in(label: str) -> Sample | None:
            a, b = windows[label]
            got = [s for s in mine if a <= s.t <= b + 0.5]
            return got[-1] if got else None

        r.baseline, r.final = last_in("baseline"), last_in("end")
        if r.baseline is None or r.final is None:
            r.violations.append(f"{WITNESS}: no resource sample in a quiet window")
            return
        b, f = r.baseline, r.final
        if f.rss_kib - b.rss_kib > p.rss_growth_kib:
            r.violations.append(f"{WITNESS}: RSS grew {b.rss_kib} -> {f.rss_kib} KiB")
        if f.fds - b.fds > p.fd_growth:
            r.violations.append(f"{WITNESS}: open fds grew {b.fds} -> {f.fds}")
        if b.tasks is None or f.tasks is None:
            r.violations.append(f"{WITNESS}: no asyncio_tasks in the status")
        elif f.tasks - b.tasks > p.task_growth:
            r.violations.append(f"{WITNESS}: asyncio tasks grew {b.tasks} -> {f.tasks}")


def run_soak(
    lab: Lab, workdir: Path, params: Params, say: Callable[[str], None] | None = None
) -> Report:
    """One soak in ``lab`` (three hosts at least): the report, daemons stopped."""
    soak = Soak(lab, workdir, params, say)
    try:
        return soak.run()
    finally:
        soak.stop()


__all__ = ["FAULTS", "Params", "Report", "Soak", "run_soak"]
