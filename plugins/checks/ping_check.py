"""PING_CHECK: an ICMP (or ICMPv6) echo request must get its echo reply.

Uses an unprivileged ICMP datagram socket when ``net.ipv4.ping_group_range``
allows it (the kernel then matches replies to the socket), else a raw
socket (root), where replies are matched by identifier and sequence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from typing import ClassVar

from pykeepalived.api import (
    BaseCheck,
    Checker,
    CheckOptions,
    CheckResult,
    Grammar,
    checker_kw,
    hookimpl,
)

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMP6_ECHO, ICMP6_ECHOREPLY = 128, 129


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    kind = ICMP6_ECHO if v6 else ICMP_ECHO
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum (it covers a pseudo-header)
        return head + payload
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload


def _open(v6: bool) -> tuple[socket.socket, bool]:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except PermissionError:
        return socket.socket(family, socket.SOCK_RAW, proto), True


class PingCheck(BaseCheck):
    keyword: ClassVar[str] = "PING_CHECK"
    log_name: ClassVar[str] = "ICMP CHECK"

    _seq = 0

    async def check(self) -> CheckResult:
        v6 = ipaddress.ip_address(self.target.address).version == 6
        sock, raw = _open(v6)
        try:
            sock.setblocking(False)
            if self.target.bind_interface:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.target.bind_interface.encode()
                )
            if self.target.bind_address:
                sock.bind((self.target.bind_address, 0))
            loop = asyncio.get_running_loop()
            PingCheck._seq = (PingCheck._seq + 1) & 0xFFFF
            seq = PingCheck._seq
            ident = os.getpid() & 0xFFFF
            payload = os.urandom(16)
            await loop.sock_sendto(
                sock, echo_request(v6, ident, seq, payload), (self.target.address, 0)
            )
            deadline = loop.time() + self.timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return CheckResult(False, "timeout")
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), left)
                if raw and not v6:
                    data = data[(data[0] & 0x0F) * 4 :]  # strip the IPv4 header
                if len(data) < 8:
                    continue
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
                if kind != (ICMP6_ECHOREPLY if v6 else ICMP_ECHOREPLY) or rseq != seq:
                    continue
                if raw and rid != ident:
                    continue
                if data[8:] != payload:
                    continue
                return CheckResult(True)
        finally:
            sock.close()

    def success_line(self, result: CheckResult) -> str:
        return f"ICMP connection to {self.where} success."

    def failure_line(self, result: CheckResult, retries: int) -> str:
        if retries:
            return f"ICMP CHECK on service {self.where} of {self.target.virtual_server} failed after {retries} retries."
        return f"ICMP CHECK on service {self.where} failed."

    def attempt_failed_line(self, result: CheckResult) -> str:
        if result.message.startswith("timeout"):
            return f"ICMP connection to address {self.target.address} timeout."
        return f"ICMP connection to {self.where} of {self.target.virtual_server} failed."


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("PING_CHECK", CheckOptions))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"PING_CHECK": PingCheck}
