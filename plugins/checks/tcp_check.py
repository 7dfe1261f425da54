"""TCP_CHECK: a real server is up when a TCP connection to it succeeds."""

from __future__ import annotations

import contextlib
from typing import ClassVar

from pykeepalived import hookimpl
from pykeepalived.core.api import Checker, CheckResult
from pykeepalived.core.checking import BaseCheck, CheckOptions, checker_kw, setting, tcp_connect
from pykeepalived.core.config.grammar import Grammar


class TcpCheck(BaseCheck):
    keyword: ClassVar[str] = "TCP_CHECK"
    log_name: ClassVar[str] = "TCP_CHECK"

    async def check(self) -> CheckResult:
        _, writer = await tcp_connect(self.target, self.timeout, setting(self, "fwmark", None))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return CheckResult(True)

    def success_line(self, result: CheckResult) -> str:
        return f"TCP connection to {self.where} success."

    def attempt_failed_line(self, result: CheckResult) -> str:
        word = "timedout" if result.message.startswith("timeout") else "failed"
        return f"TCP connection to {self.where} {word}."


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("TCP_CHECK", CheckOptions))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"TCP_CHECK": TcpCheck}
