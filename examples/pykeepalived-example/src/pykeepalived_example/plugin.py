"""An example pykeepalived plugin: one checker and one notifier.

* ``EXAMPLE_CHECK { expect STRING ... }`` in ``real_server``: a real server is
  up when, after a TCP connect, the first line it sends starts with
  ``expect``.  The block also accepts every common checker keyword
  (connect_ip, connect_port, connect_timeout, retry, delay_before_retry, ...).
* ``example_event_log FILE`` in ``global_defs``: the ``event_log`` notifier
  appends one line per state change to FILE.

The module is the plugin: pykeepalived loads it through the entry point
``[project.entry-points.pykeepalived] example = "pykeepalived_example.plugin"``
and calls the functions marked with ``@hookimpl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import ClassVar

from pykeepalived.api import (
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    Config,
    Grammar,
    Invalid,
    Kw,
    Notifier,
    StateEvent,
    checker_kw,
    hookimpl,
    string,
    tcp_connect,
)

KEYWORD = "EXAMPLE_CHECK"
EVENT_LOG_KEYWORD = "example_event_log"


# -- the checker ------------------------------------------------------------------------


@dataclass
class ExampleOptions(CheckOptions):
    """EXAMPLE_CHECK's own keywords (the common ones come from CheckOptions)."""

    expect: str | None = None

    def validate(self) -> None:
        # Raised at parse time: "FILE:LINE: error: EXAMPLE_CHECK: needs expect ..."
        if not self.expect:
            raise Invalid("needs expect STRING")


def _example_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("expect", string, 1, 1))


class ExampleCheck(BaseCheck):
    keyword: ClassVar[str] = KEYWORD
    log_name: ClassVar[str] = KEYWORD

    async def check(self) -> CheckResult:
        # One attempt; the core runs it under self.timeout and handles retries.
        options = self.conf.options
        assert isinstance(options, ExampleOptions)
        reader, writer = await tcp_connect(self.target, self.timeout)
        try:
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if options.expect is not None and text.startswith(options.expect):
            return CheckResult(True)
        return CheckResult(False, f"unexpected banner {text!r}")


# -- the notifier -------------------------------------------------------------------------


class EventLogNotifier(Notifier):
    """Appends ``TIME KIND NAME STATE PRIORITY`` lines to example_event_log."""

    name: ClassVar[str] = "event_log"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.path: str | None = config.global_defs.ext.get(EVENT_LOG_KEYWORD)

    def wants(self, event: StateEvent) -> bool:
        return self.path is not None

    async def notify(self, event: StateEvent) -> None:
        line = (
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(event.timestamp))} "
            f"{event.kind.value} {event.name} {event.state} {event.priority}\n"
        )
        # File I/O may block: never on the event loop.
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        assert self.path is not None
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)


# -- hooks ---------------------------------------------------------------------------------


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw(KEYWORD, ExampleOptions, _example_keywords))
    grammar.add("global_defs", Kw(EVENT_LOG_KEYWORD, string, 1, 1))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {KEYWORD: ExampleCheck}


@hookimpl
def pykeepalived_register_notifiers() -> dict[str, type[Notifier]]:
    return {EventLogNotifier.name: EventLogNotifier}
