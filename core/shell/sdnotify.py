"""systemd's notify protocol, spoken directly (no libsystemd).

The whole protocol is one datagram per message on the AF_UNIX socket named
by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket), each
message newline-separated ``KEY=value`` lines (sd_notify(3)).  systemd
accepts them from the unit's main process (``NotifyAccess=main``), which is
us: the daemon never forks, so ``MAINPID=`` is not needed (keepalived 2.2.7
sends ``READY=1`` with ``MAINPID`` because its parent process forks the VRRP
and checker children; systemd reads it and ignores it when it is the main
pid already).

What the daemon sends:

- ``READY=1`` once the configuration is applied and the sockets are open;
- ``RELOADING=1`` + ``MONOTONIC_USEC=`` (CLOCK_MONOTONIC in µs, as systemd
  253's ``Type=notify-reload`` requires; older systemd ignores the extra
  field) when SIGHUP starts a reload, then ``READY=1`` when it is done,
  whether the new configuration was taken or refused;
- ``STOPPING=1`` when SIGTERM/SIGINT starts the graceful shutdown;
- ``STATUS=`` a one-line summary, shown by ``systemctl status``;
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from the VRRP engine's own
  loop (see :class:`WatchdogPinger`), only when ``$WATCHDOG_PID`` is unset
  or names us (sd_watchdog_enabled(3)).

The variables are removed from the environment once read, so notify
scripts and other children cannot speak for the daemon (sd_notify's
``unset_environment``).  Without ``$NOTIFY_SOCKET`` everything here is a
no-op.  Sending never raises: a lost datagram is logged once at debug level
and the daemon carries on (systemd is the one to decide what a missing
READY or WATCHDOG means).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("pykeepalived")

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes | None:
    """The address ``$NOTIFY_SOCKET`` names: a filesystem path, or an
    abstract socket (``@name`` -> ``\\0name``); None for anything else
    (systemd 254+ also accepts ``vsock:``, which a host daemon never gets)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``, as
    sd_watchdog_enabled(3) advises), None when the watchdog is off or
    meant for another process."""
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SdNotifier:
    """The daemon's side of the notify protocol (thread-safe: one datagram
    socket, one ``sendto`` per message)."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = (
            watchdog_interval(env, os.getpid()) if self.address is not None else None
        )
        for name in ENV_VARS:
            env.pop(name, None)
        self._sock: socket.socket | None = None
        self._warned = False
        self._last_status = ""
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        if self._sock is None or self.address is None:
            return False
        try:
            # The bytes systemd-notify(1) and sd_notify(3) send: lines joined
            # by newlines, no trailing one.
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))
        self._last_status = status or self._last_status

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=Reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=Stopping")

    def status(self, text: str) -> None:
        """STATUS=, sent only when it changed (it is one line: newlines dropped)."""
        text = " ".join(text.split())
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WatchdogPinger:
    """``WATCHDOG=1`` from a timer on the loop it is started on.

    The daemon starts it on the VRRP engine's loop (core/shell/loopthread.py),
    the one whose stalling would stop adverts: while that loop turns, systemd
    hears from us every half WatchdogSec; when something wedges it (a
    blocking call, a deadlock, an endless loop), the pings stop and systemd
    kills and restarts the daemon (``Restart=on-failure`` counts a watchdog
    timeout as a failure).  A stuck plugin on the main loop does not stop
    the pings: it cannot delay adverts either.
    """

    def __init__(self, notifier: SdNotifier, interval: float) -> None:
        self.notifier = notifier
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Call on ``loop``'s own thread."""
        self._loop = loop
        self._ping()

    def _ping(self) -> None:
        assert self._loop is not None
        self.notifier.watchdog()
        self._handle = self._loop.call_later(self.interval, self._ping)

    def stop(self) -> None:
        """Call on the loop's thread (or after it stopped)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
