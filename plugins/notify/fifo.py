"""keepalived's notify FIFOs (notifier ``fifo``).

global_defs ``notify_fifo`` receives every line, ``vrrp_notify_fifo`` the
VRRP lines, ``lvs_notify_fifo`` the LVS lines (keepalived.conf(5)).  Lines
are keepalived's, newline-terminated::

    INSTANCE "VI_1" MASTER 100        (effective priority)
    GROUP "G1" BACKUP 0
    VS [192.0.2.100]:tcp:80 UP
    RS [192.0.2.21]:tcp:80 [192.0.2.100]:tcp:80 DOWN

INSTANCE lines also carry MASTER_RX_LOWER_PRI (and MASTER_PRIORITY /
BACKUP_PRIORITY when the daemon emits priority changes).  keepalived writes a
stray NUL byte after VS/RS lines; we do not.

As keepalived does, the FIFO is created (mode 0644) when missing and
removed at close if we created it; it is opened read-write and non-blocking,
so writing never blocks and never fails for want of a reader (a full pipe
drops the line, logged).  An existing path that is not a FIFO owned by us
or the configured user is refused.  Each ``*_fifo_script`` is started at
configure time with the FIFO's path as its last argument and stopped
(its process group killed) at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from dataclasses import dataclass, field

from pykeepalived.api import (
    Config,
    EventKind,
    Grammar,
    Kw,
    Notifier,
    Script,
    ScriptSecurityError,
    StateEvent,
    check_script,
    format_rs,
    format_vs,
    hookimpl,
    kill_group,
    resolve_user,
    subject_of,
    virtual_server_of,
)
from pykeepalived.api import (
    script as script_value,
)

log = logging.getLogger("pykeepalived.notify.fifo")

VRRP_KINDS = frozenset({EventKind.INSTANCE, EventKind.GROUP})
LVS_KINDS = frozenset({EventKind.REAL_SERVER, EventKind.VIRTUAL_SERVER})
ALL_KINDS = VRRP_KINDS | LVS_KINDS


@dataclass
class Fifo:
    """One configured FIFO and its reader script."""

    label: str  # "", "vrrp_" or "lvs_" as in keepalived's log lines
    path: str
    kinds: frozenset[EventKind]
    owner: Script
    script: Script | None = None
    fd: int = -1
    created: bool = False
    reader: asyncio.subprocess.Process | None = None
    dropped: int = field(default=0)


def format_line(config: Config, ev: StateEvent) -> str | None:
    """keepalived's FIFO line for ``ev`` (with the newline), or None."""
    if ev.kind is EventKind.INSTANCE:
        return f'INSTANCE "{ev.name}" {ev.state} {ev.priority}\n'
    if ev.kind is EventKind.GROUP:
        return f'GROUP "{ev.name}" {ev.state} 0\n'
    vs = virtual_server_of(config, ev)
    if ev.kind is EventKind.VIRTUAL_SERVER:
        return f"VS {format_vs(vs) if vs is not None else ev.name} {ev.state}\n"
    rs = subject_of(config, ev)
    if rs is None or vs is None:
        return f"RS {ev.name} {ev.state}\n"
    return f"RS {format_rs(rs, vs)} {format_vs(vs)} {ev.state}\n"


class FifoNotifier(Notifier):
    name = "fifo"
    timeout = 5.0

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        gd = config.global_defs
        self.fifos: list[Fifo] = []
        for label, fifo, script, kinds in (
            ("", gd.notify_fifo, gd.notify_fifo_script, ALL_KINDS),
            ("vrrp_", gd.vrrp_notify_fifo, gd.vrrp_notify_fifo_script, VRRP_KINDS),
            ("lvs_", gd.lvs_notify_fifo, gd.lvs_notify_fifo_script, LVS_KINDS),
        ):
            if fifo is not None and fifo.argv:
                self.fifos.append(Fifo(label, fifo.argv[0], kinds, fifo, script))
        self._opened = False
        #: Tasks watching the reader scripts: held here, because the event
        #: loop keeps only weak references to tasks (a pending one could be
        #: collected), and cancelled at close.
        self._watchers: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Create and open the FIFOs, start their reader scripts."""
        self.open()
        for f in self.fifos:
            if f.fd != -1 and f.script is not None:
                await self._start_reader(f)

    def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        for f in self.fifos:
            self._open(f)

    def _open(self, f: Fifo) -> None:
        gd = self.config.global_defs
        try:
            owner = resolve_user(f.owner, gd) if f.owner.user is not None else None
        except ScriptSecurityError as exc:
            log.error("%snotify fifo %s: %s", f.label, f.path, exc)
            owner = None
        try:
            os.mkfifo(f.path, 0o644)
            f.created = True
            if owner is not None:
                with contextlib.suppress(OSError):
                    os.chown(f.path, owner.uid, owner.gid)
        except FileExistsError:
            pass
        except OSError as exc:
            log.error("Unable to create %snotify fifo %s: %s", f.label, f.path, exc.strerror)
            return
        try:
            fd = os.open(f.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            log.error("Unable to open %snotify fifo %s - errno %d", f.label, f.path, exc.errno)
            self._unlink(f)
            return
        st = os.fstat(fd)
        allowed = {os.geteuid(), *([owner.uid] if owner is not None else [])}
        if not stat.S_ISFIFO(st.st_mode) or st.st_uid not in allowed:
            # An existing path may have been planted: only a FIFO we own will do.
            log.error("%snotify fifo %s is not a fifo we own - not using", f.label, f.path)
            os.close(fd)
            return
        f.fd = fd

    async def _start_reader(self, f: Fifo) -> None:
        assert f.script is not None
        gd = self.config.global_defs
        why = check_script(f.script, gd)
        if why is not None:
            log.error("%snotify fifo script refused: %s", f.label, why)
            return
        try:
            run_as = resolve_user(f.script, gd)
        except ScriptSecurityError as exc:
            log.error("%snotify fifo script refused: %s", f.label, exc)
            return
        kwargs: dict[str, object] = {}
        if not run_as.is_root and os.geteuid() == 0:
            kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
        try:
            f.reader = await asyncio.create_subprocess_exec(
                *f.script.argv,
                f.path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
                **kwargs,  # type: ignore[arg-type]
            )
        except (OSError, ValueError) as exc:
            log.error("%snotify fifo script %s cannot run: %s", f.label, f.script.command, exc)
            return
        watcher = asyncio.get_running_loop().create_task(
            self._watch_reader(f, f.reader), name=f"fifo-reader:{f.path}"
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch_reader(self, f: Fifo, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if f.reader is proc:
            f.reader = None
            # keepalived 2.2.7's words: "vrrp notify fifo script terminated" (vrrp/vrrp.c),
            # "lvs notify fifo script terminated" (check/check_daemon.c): no underscore.
            log.info("%snotify fifo script terminated", f.label.replace("_", " "))

    async def close(self) -> None:
        for f in self.fifos:
            # Unlink first, as keepalived does, so a reader that reopens the
            # FIFO in a loop cannot find it again.
            self._unlink(f)
            if f.fd != -1:
                os.close(f.fd)
                f.fd = -1
            proc, f.reader = f.reader, None
            if proc is not None and proc.returncode is None:
                await kill_group(proc, grace=1.0)
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    @staticmethod
    def _unlink(f: Fifo) -> None:
        if f.created:
            with contextlib.suppress(OSError):
                os.unlink(f.path)
            f.created = False

    # -- events -------------------------------------------------------------------

    def wants(self, event: StateEvent) -> bool:
        return any(event.kind in f.kinds for f in self.fifos)

    async def notify(self, event: StateEvent) -> None:
        self.open()
        line = format_line(self.config, event)
        if line is None:
            return
        data = line.encode()
        for f in self.fifos:
            if f.fd == -1 or event.kind not in f.kinds:
                continue
            try:
                os.write(f.fd, data)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    f.dropped += 1
                    log.warning(
                        "%snotify fifo %s is full (no reader?) - line dropped", f.label, f.path
                    )
                else:
                    log.info("%snotify fifo write error: %s", f.label, exc.strerror)


#: global_defs keywords of keepalived's notify FIFOs (``NAME [USER [GROUP]]``).
FIFO_KEYWORDS = (
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "notify_fifo",
    "notify_fifo_script",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
)


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    for name in FIFO_KEYWORDS:
        grammar.add("global_defs", Kw(name, script_value, 1, 3))


@hookimpl
def pykeepalived_register_notifiers() -> dict[str, type[Notifier]]:
    return {"fifo": FifoNotifier}
