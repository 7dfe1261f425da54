"""SMTP_CHECK against aiosmtpd, a silent server and a closed port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from checkhelp import one_checker

from pykeepalived.core.lvs.checking import run_attempt


class Handler:
    helos: list[str] = []

    async def handle_HELO(
        self, server: object, session: object, envelope: object, hostname: str
    ) -> str:
        self.helos.append(hostname)
        session.host_name = hostname  # type: ignore[attr-defined]
        return "250 ok"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port
    finally:
        ctl.stop()


async def test_smtp_up_with_helo_name(smtp_port: int) -> None:
    Handler.helos.clear()
    checker = one_checker(
        'SMTP_CHECK {\n connect_timeout 2\n helo_name "lb.example.test"\n}', port=smtp_port
    )
    result = await run_attempt(checker, 3)
    assert result.ok, result.message
    assert Handler.helos == ["lb.example.test"]


async def test_smtp_silent_server_and_closed_port() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        checker = one_checker("SMTP_CHECK {\n connect_timeout 0.5\n}", port=port)
        result = await run_attempt(checker, 2)
        assert not result.ok
    finally:
        silent.close()
    result = await run_attempt(one_checker("SMTP_CHECK {\n connect_timeout 0.5\n}", port=port), 2)
    assert not result.ok


async def test_greeting_that_is_not_2xx() -> None:
    async def busy(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"554 no service\r\n")
        await w.drain()
        w.close()

    srv = await asyncio.start_server(busy, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        result = await run_attempt(one_checker("SMTP_CHECK {\n connect_timeout 1\n}", port=port), 2)
        assert not result.ok and "SMTP connection ERROR" in result.message
    finally:
        srv.close()
