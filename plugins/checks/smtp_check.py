"""SMTP_CHECK: the server greets with 2xx, answers HELO with 250, then QUIT.

``helo_name`` defaults to keepalived's ``smtpchecker.keepalived.org``.  The
deprecated ``host { connect_ip ... }`` sub-blocks are accepted: each host is
checked in turn and all must answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pykeepalived.api import (
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    CheckTarget,
    Context,
    Grammar,
    Kw,
    Node,
    checker_kw,
    common_keywords,
    hookimpl,
    parse_block,
    string,
    tcp_connect,
)

DEFAULT_HELO = "smtpchecker.keepalived.org"


@dataclass
class SmtpOptions(CheckOptions):
    helo_name: str | None = None
    host: list[CheckOptions] = field(default_factory=list)


def _smtp_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("helo_name", string, 1, 1))
    host = BlockSpec("host")
    common_keywords(host)

    def conv(node: Node, ctx: Context) -> CheckOptions:
        ctx.warn(
            node.place,
            "The SMTP_CHECK host block is deprecated. Please define additional checkers.",
        )
        return CheckOptions(**parse_block(node.children, host, ctx))

    spec.add(Kw("host", conv, block=host, needs_block=True, multiple=True))


async def _reply(reader: asyncio.StreamReader) -> int:
    """Read one (possibly multi-line) SMTP reply; return its code."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if len(line) < 3 or not line[:3].isdigit():
            raise ConnectionError(f"bad SMTP reply {line[:40]!r}")
        if line[3:4] != b"-":
            return int(line[:3])


class SmtpCheck(BaseCheck):
    keyword: ClassVar[str] = "SMTP_CHECK"
    log_name: ClassVar[str] = "SMTP_CHECK"

    options: SmtpOptions

    def __init__(self, conf: Any, target: CheckTarget) -> None:
        super().__init__(conf, target)
        self.options = conf.options

    def _targets(self) -> list[CheckTarget]:
        out = [self.target]
        for h in self.options.host:
            out.append(
                dataclasses.replace(
                    self.target,
                    address=str(h.connect_ip) if h.connect_ip is not None else self.target.address,
                    port=h.connect_port if h.connect_port is not None else self.target.port,
                    bind_address=str(h.bindto)
                    if h.bindto is not None
                    else self.target.bind_address,
                    bind_port=h.bind_port or self.target.bind_port,
                )
            )
        return out if not self.options.host else out[1:]

    async def check(self) -> CheckResult:
        for target in self._targets():
            result = await self._one(target)
            if not result.ok:
                return result
        return CheckResult(True)

    async def _one(self, target: CheckTarget) -> CheckResult:
        where = f"[{target.address}]:{target.protocol.lower()}:{target.port}"
        reader, writer = await tcp_connect(target, self.timeout, self.options.fwmark)
        try:
            code = await _reply(reader)
            if code // 100 != 2:
                return CheckResult(False, f"SMTP connection ERROR to {where}.")
            helo = self.options.helo_name or DEFAULT_HELO
            writer.write(f"HELO {helo}\r\n".encode())
            code = await _reply(reader)
            if code != 250:
                return CheckResult(False, f"SMTP connection ERROR to {where}.")
            writer.write(b"QUIT\r\n")
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
            return CheckResult(True)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    def success_line(self, result: CheckResult) -> str:
        return f"Remote SMTP server {self.where} succeed on service."

    def attempt_failed_line(self, result: CheckResult) -> str:
        return result.message or f"SMTP connection ERROR to {self.where}."


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("SMTP_CHECK", SmtpOptions, _smtp_keywords))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"SMTP_CHECK": SmtpCheck}
