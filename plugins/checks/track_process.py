"""``vrrp_track_process`` / ``track_process``: is a process running?

Grammar (keepalived.conf(5), "VRRP track processes")::

    vrrp_track_process NAME {
        process <STRING>|<QUOTED_STRING> [PARAM ...]
        param_match [initial|partial]   # no word: exact
        full_command                    # match /proc/PID/cmdline, not comm
        weight N [reverse]              # -254..254, default 0
        quorum N                        # default 1
        quorum_max N                    # default unlimited; 0: must not run
        delay SECS                      # sets fork_delay and terminate_delay
        fork_delay SECS
        terminate_delay SECS
    }

and ``track_process { NAME [weight N [reverse|noreverse]] }`` in
vrrp_instance and vrrp_sync_group.  Definitions land in
``Config.ext["vrrp_track_process"]``.

Matching is keepalived's: an exact comparison of the process name (comm,
at most 15 characters) or, with parameters or ``full_command``, of argv[0]
of /proc/PID/cmdline, parameters compared exactly, as a prefix of whole
words (``partial``) or as a prefix of the joined argument string
(``initial``).  Zombies do not count.  Processes are counted once at start
(/proc scan), then followed through the kernel's process-events connector
(NETLINK_CONNECTOR, CN_IDX_PROC: fork, exec, comm, exit) with no polling.
The connector only exists in the initial network namespace; inside another
one the socket is opened from a short-lived thread that enters the network
namespace of PID 1 or of an ancestor (``ip netns exec`` is started from the
initial one), and if that is not possible the tracker falls
back (logged once) to watching known processes with pidfds (exit is still
immediate) and listing /proc for new ones every 0.2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pykeepalived.api import (
    UNKNOWN_PLACE,
    BlockSpec,
    Context,
    Grammar,
    Invalid,
    Kw,
    Node,
    Place,
    Tracker,
    TrackStatus,
    WatchTracker,
    build_model,
    flag,
    hookimpl,
    integer,
    parse_float,
    track_block_kw,
    weight_and_reverse,
)

log = logging.getLogger("pykeepalived.vrrp.track_process")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_EXIT = 0x80000000
CLONE_NEWNET = 0x40000000
_NLMSG = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")
_EVHDR = struct.Struct("=IIQ")
POLL_INTERVAL = 0.2
RESCAN_INTERVAL = 2.0


@dataclass
class TrackProcess:
    """One ``vrrp_track_process NAME { ... }`` block."""

    name: str
    place: Place = UNKNOWN_PLACE
    process: str = ""
    params: list[str] = field(default_factory=list)
    #: None, "exact", "initial" or "partial".
    param_match: str | None = None
    full_command: bool = False
    weight: int = 0
    reverse: bool = False
    quorum: int = 1
    #: None: no maximum.
    quorum_max: int | None = None
    fork_delay: float = 0.0
    terminate_delay: float = 0.0


# -- grammar ------------------------------------------------------------------------------


def _process(node: Node, ctx: Context) -> list[str]:
    return list(node.args)


def _param_match(node: Node, ctx: Context) -> str:
    if not node.args:
        return "exact"
    if node.args[0] in ("initial", "partial"):
        return node.args[0]
    raise Invalid(f"Invalid param_match type {node.args[0]}")


def _delay(node: Node, ctx: Context) -> float:
    value = parse_float(node.args[0], 0, 3600)
    if value <= 0:
        raise Invalid(f"{node.keyword} ({node.args[0]}) must be between [0.000001..3600]")
    return value


def process_spec() -> BlockSpec:
    spec = BlockSpec("vrrp_track_process")
    spec.add(Kw("process", _process, 1, None))
    spec.add(Kw("param_match", _param_match, 0, 1))
    spec.add(Kw("full_command", flag, 0, 1))
    spec.add(Kw("weight", weight_and_reverse(-254, 254), 1, 2))
    spec.add(Kw("quorum", integer(1, 65535), 1, 1))
    spec.add(Kw("quorum_max", integer(0, 65535), 1, 1))
    spec.add(Kw("delay", _delay, 1, 1))
    spec.add(Kw("fork_delay", _delay, 1, 1))
    spec.add(Kw("terminate_delay", _delay, 1, 1))
    return spec


def _track_process(spec: BlockSpec) -> Callable[[Node, Context], TrackProcess]:
    def conv(node: Node, ctx: Context) -> TrackProcess:
        v: dict[str, Any] = build_model(spec, node, ctx)
        conf = TrackProcess(node.args[0], node.place)
        words = v.get("process")
        if not words:
            raise Invalid(f"track process '{conf.name}' process name not specified")
        conf.process, conf.params = words[0], words[1:]
        conf.param_match = v.get("param_match")
        if conf.params and conf.param_match is None:
            conf.param_match = "exact"
        conf.full_command = bool(v.get("full_command")) or conf.param_match is not None
        conf.weight, conf.reverse = v.get("weight", (0, False))
        delay = v.get("delay")
        conf.fork_delay = v.get("fork_delay", delay or 0.0)
        conf.terminate_delay = v.get("terminate_delay", delay or 0.0)
        if "quorum" in v:
            conf.quorum = v["quorum"]
        if "quorum_max" in v:
            conf.quorum_max = v["quorum_max"]
            if conf.quorum_max == 0:
                if "quorum" in v and conf.quorum > 0:
                    ctx.warn(node.place, "quorum_max is less than quorum - ignoring quorum")
                conf.quorum = 0
            elif conf.quorum_max < conf.quorum:
                raise Invalid("quorum_max is less than quorum")
        return conf

    return conv


# -- matching (pure) ------------------------------------------------------------------------


def _joined(params: list[str] | list[bytes]) -> bytes:
    if not params:
        return b""
    return b"".join((p if isinstance(p, bytes) else os.fsencode(p)) + b"\0" for p in params)


def matches(conf: TrackProcess, comm: str, argv: list[bytes] | None) -> bool:
    """Does a process with this comm and cmdline (argv) match ``conf``?"""
    if not conf.full_command:
        return comm == conf.process
    if not argv or argv[0] != os.fsencode(conf.process):
        return False
    if conf.param_match is None:
        return True
    have = _joined(argv[1:])
    want = _joined(conf.params)
    if conf.param_match == "exact":
        return have == want
    if len(have) < len(want):
        return False
    if conf.param_match == "partial":
        return have.startswith(want)
    return have.startswith(want[:-1])  # initial: the last parameter may be longer


def read_proc(pid: int, want_cmdline: bool) -> tuple[str, list[bytes] | None] | None:
    """(comm, argv) of a live, non-zombie process; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
        open_paren, close_paren = stat.index(b"("), stat.rindex(b")")
        if stat[close_paren + 2 : close_paren + 3] == b"Z":
            return None
        comm = stat[open_paren + 1 : close_paren].decode("utf-8", "replace")
        argv: list[bytes] | None = None
        if want_cmdline:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read(65536)
            argv = raw.rstrip(b"\0").split(b"\0") if raw else []
        return comm, argv
    except (OSError, ValueError):
        return None


# -- the kernel's process events connector ------------------------------------------------


def _connector_socket() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR
    )
    try:
        sock.bind((0, CN_IDX_PROC))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        port = sock.getsockname()[0]
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(_NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, port) + cn)
    except BaseException:
        sock.close()
        raise
    return sock


def _connector_socket_in_netns_of(pid: int) -> socket.socket:
    """Open the connector from a thread that entered ``pid``'s network namespace.

    A socket stays in the namespace it was created in; the thread (and its
    namespace) then ends.  Touches no interface.
    """
    result: list[socket.socket | BaseException] = []

    def work() -> None:
        import ctypes  # only here: a daemon without track_process never loads it
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns: {os.strerror(e)}")
            finally:
                os.close(fd)
            result.append(_connector_socket())
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=work, name="proc-connector-setns", daemon=True)
    t.start()
    t.join(5.0)
    if not result:
        raise OSError(errno.ETIMEDOUT, "timed out opening the connector")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _initial_netns_candidates() -> list[int]:
    """PID 1, then our ancestors (``ip netns exec`` runs us from the initial netns)."""
    import psutil

    own = os.readlink("/proc/self/ns/net")
    out: list[int] = []
    try:
        pids = [1] + [p.pid for p in psutil.Process().parents()]
    except psutil.Error:
        pids = [1]
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own and pid not in out:
                out.append(pid)
        except OSError:
            continue
    return out


def open_connector() -> socket.socket:
    """The process events connector; it exists only in the initial network namespace."""
    try:
        return _connector_socket()
    except OSError as exc:
        first = exc
    for pid in _initial_netns_candidates():
        try:
            sock = _connector_socket_in_netns_of(pid)
        except OSError:
            continue
        log.info("process events connector opened in the network namespace of pid %d", pid)
        return sock
    raise first


def parse_proc_events(data: bytes) -> list[tuple[int, int, int]]:
    """(event, pid, other) per message: FORK (child, parent), EXEC/COMM (pid, 0), EXIT (pid, 0).

    Thread events (pid != tgid) are dropped: processes are counted, not threads.
    """
    out: list[tuple[int, int, int]] = []
    i = 0
    while i + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, i)[0]
        if length < _NLMSG.size:
            break
        base = i + _NLMSG.size + _CNMSG.size
        if base + _EVHDR.size + 8 <= i + length:
            what = _EVHDR.unpack_from(data, base)[0]
            ev = base + _EVHDR.size
            if what == PROC_EVENT_FORK:
                _ppid, ptgid, cpid, ctgid = struct.unpack_from("=iiii", data, ev)
                if cpid == ctgid:
                    out.append((what, ctgid, ptgid))
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_COMM, PROC_EVENT_EXIT):
                pid, tgid = struct.unpack_from("=ii", data, ev)
                if pid == tgid:
                    out.append((what, tgid, 0))
        i += (length + 3) & ~3
    return out


# -- the tracker ----------------------------------------------------------------------------


class ProcessTracker(WatchTracker):
    """Up while the number of matching processes is within [quorum, quorum_max]."""

    family = "process"

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        super().__init__(name, conf, on_change)
        self.conf: TrackProcess = conf
        self.pids: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._pidfds: dict[int, int] = {}
        #: "connector" or "poll", once running.
        self.mode = ""

    def initial_up(self) -> bool:
        return False

    # -- counting -----------------------------------------------------------------------
    def _quorum(self) -> bool:
        n = len(self.pids)
        hi = self.conf.quorum_max
        return n >= self.conf.quorum and (hi is None or n <= hi)

    def _check(self, pid: int) -> bool:
        info = read_proc(pid, self.conf.full_command)
        return info is not None and matches(self.conf, info[0], info[1])

    def _add(self, pid: int) -> None:
        self.pids.add(pid)
        if self.mode == "poll":
            self._watch_exit(pid)

    def _remove(self, pid: int) -> None:
        self.pids.discard(pid)
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _changed(self, cause: str) -> None:
        want = self._quorum()
        if self.pending:
            self._report(want)
            return
        if self._timer is not None:
            if want == self.status.up:  # bounced back before the delay expired
                self._timer.cancel()
                self._timer = None
            return
        if want == self.status.up:
            return
        delay = {"fork": self.conf.fork_delay, "exit": self.conf.terminate_delay}.get(cause, 0.0)
        if delay > 0:
            self._timer = asyncio.get_running_loop().call_later(delay, self._expired)
        else:
            self._report(want)

    def _expired(self) -> None:
        self._timer = None
        self._report(self._quorum())

    def _report(self, up: bool) -> None:
        if not self.pending and up != self.status.up:
            log.info("Quorum %s for tracked process %s", "gained" if up else "lost", self.name)
        n = len(self.pids)
        self.settle(
            TrackStatus(up=up, value=0, reason=f"{n} process{'es' if n != 1 else ''} running")
        )

    def scan(self) -> None:
        """Count matching processes from /proc (start, and after lost events)."""
        import psutil

        found = {pid for pid in psutil.pids() if pid != os.getpid() and self._check(pid)}
        for pid in self.pids - found:
            self._remove(pid)
        for pid in found - self.pids:
            self._add(pid)

    # -- events ---------------------------------------------------------------------------
    def on_event(self, what: int, pid: int, parent: int) -> None:
        if what == PROC_EVENT_FORK:
            if parent in self.pids and pid not in self.pids:
                self._add(pid)
                self._changed("fork")
        elif what == PROC_EVENT_EXIT:
            if pid in self.pids:
                self._remove(pid)
                self._changed("exit")
        elif what == PROC_EVENT_COMM and self.conf.full_command:
            return  # a new comm does not change the command line
        else:  # EXEC or COMM: the process may start or stop matching
            now = self._check(pid)
            if now and pid not in self.pids:
                self._add(pid)
                self._changed("exec")
            elif not now and pid in self.pids:
                self._remove(pid)
                self._changed("exec")

    async def run(self) -> None:
        try:
            sock = open_connector()
        except OSError as exc:
            log.warning(
                "track_process %s: process events connector unavailable (%s); "
                "polling /proc every %gs instead",
                self.name,
                exc.strerror or exc,
                POLL_INTERVAL,
            )
            await self._run_polling()
            return
        self.mode = "connector"
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            self.scan()  # after subscribing, so nothing starting in between is missed
            self._changed("scan")
            while True:
                try:
                    data = await loop.sock_recv(sock, 1 << 16)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.info("track_process %s: missed process events; rescanning", self.name)
                    self.scan()
                    self._changed("scan")
                    continue
                for what, pid, parent in parse_proc_events(data):
                    self.on_event(what, pid, parent)
        finally:
            sock.close()
            self._cleanup()

    async def _run_polling(self) -> None:
        import psutil

        self.mode = "poll"
        known: set[int] = set(psutil.pids())
        try:
            self.scan()
            self._changed("scan")
            loop = asyncio.get_running_loop()
            last_rescan = loop.time()
            while True:
                await asyncio.sleep(POLL_INTERVAL)
                if loop.time() - last_rescan >= RESCAN_INTERVAL:
                    # exec/comm changes of processes already known need a full look
                    last_rescan = loop.time()
                    before = set(self.pids)
                    self.scan()
                    if before != self.pids:
                        self._changed("exec")
                    known = set(psutil.pids())
                    continue
                current = set(psutil.pids())
                for pid in current - known:
                    if self._check(pid) and pid not in self.pids:
                        self._add(pid)
                        self._changed("fork")
                known = current
        finally:
            self._cleanup()

    def _watch_exit(self, pid: int) -> None:
        """pidfd: readable when the process exits (Linux 5.3+)."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        self._pidfds[pid] = fd

        def gone() -> None:
            if pid in self.pids:
                self._remove(pid)
                self._changed("exit")

        asyncio.get_running_loop().add_reader(fd, gone)

    def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for pid in list(self._pidfds):
            fd = self._pidfds.pop(pid)
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    spec = process_spec()
    grammar.add(
        "top",
        Kw(
            "vrrp_track_process",
            _track_process(spec),
            1,
            1,
            block=spec,
            needs_block=True,
            field="vrrp_track_process",
            multiple=True,
        ),
    )
    grammar.add("vrrp_instance", track_block_kw("track_process", "process"))
    grammar.add("vrrp_sync_group", track_block_kw("track_process", "process"))


@hookimpl
def pykeepalived_register_trackers() -> dict[str, type[Tracker]]:
    return {"process": ProcessTracker}
