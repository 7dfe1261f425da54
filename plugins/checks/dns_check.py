"""DNS_CHECK: one query over UDP; up when the server answers it.

The query (``type``, default SOA; ``name``, default ".") is built by hand
(RFC 1035 section 4.1).  The answer must carry our id, the QR bit,
RCODE NOERROR, our question, and at least one answer record.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
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
    make_socket,
)

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


@dataclass
class DnsOptions(CheckOptions):
    type: str = "SOA"
    name: str = "."


def _qtype(node: Node, ctx: Context) -> str:
    word = node.args[0].upper()
    if word not in QTYPES:
        raise Invalid(f"DNS_CHECK type '{node.args[0]}' is not one of {', '.join(QTYPES)}")
    return word


def _name(node: Node, ctx: Context) -> str:
    name = node.args[0]
    if name != "." and any(not label for label in name.rstrip(".").split(".")):
        raise Invalid(f"DNS_CHECK name '{name}' has empty label")
    return name


def _dns_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("type", _qtype, 1, 1))
    spec.add(Kw("name", _name, 1, 1))


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        raw = label.encode("idna")
        if len(raw) > 63:
            raise ValueError(f"label '{label}' is longer than 63 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\x00"


def build_query(qid: int, name: str, qtype: str) -> bytes:
    """Header (RD set, one question) + question (RFC 1035 4.1.1, 4.1.2)."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", QTYPES[qtype], 1)


def check_reply(query: bytes, reply: bytes) -> str | None:
    """Why ``reply`` does not answer ``query``, or None when it does."""
    if len(reply) < 12:
        return "reply is too short"
    qid, flags, qdcount, ancount = struct.unpack("!HHHH", reply[:8])
    if qid != struct.unpack("!H", query[:2])[0]:
        return "ID does not match"
    if not flags & 0x8000:
        return "QR flag is not set"
    if flags & 0x000F:
        return f"RCODE is {flags & 0x000F}"
    question = query[12:]
    if qdcount != 1 or reply[12 : 12 + len(question)].lower() != question.lower():
        return "question does not match"
    if ancount == 0:
        return "no answer records"
    return None


class DnsCheck(BaseCheck):
    keyword: ClassVar[str] = "DNS_CHECK"
    log_name: ClassVar[str] = "DNS_CHECK"
    default_retry: ClassVar[int] = 3
    default_delay_before_retry: ClassVar[float | None] = None  # delay_loop

    options: DnsOptions

    def __init__(self, conf: Any, target: CheckTarget) -> None:
        if target.port is None:
            import dataclasses

            target = dataclasses.replace(target, port=53)
        super().__init__(conf, target)
        self.options = conf.options

    async def check(self) -> CheckResult:
        qid = struct.unpack("!H", os.urandom(2))[0]
        query = build_query(qid, self.options.name, self.options.type)
        loop = asyncio.get_running_loop()
        sock = make_socket(self.target, socket.SOCK_DGRAM, fwmark=self.options.fwmark)
        try:
            await loop.sock_connect(sock, (self.target.address, self.target.port))
            await loop.sock_sendall(sock, query)
            deadline = loop.time() + self.timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return CheckResult(False, "timeout")
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
                why = check_reply(query, reply)
                if why == "ID does not match":
                    continue  # a late answer to an earlier query
                if why is not None:
                    return CheckResult(False, why)
                return CheckResult(True)
        finally:
            sock.close()

    def success_line(self, result: CheckResult) -> str:
        return f"DNS_CHECK ({self.where}) succeed."

    def attempt_failed_line(self, result: CheckResult) -> str:
        return f"DNS_CHECK ({self.where}) {result.message}"


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("DNS_CHECK", DnsOptions, _dns_keywords))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"DNS_CHECK": DnsCheck}
