"""``track_file`` (``vrrp_track_file``): an integer read from a file on change.

Grammar (keepalived.conf(5), "Track files")::

    track_file NAME {              # vrrp_track_file is a deprecated synonym
        file <QUOTED_STRING>
        weight N [reverse]         # -254..254, default 1
        init_file [VALUE] [overwrite]
    }

and ``track_file { NAME [weight N [reverse|noreverse]] }`` in vrrp_instance
and vrrp_sync_group.  Definitions land in ``Config.ext["track_file"]``.

The file is watched with inotify on its directory (so it may be created,
replaced by rename, or deleted) and read on IN_CLOSE_WRITE / IN_MOVED_TO;
a missing or deleted file reads as 0, as in keepalived; the number is read
like strtol(..., 0) (so ``0x10`` is 16) and an unreadable number is
ignored with a log line.  The value is reported as ``TrackStatus.value``;
:mod:`pykeepalived.core.tracking` multiplies it by the weight.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
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
    hookimpl,
    parse_strtol,
    string,
    track_block_kw,
    weight_and_reverse,
)

log = logging.getLogger("pykeepalived.vrrp.track_file")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
WATCH_MASK = (
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)


@dataclass
class TrackFile:
    """One ``track_file NAME { ... }`` block."""

    name: str
    place: Place = UNKNOWN_PLACE
    file: str = ""
    weight: int = 1
    reverse: bool = False
    #: init_file: the value to write at startup, or None for no init_file.
    init_value: int | None = None
    init_overwrite: bool = False


def _init_file(node: Node, ctx: Context) -> tuple[int, bool]:
    value = 0
    overwrite = False
    for word in node.args:
        if word == "overwrite":
            overwrite = True
        elif re.fullmatch(r"-?\d+", word.strip()):
            value = int(word)
            if not -254 <= value <= 254:
                ctx.warn(node.place, f"init value {value} is outside sensible range [-254, 254]")
        else:
            raise Invalid(f"unknown init option '{word}'")
    return value, overwrite


def file_spec() -> BlockSpec:
    spec = BlockSpec("track_file")
    spec.add(Kw("file", string, 1, 1))
    spec.add(Kw("weight", weight_and_reverse(-254, 254), 1, 2))
    spec.add(Kw("init_file", _init_file, 0, 2))
    return spec


def _track_file(spec: BlockSpec) -> Callable[[Node, Context], TrackFile]:
    def conv(node: Node, ctx: Context) -> TrackFile:
        if node.keyword == "vrrp_track_file":
            ctx.diag.notice(node.place, '"vrrp_track_file" is deprecated, please use "track_file"')
        values: dict[str, Any] = build_model(spec, node, ctx)
        weight, reverse = values.pop("weight", (1, False))
        init = values.pop("init_file", None)
        conf = TrackFile(node.args[0], node.place, weight=weight, reverse=reverse, **values)
        if init is not None:
            conf.init_value, conf.init_overwrite = init
        if not conf.file:
            raise Invalid(f"No file set for track_file {conf.name} - ignoring")
        return conf

    return conv


class Inotify:
    """A non-blocking inotify descriptor (ctypes; the stdlib has none)."""

    def __init__(self) -> None:
        import ctypes  # only here: a daemon without track_file never loads it
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd: int = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            import ctypes

            e = ctypes.get_errno()
            raise OSError(e, f"inotify_add_watch {path}: {os.strerror(e)}")
        return wd

    def read(self) -> list[tuple[int, int, str]]:
        """Pending events as (wd, mask, name); [] when none."""
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out = []
        i = 0
        while i + _EVENT.size <= len(buf):
            wd, mask, _cookie, length = _EVENT.unpack_from(buf, i)
            name = buf[i + _EVENT.size : i + _EVENT.size + length].rstrip(b"\0")
            out.append((wd, mask, os.fsdecode(name)))
            i += _EVENT.size + length
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileTracker(WatchTracker):
    """Reports the integer in ``file`` as its value."""

    family = "file"
    value_based = True

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        super().__init__(name, conf, on_change)
        self.conf: TrackFile = conf
        self.path = os.path.abspath(conf.file)
        self._inotify: Inotify | None = None

    def initial_up(self) -> bool:
        return True

    def init_file(self) -> None:
        """``init_file``: write the value if the file is missing (or always, with overwrite)."""
        c = self.conf
        if c.init_value is None:
            return
        if os.path.exists(self.path) and not c.init_overwrite:
            return
        try:
            with open(self.path, "w") as f:
                f.write(f"{c.init_value}\n")
        except OSError as exc:
            log.error("Unable to initialise track file %s: %s", self.path, exc.strerror)

    def read_value(self) -> int | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(127)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.info("Cannot read track file %s: %s", self.path, exc.strerror)
            return 0
        value = parse_strtol(data.decode("ascii", "replace"))
        if value is None:
            log.info("Invalid number read from %s - ignoring", self.path)
        return value

    def _update(self) -> None:
        value = self.read_value()
        if value is None:
            return
        if value != self.status.value or self.pending:
            log.info("Track file %s now has value %d", self.name, value)
        self.settle(TrackStatus(up=True, value=value, reason=f"value {value}"))

    async def run(self) -> None:
        self.init_file()
        directory, base = os.path.split(self.path)
        inotify = Inotify()
        self._inotify = inotify
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        try:
            try:
                wd = inotify.add_watch(directory, WATCH_MASK)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    log.error("track file %s: directory %s does not exist", self.name, directory)
                raise
            loop.add_reader(inotify.fd, wake.set)
            try:
                self._update()
                while True:
                    await wake.wait()
                    wake.clear()
                    relevant = False
                    for ev_wd, mask, name in inotify.read():
                        if mask & IN_Q_OVERFLOW or (
                            ev_wd == wd and name == base and not mask & IN_ISDIR
                        ):
                            relevant = True
                        elif ev_wd == wd and mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                            raise OSError(errno.ENOENT, f"directory {directory} went away")
                    if relevant:
                        self._update()
            finally:
                loop.remove_reader(inotify.fd)
        finally:
            inotify.close()
            self._inotify = None


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    spec = file_spec()
    grammar.add(
        "top",
        Kw(
            "track_file",
            _track_file(spec),
            1,
            1,
            block=spec,
            needs_block=True,
            field="track_file",
            multiple=True,
            aliases=("vrrp_track_file",),
        ),
    )
    grammar.add("vrrp_instance", track_block_kw("track_file", "file"))
    grammar.add("vrrp_sync_group", track_block_kw("track_file", "file"))


@hookimpl
def pykeepalived_register_trackers() -> dict[str, type[Tracker]]:
    return {"file": FileTracker}
