"""PING_CHECK: ICMP echo to loopback."""

from __future__ import annotations

import socket

import pytest
from checkhelp import one_checker

from pykeepalived.core.lvs.checking import run_attempt
from pykeepalived.plugins.checks.ping_check import _open, checksum, echo_request


def _can_ping() -> bool:
    try:
        s, _ = _open(False)
    except OSError:
        return False
    s.close()
    return True


def test_checksum_of_echo_request() -> None:
    packet = echo_request(False, 0x1234, 1, b"abcd")
    assert checksum(packet) == 0  # a correct checksum sums to zero


@pytest.mark.skipif(not _can_ping(), reason="neither ICMP datagram nor raw sockets are allowed")
async def test_ping_loopback() -> None:
    assert (await run_attempt(one_checker("PING_CHECK {\n connect_timeout 1\n}"), 2)).ok
    if socket.has_ipv6:
        result = await run_attempt(
            one_checker("PING_CHECK {\n connect_timeout 1\n}", address="::1"), 2
        )
        assert result.ok, result.message


@pytest.mark.skipif(not _can_ping(), reason="neither ICMP datagram nor raw sockets are allowed")
async def test_ping_that_cannot_be_sent_is_down() -> None:
    # bind_if names a device that does not exist: the attempt fails, the check is down
    checker = one_checker("PING_CHECK {\n connect_timeout 0.3\n bind_if pka-nosuchdev\n}")
    assert not (await run_attempt(checker, 1)).ok
