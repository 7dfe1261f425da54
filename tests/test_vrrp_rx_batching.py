"""io.Receiver's batched reads, and a backup reading queued adverts before
declaring its master down, against real sockets in a namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.netns

# Runs inside the namespace (veth v0 <-> v1); prints one JSON object.
SCRIPT = r"""
import asyncio, ipaddress, json, socket, struct
from pykeepalived.core.config import load_text
from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.vrrp.io import Receiver
from pykeepalived.core.vrrp.manager import VrrpManager

def advert(vrid, prio):
    adv = pk.make_advert(version=2, vrid=vrid, priority=prio, advert_int=1,
                         addresses=(ipaddress.ip_address(f"198.51.100.{vrid}"),),
                         auth_type=pk.AuthType.NONE, auth_pass="", family=socket.AF_INET)
    return pk.encode_advert(adv)

tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"v1")
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
              socket.inet_aton("0.0.0.0") + socket.inet_aton("192.0.2.1")
              + struct.pack("@i", socket.if_nametoindex("v1")))
tx.bind(("192.0.2.1", 0))

def send(vrid, prio=150):
    tx.sendto(advert(vrid, prio), ("224.0.0.18", 0))

out = {}

async def batching():
    loop = asyncio.get_running_loop()
    rx = Receiver("v0", 4, {"224.0.0.18"}, with_ah=False, batch_interval=0.3)
    got = []
    rx.add(7, lambda pkt: got.append((loop.time(), pkt.vrid)))
    rx.start(loop)
    t0 = loop.time()
    send(7); await asyncio.sleep(0.02)
    send(7); await asyncio.sleep(0.02)   # second wake within 0.3 s: batching
    out["batching"] = rx._batching
    send(7); await asyncio.sleep(0.05)
    out["held"] = len(got)                # the third waits in the socket
    out["drained"] = rx.drain()
    out["after_drain"] = len(got)
    send(7); await asyncio.sleep(0.4)      # picked up by the timed read
    out["timed"] = len(got)
    await asyncio.sleep(0.4)               # a timed read found nothing
    out["listening_again"] = not rx._batching
    send(7); await asyncio.sleep(0.02)
    out["immediate"] = len(got)
    rx.close()

async def no_false_takeover():
    # A backup whose master-down timer is due while the master's advert
    # still waits in a batching receiver must read it and stay BACKUP.
    loop = asyncio.get_running_loop()
    conf = "global_defs {\n router_id t\n}\n" + "".join(
        f"vrrp_instance VI_{k} {{\n state BACKUP\n interface v0\n virtual_router_id {k}\n"
        f" priority 100\n advert_int 1\n virtual_ipaddress {{\n 198.51.100.{k}/32\n }}\n}}\n"
        for k in (1, 2)
    )
    mgr = VrrpManager(Netlink(), lambda e: None)
    mgr.start(load_text(conf).config, loop)
    rx = next(iter(mgr.receivers.values()))
    rx.batch_interval = 5.0     # far longer than the master-down interval
    inst = mgr.instances["VI_1"]
    send(1); await asyncio.sleep(0.05)
    send(2); await asyncio.sleep(0.05)     # second wake: batching from now on
    out["mgr_batching"] = rx._batching
    t_end = loop.time() + 6.0
    while loop.time() < t_end:             # adverts every second, only VI_1's
        send(1)
        await asyncio.sleep(1.0)
    out["vi1"] = inst.state.value          # kept BACKUP although reads wait 5 s
    out["vi1_masters"] = inst.counters["became_master"]
    out["vi2"] = mgr.instances["VI_2"].state.value  # its master is gone: MASTER
    mgr.stop()

asyncio.run(batching())
asyncio.run(no_false_takeover())
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"pka-rxb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            ["addr", "add", "192.0.2.2/24", "dev", "v0"],
            ["addr", "add", "192.0.2.1/24", "dev", "v1"],
            ["link", "set", "v0", "up"],
            ["link", "set", "v1", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        # Both ends live in one namespace: accept the peer's "local" source.
        subprocess.run(
            [
                "ip", "netns", "exec", name, "sysctl", "-qw",
                "net.ipv4.conf.v0.accept_local=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.v0.rp_filter=0",
            ],
            check=True,
        )  # fmt: skip
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_batched_reads_and_drain_before_master_down(netns: str) -> None:
    res = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["batching"] is True
    assert out["held"] == 2
    assert out["drained"] == 1 and out["after_drain"] == 3
    assert out["timed"] == 4
    assert out["listening_again"] is True
    assert out["immediate"] == 5
    assert out["mgr_batching"] is True
    assert out["vi1"] == "BACKUP" and out["vi1_masters"] == 0
    assert out["vi2"] == "MASTER"
