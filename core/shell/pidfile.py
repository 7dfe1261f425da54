"""Pid files, as keepalived 2.2.7 keeps them (keepalived/core/pidfile.c).

keepalived writes the parent's pid to ``/run/keepalived.pid`` (``-p``) and
its VRRP and checker children's to ``/run/vrrp.pid`` (``-r``) and
``/run/checkers.pid`` (``-c``), the latter only when that child runs.
pykeepalived is one process: ``-p`` holds our pid (default
``/run/keepalived.pid``), and ``-r`` / ``-c``, when given, hold the same pid
while the VRRP / checker part runs, so a script that signals "the VRRP
process" reaches us.  They are not written by default: every pykeepalived
would then claim ``/run/vrrp.pid``, and a host running keepalived's own
children there would find us instead.

Before starting, keepalived refuses to run ("daemon is already running",
exit status 0) when any of its pid files names a live process, and removes
one that names a dead process ("Remove a zombie pid file").  We do the same
with the files we were given.  Unlike keepalived, an unreadable pid file is
removed as stale (keepalived removes it but refuses to start that once).
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("pykeepalived")


def read_pid(path: str) -> int | None:
    """The pid a pid file names, None when missing or unreadable."""
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is someone else's
    # A killed daemon its parent has not reaped yet is a zombie: gone, though
    # signal 0 still finds it (a supervisor restarting at once would see it).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_pid(path: str) -> int | None:
    """The live process a pid file names (not us); a stale file is removed."""
    if not os.path.lexists(path):
        return None
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and alive(pid):
        return pid
    log.info("Remove a zombie pid file %s", path)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return None


def write_pid(path: str) -> None:
    """Write our pid (mode 0644, never through a symlink, as keepalived)."""
    fd = os.open(path, os.O_NOFOLLOW | os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")


def remove_pid(path: str) -> None:
    """Remove a pid file at exit, if it still names us."""
    if read_pid(path) == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(path)
