"""UDP_CHECK: send a datagram; judge the reply, or the absence of an ICMP error.

Without ``require_reply`` the server is up unless an ICMP error (port,
host or network unreachable) arrives within connect_timeout.  With it, a
reply must arrive, be min_reply_length..max_reply_length bytes long and,
when a HEX_STR is given, match it up to the shorter length, an ``X``
nibble matching anything (keepalived.conf(5)).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
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
    Invalid,
    Kw,
    Node,
    checker_kw,
    hookimpl,
    integer,
    make_socket,
)

MAX_REPLY = 255

#: A byte pattern: (value, mask) per byte; mask bits 0 are "don't care".
Pattern = tuple[tuple[int, int], ...]


def parse_hex(text: str, wildcards: bool = False) -> Pattern:
    """keepalived's free-form HEX_STR: groups of digits, pairs make bytes,
    a lone trailing digit is the low nibble ("Ab12f 3" -> AB 12 0F 03)."""
    out: list[tuple[int, int]] = []
    for group in text.split():
        if len(group) % 2:
            group = "0" + group if len(group) == 1 else group[:-1] + "0" + group[-1]
        for i in range(0, len(group), 2):
            value = mask = 0
            for ch in group[i : i + 2]:
                value <<= 4
                mask <<= 4
                if wildcards and ch in "xX":
                    continue
                try:
                    value |= int(ch, 16)
                except ValueError:
                    raise Invalid(f"Invalid hex string '{text}'") from None
                mask |= 0xF
            out.append((value, mask))
    return tuple(out)


def matches(pattern: Pattern, data: bytes) -> bool:
    return all(
        (b & mask) == (value & mask) for (value, mask), b in zip(pattern, data, strict=False)
    )


@dataclass
class UdpOptions(CheckOptions):
    payload: Pattern | None = None
    require_reply: Pattern | None = None
    min_reply_length: int = 0
    max_reply_length: int = MAX_REPLY

    def validate(self) -> None:
        if self.min_reply_length > self.max_reply_length:
            raise Invalid(
                f"UDP_CHECK min_reply length {self.min_reply_length} > max_reply_length "
                f"{self.max_reply_length} - will always fail"
            )


def _payload(node: Node, ctx: Context) -> Pattern:
    if not node.args:
        raise Invalid("UDP_CHECK payload requires a payload")
    return parse_hex(" ".join(node.args))


def _require_reply(node: Node, ctx: Context) -> Pattern:
    return parse_hex(" ".join(node.args), wildcards=True)


def _udp_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("payload", _payload, 1, None))
    spec.add(Kw("require_reply", _require_reply, 0, None))
    spec.add(Kw("min_reply_length", integer(0, 65535), 1, 1))
    spec.add(Kw("max_reply_length", integer(0, 65535), 1, 1))


class UdpCheck(BaseCheck):
    keyword: ClassVar[str] = "UDP_CHECK"
    log_name: ClassVar[str] = "UDP_CHECK"

    options: UdpOptions

    def __init__(self, conf: Any, target: CheckTarget) -> None:
        super().__init__(conf, target)
        self.options = conf.options

    @property
    def timeout(self) -> float:
        return float(self.options.connect_timeout or 5.0)

    async def check(self) -> CheckResult:
        opts = self.options
        payload = bytes(v for v, _ in opts.payload) if opts.payload else os.urandom(16)
        loop = asyncio.get_running_loop()
        sock = make_socket(self.target, socket.SOCK_DGRAM, fwmark=opts.fwmark)
        try:
            await loop.sock_connect(sock, (self.target.address, self.target.port))
            await loop.sock_sendall(sock, payload)
            try:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65536), self.timeout)
            except TimeoutError:
                if opts.require_reply is not None:
                    return CheckResult(False, "timeout")
                return CheckResult(True)  # no ICMP error: up
        finally:
            sock.close()
        if opts.require_reply is None:
            return CheckResult(True)
        if not opts.min_reply_length <= len(reply) <= opts.max_reply_length:
            return CheckResult(False, f"reply length {len(reply)} out of range")
        if not matches(opts.require_reply, reply):
            return CheckResult(False, "reply does not match")
        return CheckResult(True)

    def success_line(self, result: CheckResult) -> str:
        return f"UDP connection to {self.where} success."

    def attempt_failed_line(self, result: CheckResult) -> str:
        return f"UDP connection to {self.where} failed ({result.message})."


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("UDP_CHECK", UdpOptions, _udp_keywords))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"UDP_CHECK": UdpCheck}
