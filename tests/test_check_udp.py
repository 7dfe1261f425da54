"""UDP_CHECK against a UDP echo server and a closed port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from checkhelp import one_checker

from pykeepalived.core.lvs.checking import run_attempt
from pykeepalived.plugins.checks.udp_check import matches, parse_hex


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"\xab\x12" + data, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


def closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_hex_strings_as_keepalived_reads_them() -> None:
    assert bytes(v for v, _ in parse_hex("Ab12f 3 456 546443123")) == bytes.fromhex(
        "AB120F034506546443 1203".replace(" ", "")
    )
    pattern = parse_hex("ab1x", wildcards=True)
    assert matches(pattern, b"\xab\x15") and not matches(pattern, b"\xab\x25")


async def test_reply_required_and_matched(echo_port: int) -> None:
    block = "UDP_CHECK {\n connect_timeout 0.5\n payload 01 02\n require_reply ab 1x\n min_reply_length 4\n}"
    assert (await run_attempt(one_checker(block, port=echo_port), 2)).ok
    wrong = "UDP_CHECK {\n connect_timeout 0.5\n require_reply cd\n}"
    assert not (await run_attempt(one_checker(wrong, port=echo_port), 2)).ok
    too_long = "UDP_CHECK {\n connect_timeout 0.5\n require_reply\n max_reply_length 3\n}"
    assert not (await run_attempt(one_checker(too_long, port=echo_port), 2)).ok


async def test_icmp_port_unreachable_is_down_and_silence_is_up(echo_port: int) -> None:
    port = closed_udp_port()
    result = await run_attempt(one_checker("UDP_CHECK {\n connect_timeout 0.5\n}", port=port), 2)
    assert not result.ok
    # no require_reply: no ICMP error within connect_timeout means up
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        checker = one_checker("UDP_CHECK {\n connect_timeout 0.3\n}", port=silent.getsockname()[1])
        assert (await run_attempt(checker, 2)).ok
        checker = one_checker(
            "UDP_CHECK {\n connect_timeout 0.3\n require_reply\n}", port=silent.getsockname()[1]
        )
        assert not (await run_attempt(checker, 2)).ok
    finally:
        silent.close()
