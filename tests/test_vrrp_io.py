"""core/vrrp/io.py's Sender and Receiver against the kernel, over a veth pair in a
namespace: what the receiver hands over (TTL / hop limit, source, destination, VRID),
its drop counters, a failing handler, and the header fields the sender sets (checked on
the received datagram: RFC 3768 5.2 / RFC 5798 5.1: TTL/hop limit 255, IPv4 TOS 0xc0)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_vrrp_rx_batching import netns as veth_netns  # noqa: F401  (the fixture)

pytestmark = pytest.mark.netns

SCRIPT = r"""
import asyncio, ipaddress, json, socket
from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp.io import Receiver, Sender

def advert(vrid, family):
    addr = "198.51.100.7" if family == socket.AF_INET else "2001:db8::7"
    adv = pk.make_advert(version=2 if family == socket.AF_INET else 3, vrid=vrid, priority=150, advert_int=1,
                         addresses=(ipaddress.ip_address(addr),),
                         auth_type=pk.AuthType.NONE, auth_pass="", family=family)
    return adv

out = {}

async def run(family, group, src, dst_ok):
    loop = asyncio.get_running_loop()
    fam = 4 if family == socket.AF_INET else 6
    rx = Receiver("v0", fam, {group}, with_ah=False)
    got, raw = [], []
    def bad(pkt):
        raise RuntimeError("handler bug")
    rx.add(7, bad)  # a failing handler must not keep the packet from the next one
    rx.add(7, lambda p: got.append([p.vrid, p.ttl, str(p.src), str(p.dst), p.proto]))
    rx.start(loop)
    # A plain raw socket beside the receiver sees the IPv4 header as sent.
    if fam == 4:
        spy = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
        spy.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"v0")
        spy.setblocking(False)
    tx = Sender("v1", fam, src)
    a7 = advert(7, family)
    payload = pk.encode_advert(a7)  # IPv6: checksum 0, the kernel fills it (IPV6_CHECKSUM)
    tx.send(payload, group)
    tx.send(pk.encode_advert(advert(9, family)), group)  # no instance has VRID 9
    tx.send(b"\x31", group)                                # too short for a VRID
    await asyncio.sleep(0.3)
    if fam == 4:
        while True:
            try:
                data = spy.recv(8192)
            except BlockingIOError:
                break
            raw.append([data[1], data[8], len(data) - 20])
        spy.close()
    rx.close(); tx.close()
    out[str(fam)] = {"got": got, "drops": rx.drops, "raw": raw}

async def main():
    await run(socket.AF_INET, "224.0.0.18", "192.0.2.1", True)
    await run(socket.AF_INET6, "ff02::12", "fe80::1", True)

asyncio.run(main())
print(json.dumps(out))
"""


def test_sender_and_receiver_over_the_kernel(
    veth_netns: str,  # noqa: F811  (the fixture imported above)
) -> None:
    # A link-local source for the IPv6 sender, usable at once (no DAD wait).
    subprocess.run(
        ["ip", "-n", veth_netns, "-6", "addr", "add", "fe80::1/64", "dev", "v1", "nodad"],
        check=True,
    )
    res = subprocess.run(
        ["ip", "netns", "exec", veth_netns, sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    v4, v6 = out["4"], out["6"]
    # The second handler got the packet although the first raised (logged, not fatal).
    assert v4["got"] == [[7, 255, "192.0.2.1", "224.0.0.18", 112]]
    assert v6["got"] == [[7, 255, "fe80::1", "ff02::12", 112]]
    assert "VRRP handler for VRID 7 on v0 failed" in res.stderr
    # Dropped without an instance: one unknown VRID, one too short.  (IPv6: the kernel
    # refuses to send 1 byte with a checksum at offset 6; the sender logs it, no raise.)
    assert v4["drops"] == {"short": 1, "unknown_vrid": 1}
    assert v6["drops"] == {"short": 0, "unknown_vrid": 1}
    assert "VRRP send to ff02::12 on v1 failed" in res.stderr
    # On the wire: TOS 0xc0 (internetwork control, as keepalived), TTL 255.
    assert [r[:2] for r in v4["raw"]] == [[0xC0, 255]] * 3, v4["raw"]
