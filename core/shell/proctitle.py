"""Look like keepalived in the process table when run as ``keepalived``.

gen2brain/keepalived_exporter (collector/collector.go ``processes``/``signal``)
finds keepalived by running ``ps -axwwo pid,pcpu,pmem,args`` and taking the
process whose first argument's basename is ``keepalived``; ``pgrep
keepalived`` and ``pidof``-style scripts look at the command name.  Run
through its console script, pykeepalived's command line starts with the
Python interpreter, so neither would find it.

When invoked through a link named ``keepalived`` (docs/operations.md), the
daemon therefore rewrites its own command line in place (the kernel shows
the memory between ``arg_start`` and ``arg_end`` of /proc/self/stat; the
interpreter has copied ``sys.argv`` long before) to drop the interpreter's
path, and sets its command name to ``keepalived``.  Best effort: anything
unexpected leaves the process as it was.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("pykeepalived")

PR_SET_NAME = 15


def set_keepalived_title(argv: Sequence[str] | None = None) -> bool:
    """Make /proc/self/cmdline ``argv`` (default ``sys.argv``: the link's
    path and the options) and the command name ``keepalived``.  True if the
    command line was rewritten."""
    words = list(sys.argv if argv is None else argv)
    _set_comm(b"keepalived")
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # proc(5): arg_start and arg_end are fields 48 and 49; the split
        # after "pid (comm)" starts at field 3
        start, end = int(fields[45]), int(fields[46])
        new = b"\0".join(os.fsencode(w) for w in words) + b"\0"
        if not 0 < len(new) <= end - start:
            return False
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(new.ljust(end - start, b"\0"))
    except (OSError, ValueError, IndexError) as exc:
        log.debug("command line not rewritten: %s", exc)
        return False
    return True


def _set_comm(name: bytes) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except (OSError, AttributeError) as exc:
        log.debug("command name not set: %s", exc)
