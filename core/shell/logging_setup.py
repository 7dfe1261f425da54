"""Logging as keepalived does it: syslog (facility DAEMON or LOCALn) or console."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys


class _ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(name_short)s[%(process)d]: %(message)s", "%a %b %d %H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        record.name_short = "pykeepalived"
        return super().format(record)


def setup_logging(*, console: bool, detail: bool = False, facility: int | None = None) -> None:
    root = logging.getLogger("pykeepalived")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if detail else logging.INFO)
    root.propagate = False
    if console:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ConsoleFormatter())
        root.addHandler(handler)
    if not console or facility is not None:
        fac = (
            logging.handlers.SysLogHandler.LOG_DAEMON
            if facility is None
            else logging.handlers.SysLogHandler.LOG_LOCAL0 + facility
        )
        if os.path.exists("/dev/log"):
            sh = logging.handlers.SysLogHandler(address="/dev/log", facility=fac)
            sh.setFormatter(logging.Formatter("Keepalived_pyk[%(process)d]: %(message)s"))
            root.addHandler(sh)
        elif not console:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_ConsoleFormatter())
            root.addHandler(handler)
