"""Tests of the network-namespace lab (testing/lab.py) and its pytest plugin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pykeepalived.testing.lab import (
    Lab,
    LabError,
    cleanup_stale,
    wait_for,
    wait_until,
)
from pykeepalived.testing.pytest_plugin import LabFactory

pytestmark = pytest.mark.netns

NETNS_DIR = Path("/run/netns")


def _exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def test_hosts_ping_v4_v6(lab: LabFactory) -> None:
    lb = lab(2)
    a, b = lb.hosts
    assert (a.ip4, b.ip4) == ("192.0.2.11", "192.0.2.12")
    assert (a.ip6, b.ip6) == ("2001:db8::11", "2001:db8::12")
    assert {a.ip4, a.ip6} <= a.addresses()
    assert f"{a.ip4}/24" in a.addresses(with_prefix=True)
    assert a.run(["ip", "-br", "link", "show", "lo"]).stdout.split()[1] == "UNKNOWN"
    assert a.ping(b.ip4)
    assert b.ping(a.ip6)
    assert lb["h1"] is a and lb[1] is b and len(lb) == 2
    # Names are unique per lab and interface names are short.
    assert all(ns.startswith("pka-") for ns in lb.namespaces)
    client = lb.add_host("client")
    assert client.ip4 == "192.0.2.13"
    assert client.ping(a.ip4) and client.ping(b.ip6)
    assert lb.host("client") is client


def test_parallel_labs_do_not_clash(lab: LabFactory) -> None:
    l1, l2 = lab(1), lab(1)
    assert not set(l1.namespaces) & set(l2.namespaces)
    assert l1.hosts[0].ip4 == l2.hosts[0].ip4
    # Each lab is its own L2 segment: l1's host does not see l2's host.
    l1.hosts[0].ip("addr", "add", "192.0.2.50/24", "dev", "eth0")
    assert not l2.hosts[0].ping("192.0.2.50", timeout=0.3)


def test_link_set(lab: LabFactory) -> None:
    a, b = lab(2).hosts
    a.link_set("eth0", up=False)
    assert not b.ping(a.ip4, timeout=0.3)
    a.link_set("eth0", up=True)
    assert wait_until(lambda: b.ping(a.ip4, timeout=0.3), timeout=5)


def test_popen_killed_at_teardown() -> None:
    with Lab(1) as lb:
        h = lb.hosts[0]
        created = lb.namespaces
        # A shell with a child in the same process group, and one that ignores SIGTERM.
        p1 = h.popen(["sh", "-c", "sleep 300 & wait"])
        p2 = h.popen(["sh", "-c", "trap '' TERM; sleep 300 & wait"])
        # Untracked daemon started via run(): found through `ip netns pids`.
        h.run(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null &"])
        wait_until(lambda: len(_netns_pids(h.netns)) >= 5, timeout=3)
        pids = _netns_pids(h.netns)
        start = time.monotonic()
    assert time.monotonic() - start < 5
    assert p1.poll() is not None and p2.poll() is not None
    wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=3)
    assert not any(_exists(ns) for ns in [*created, h.netns, lb.bridge_netns])


def _netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_namespaces_gone_when_body_raises() -> None:
    created: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), Lab(2) as lb:
        created = lb.namespaces
        assert len(created) == 3 and all(_exists(ns) for ns in created)
        lb.hosts[0].popen(["sleep", "300"])
        raise RuntimeError("boom")
    assert lb.closed
    assert not any(_exists(ns) for ns in created)
    with pytest.raises(LabError):
        lb.add_host("late")


def test_drop_random(lab: LabFactory) -> None:
    a, b = lab(2).hosts
    # VRRP-only loss leaves ICMP alone.
    b.drop_random(100, proto="vrrp")
    assert a.ping(b.ip4)
    b.drop_random(100, proto="all")
    assert not a.ping(b.ip4, timeout=0.3)
    assert not a.ping(b.ip6, timeout=0.3)
    b.drop_random(0)
    assert a.ping(b.ip4) and a.ping(b.ip6)
    b.drop_random(100, proto="all")
    assert not a.ping(b.ip4, timeout=0.3)
    b.clear_drop()
    assert a.ping(b.ip4)
    b.drop_random(30, proto="all")
    rules = b.run(["nft", "list", "table", "inet", "pka_loss"]).stdout
    assert "numgen random mod 100 < 30" in rules and "drop" in rules
    b.drop_random(0)
    with pytest.raises(ValueError):
        b.drop_random(101)


async def test_wait_for_vip(lab: LabFactory) -> None:
    lb = lab(1)
    h = lb.hosts[0]
    vip = lb.vip4()
    assert vip not in await h.aaddresses()
    h.ip("addr", "add", f"{vip}/32", "dev", "eth0")
    assert await wait_for(lambda: vip in h.addresses(), timeout=2)

    async def present() -> bool:
        return lb.vip6(1) in await h.aaddresses()

    await h.arun(["ip", "addr", "add", f"{lb.vip6(1)}/128", "dev", "eth0", "nodad"])
    assert await wait_for(present, timeout=2)
    with pytest.raises(TimeoutError, match="never"):
        await wait_for(lambda: False, timeout=0.1, interval=0.02, message="never")
    res = await h.arun(["false"], check=False)
    assert res.returncode == 1


_CHILD = """
import json, os, signal, sys, time
from pykeepalived.testing.lab import Lab
lab = Lab(1).start()
lab.hosts[0].popen(["sleep", "300"], stdout=-3, stderr=-3)
print(json.dumps(lab.namespaces), flush=True)
if sys.argv[1] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
# "exit": leave the lab open; the atexit hook must clean it up.
"""


def _child(mode: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=15
    )
    expected = -signal.SIGKILL if mode == "crash" else 0
    assert proc.returncode == expected, proc.stderr
    names: list[str] = json.loads(proc.stdout.splitlines()[0])
    return names


def test_atexit_cleanup() -> None:
    names = _child("exit")
    assert names and not any(_exists(ns) for ns in names)


def test_cleanup_stale_removes_leaked(lab: LabFactory) -> None:
    mine = lab(1)  # a live lab of this process must survive
    leaked = _child("crash")
    assert leaked and all(_exists(ns) for ns in leaked)
    leaked_pids = [pid for ns in leaked for pid in _netns_pids(ns)]
    assert leaked_pids  # the orphaned `sleep` lives on in the namespace
    # Default: only namespaces older than this process count as stale.
    assert not set(cleanup_stale()) & set(leaked)
    removed = cleanup_stale(older_than=time.time() + 1)
    assert set(leaked) <= set(removed)
    assert not set(removed) & set(mine.namespaces)
    assert not any(_exists(ns) for ns in leaked)
    assert all(_exists(ns) for ns in mine.namespaces)
    wait_until(lambda: not any(_alive(pid) for pid in leaked_pids), timeout=3)


def test_pykeepalived_plugin_fixture_starts_empty(pykeepalived_plugin: list[object]) -> None:
    # A fresh list per test: plugins of one test never leak into the next.  (That an
    # appended plugin reaches the registry is tests/test_pytest_plugin.py's check.)
    assert pykeepalived_plugin == []


def test_free_port(free_port: int) -> None:
    # Free: a listener can take it on 127.0.0.1 right away.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port))
        sock.listen()


def test_teardown_signals_the_started_group_only() -> None:
    """The lab kills what it started (the child and its own children) and never the
    test process's own process group."""
    with Lab(1) as lb:
        proc = lb.hosts[0].popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert os.getpgid(proc.pid) == proc.pid != os.getpgrp()
        assert os.getpgid(grandchild) == proc.pid
    assert proc.poll() is not None
    wait_until(lambda: not _alive(grandchild), timeout=5)


_RECV_VRRP = r"""
import select, socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_RAW, 112)
if fam == socket.AF_INET6:
    mreq = socket.inet_pton(fam, "ff02::12") + socket.if_nametoindex("eth0").to_bytes(4, "little")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
else:
    # ip_mreqn with the ifindex: the namespaces have no multicast/default route.
    idx = socket.if_nametoindex("eth0").to_bytes(4, sys.byteorder)
    mreq = socket.inet_aton("224.0.0.18") + socket.inet_aton("0.0.0.0") + idx
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("ready", flush=True)
sys.exit(0 if select.select([s], [], [], float(sys.argv[2]))[0] else 1)
"""

_SEND_VRRP = r"""
import socket, sys, time
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_RAW, 112)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
    dst = ("ff02::12", 0, 0, socket.if_nametoindex("eth0"))
else:
    idx = socket.if_nametoindex("eth0").to_bytes(4, sys.byteorder)
    mreqn = socket.inet_aton("224.0.0.18") + socket.inet_aton("0.0.0.0") + idx
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
    dst = ("224.0.0.18", 0)
for _ in range(5):
    s.sendto(b"\x31\x01\x64\x00\x00\x01\x00\x00", dst)
    time.sleep(0.02)
"""


@pytest.mark.parametrize("family", ["4", "6"])
def test_vrrp_multicast_crosses_bridge_and_can_be_dropped(lab: LabFactory, family: str) -> None:
    a, b = lab(2).hosts

    def delivered(timeout: float) -> bool:
        rx = b.popen(
            [sys.executable, "-c", _RECV_VRRP, family, str(timeout)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        a.run([sys.executable, "-c", _SEND_VRRP, family])
        return rx.wait(timeout=timeout + 5) == 0

    assert delivered(2.0)
    b.drop_random(100, proto="vrrp")
    assert not delivered(0.3)
    b.clear_drop()
    assert delivered(2.0)
