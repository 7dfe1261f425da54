"""DNS_CHECK against a tiny UDP responder."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
from checkhelp import one_checker

from pykeepalived.core.lvs.checking import run_attempt
from pykeepalived.plugins.checks.dns_check import build_query, check_reply

MODE = {"value": "answer"}


class Responder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        mode = MODE["value"]
        if mode == "silent":
            return
        qid, _, qd = struct.unpack("!HHH", data[:6])
        question = data[12:]
        rcode = 3 if mode == "nxdomain" else 0
        ancount = 1 if mode == "answer" else 0
        header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, qd, ancount, 0, 0)
        answer = (
            b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
            if ancount
            else b""
        )
        self.transport.sendto(header + question + answer, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def dns_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
    MODE["value"] = "answer"
    yield transport.get_extra_info("sockname")[1]
    transport.close()


def test_query_wire_format() -> None:
    q = build_query(0x1234, "www.example.test", "A")
    assert q[:12] == bytes.fromhex("123401000001000000000000")
    assert q[12:] == b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    assert build_query(1, ".", "SOA")[12:] == b"\x00\x00\x06\x00\x01"
    assert check_reply(q, q) == "QR flag is not set"


async def test_dns_check(dns_port: int) -> None:
    checker = one_checker(
        "DNS_CHECK {\n connect_timeout 0.5\n type A\n name www.example.test\n}", port=dns_port
    )
    assert checker.conf.options.retry == 3  # keepalived's DNS_CHECK default
    assert (await run_attempt(checker, 2)).ok
    MODE["value"] = "nxdomain"
    result = await run_attempt(checker, 2)
    assert not result.ok and result.message == "RCODE is 3"
    MODE["value"] = "empty"
    assert (await run_attempt(checker, 2)).message == "no answer records"
    MODE["value"] = "silent"
    assert not (await run_attempt(checker, 2)).ok
