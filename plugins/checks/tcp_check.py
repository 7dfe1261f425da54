"""TCP_CHECK: a real server is up when a TCP connection to it succeeds."""

from __future__ import annotations

import socket
from typing import ClassVar

from pykeepalived.api import (
    BaseCheck,
    Checker,
    CheckOptions,
    CheckResult,
    Grammar,
    checker_kw,
    hookimpl,
    make_socket,
    setting,
    sock_connect,
)

_UP = CheckResult(True)


class TcpCheck(BaseCheck):
    keyword: ClassVar[str] = "TCP_CHECK"
    log_name: ClassVar[str] = "TCP_CHECK"

    async def check(self) -> CheckResult:
        # keepalived's tcp_check: connect, then close at once; no streams needed.
        target = self.target
        if target.port is None:
            raise OSError("no port to connect to (set connect_port)")
        sock = make_socket(target, socket.SOCK_STREAM, fwmark=setting(self, "fwmark", None))
        try:
            await sock_connect(sock, (target.address, target.port), self.timeout)
        finally:
            sock.close()
        return _UP

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
