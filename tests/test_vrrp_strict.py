"""vrrp_strict / no_accept / accept with real traffic in namespaces.

keepalived 2.2.7 (vrrp.c vrrp_complete_instance, vrrp_nftables.c): accept
mode is on by default, off in strict mode, off with ``no_accept``, always on
for the address owner; without it, a MASTER drops traffic to its VIPs with
nftables sets that follow the VIPs.  The tests send pings and TCP connects
from a client to the VIP of a MASTER, compare our ruleset with the one
keepalived 2.2.7 makes for the same configuration (``nft list ruleset``,
table name aside), and check a kill -9 and a restart leave no drop rule.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.vrrp.nft_accept import NFT_TABLE
from pykeepalived.testing.daemons import (
    KaNode,
    Node,
    PyNode,
    global_defs,
    instance,
    wait_holder,
)
from pykeepalived.testing.lab import Host, Lab, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
VIP6 = "2001:db8::100"
VIP6_LL = "fe80::100"
PORT = 8080

_LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""
_CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0).close()
except OSError:
    sys.exit(1)
"""


def conf(extra_global: str = "", extra: str = "", *, priority: int = 150, k: int = 100) -> str:
    """IPv4 and IPv6 (link-local first, as strict mode wants) instances with
    VIPs ending in ``k`` (and VRIDs to match, so two pairs never meet)."""
    return (
        global_defs("r1", extra_global)
        + instance(
            vrid=k - 49,
            priority=priority,
            version=3,
            advert_int=0.2,
            vips=(f"192.0.2.{k}/24",),
            extra=extra,
        )
        + instance(
            "VI_6",
            vrid=k - 48,
            priority=priority,
            version=3,
            advert_int=0.2,
            vips=(f"fe80::{k}/64", f"2001:db8::{k}/64"),
            extra=extra,
        )
    )


def ruleset(host: Host) -> str:
    return host.run(["nft", "list", "ruleset"]).stdout


def tcp_ok(client: Host, dst: str) -> bool:
    res = client.run(["python3", "-c", _CONNECT, dst, str(PORT)], check=False)
    return res.returncode == 0


def listen(host: Host) -> subprocess.Popen[str]:
    proc = host.popen(["python3", "-c", _LISTENER, str(PORT)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def masters(node: Node, n: int = 2) -> None:
    wait_until(
        lambda: node.count("Entering MASTER STATE") >= n,
        timeout=15,
        message=f"{node.label} not MASTER",
    )


def normalized(text: str, table: str) -> str:
    """A ruleset with the table name and layout whitespace made comparable."""
    text = text.replace(f" {table} ", " T ")
    return re.sub(r"\s+", " ", text).strip()


def test_semantics_accept_defaults() -> None:
    """keepalived's defaults: strict turns accept off unless owner; VRRPv2
    with accept in strict mode is reset with a config error."""

    def acc(text: str) -> tuple[bool | None, list[str]]:
        res = load_text(text)
        warnings = [d.message for d in res.diagnostics.warnings]
        return res.config.vrrp_instances[0].accept, warnings

    assert acc(instance())[0] is True
    assert acc(instance(extra="    no_accept"))[0] is False
    assert acc(global_defs("r", "    vrrp_strict\n") + instance(version=3))[0] is False
    owner = global_defs("r", "    vrrp_strict\n") + instance(
        version=3, priority=255, state="MASTER"
    )
    assert acc(owner)[0] is True
    accept, warnings = acc(global_defs("r", "    vrrp_strict\n") + instance(extra="    accept"))
    assert accept is False
    assert any("accept mode for VRRP version 2 does not comply" in w for w in warnings)
    assert acc(global_defs("r", "    vrrp_strict\n") + instance(version=3, extra="    accept"))[0]
    # the other strict-mode resets, each with keepalived's words
    strict = global_defs("r", "    vrrp_strict\n")
    res = load_text(
        strict
        + instance(version=3, state="MASTER", vips=("2001:db8::1/64",))
        + instance(
            "VI_2",
            vrid=2,
            version=3,
            preempt_delay=5,
            extra="    use_vmac vrrp.2 02:00:00:00:00:02",
        )
    )
    vi, vi2 = res.config.vrrp_instances
    words = [d.message for d in res.diagnostics.warnings]
    assert vi.state == "BACKUP" and vi2.preempt_delay == 0 and vi.lower_prio_no_advert
    assert "use_vmac_mac" not in vi2.ext
    for text in (
        "(VI_1) State MASTER must match being address owner",
        "(VI_2) preempt_delay is incompatible with strict mode - resetting",
        "(VI_1) the first IPv6 VIP address must be link local",
        "(VI_2): cannot specify MAC address with strict mode - clearing",
    ):
        assert text in words, words


def test_no_accept_drops_vip_traffic_like_keepalived(lab: object, tmp_path: Path) -> None:
    lb: Lab = lab(3)  # type: ignore[operator]
    h1, client, h3 = lb[0], lb[1], lb[2]
    strict = conf("    vrrp_strict\n")
    listener = listen(h1)
    # keepalived 2.2.7 with the same configuration (other VIPs and VRIDs)
    ka = KaNode(h3, tmp_path).start(conf("    vrrp_strict\n", k=101))
    node = PyNode(h1, tmp_path).start(strict)
    try:
        # BACKUP first: the tables are there, the sets are empty
        wait_until(lambda: f"table ip {NFT_TABLE}" in ruleset(h1), timeout=10)
        assert VIP not in ruleset(h1)
        masters(node)
        wait_holder([h1], VIP, "h1", 10)
        rules = ruleset(h1)
        assert re.search(r"elements = \{ 192\.0\.2\.100 \}", rules), rules
        assert f"{VIP6_LL} . " in rules and VIP6 in rules, rules
        # the same layout as keepalived's
        masters(ka)
        wait_until(lambda: "2001:db8::101" in ruleset(h3), timeout=10)
        theirs = ruleset(h3)
        ka.terminate()
        assert ruleset(h3).strip() == ""  # keepalived removes its tables at stop
        assert normalized(rules, NFT_TABLE) == normalized(
            theirs.replace("::101", "::100").replace(".101", ".100"), "keepalived"
        ), f"ours:\n{rules}\nkeepalived:\n{theirs}"

        # traffic to the VIP is dropped, to the host's own address it is not
        assert client.ping(h1.ip4)
        assert client.ping(VIP6_LL.replace("100", "1"), timeout=0.5) is False
        assert not client.ping(VIP, timeout=1.0)
        assert not client.ping(VIP6, timeout=1.0)
        assert tcp_ok(client, h1.ip4)
        assert not tcp_ok(client, VIP)
        # the MASTER answers ARP/ND for the VIP all the same (the client
        # learnt the MASTER's MAC): only the IP traffic is dropped
        assert VIP in client.ip("neigh", "show", VIP).stdout

        # kill -9: the rules stay behind (nothing removed them)...
        node.kill()
        assert VIP in ruleset(h1)
        h1.ip("addr", "del", f"{VIP}/24", "dev", "eth0", check=False)
        # ...and a restart in accept mode removes them before anything else
        node = PyNode(h1, tmp_path, label="pyk-restart").start(conf())
        wait_until(lambda: NFT_TABLE not in ruleset(h1), timeout=10)
        masters(node)
        wait_holder([h1], VIP, "h1", 10)
        assert client.ping(VIP, timeout=2.0)
        assert tcp_ok(client, VIP)
        assert NFT_TABLE not in ruleset(h1)
    finally:
        node.terminate()
        listener.kill()


def test_rules_follow_the_vips_and_go_at_stop(lab: object, tmp_path: Path) -> None:
    """no_accept without strict mode; the rules leave with the VIPs when a
    higher-priority peer takes over, come back with them, go at SIGTERM."""
    lb: Lab = lab(3)  # type: ignore[operator]
    h1, h2, client = lb[0], lb[1], lb[2]
    low = PyNode(h1, tmp_path).start(conf(extra="    no_accept", priority=100))
    try:
        masters(low)
        assert VIP in ruleset(h1)
        assert not client.ping(VIP, timeout=1.0)
        high = PyNode(h2, tmp_path).start(conf(extra="    no_accept", priority=200))
        try:
            masters(high)
            wait_until(lambda: VIP not in h1.addresses(), timeout=10)
            wait_until(lambda: VIP not in ruleset(h1), timeout=5)
            assert f"table ip {NFT_TABLE}" in ruleset(h1)  # the table stays
        finally:
            high.signal(signal.SIGTERM)
        low.mark()
        masters(low, 1)
        wait_until(lambda: VIP in ruleset(h1), timeout=5)
        assert not client.ping(VIP, timeout=1.0)
        # a reload into accept mode takes the rules away at once (keepalived
        # vrrp.c: accept mode changed for a kept instance), VIPs untouched
        low.reload(conf(priority=100))
        wait_until(lambda: VIP not in ruleset(h1), timeout=5)
        assert client.ping(VIP, timeout=2.0)
        assert low.count("Entering BACKUP STATE") == 0
        # ...and back into no_accept brings them back while MASTER
        low.reload(conf(extra="    no_accept", priority=100))
        wait_until(lambda: VIP in ruleset(h1), timeout=5)
        assert not client.ping(VIP, timeout=1.0)
    finally:
        low.terminate()
    assert NFT_TABLE not in ruleset(h1)
    assert VIP not in h1.addresses()


def test_nftables_keywords_name_the_table_as_keepalived(lab: object, tmp_path: Path) -> None:
    """global_defs ``nftables`` (no name: "keepalived") and
    ``nftables_priority``: with the same settings both rulesets are
    identical, table name included."""
    lb: Lab = lab(2)  # type: ignore[operator]
    h1, h2 = lb[0], lb[1]
    settings = "    vrrp_strict\n    nftables\n    nftables_priority -5\n"
    ka = KaNode(h2, tmp_path).start(conf(settings, k=101))
    node = PyNode(h1, tmp_path).start(conf(settings))
    try:
        masters(node)
        masters(ka)
        wait_until(lambda: VIP6 in ruleset(h1) and "2001:db8::101" in ruleset(h2), timeout=10)
        ours, theirs = ruleset(h1), ruleset(h2)
        assert "table ip keepalived" in ours and "priority filter - 5" in ours, ours
        assert ours == theirs.replace("::101", "::100").replace(".101", ".100"), (
            f"ours:\n{ours}\nkeepalived:\n{theirs}"
        )
    finally:
        node.terminate()
        ka.terminate()
    assert ruleset(h1).strip() == ""
