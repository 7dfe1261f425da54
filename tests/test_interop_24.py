"""Live interop with keepalived 2.4.3 over ``auth_hmac`` in a namespace lab.

keepalived 2.4.3 is not packaged (Debian 12 ships 2.2.7) and CI has no copy
of its source, so these tests run only where a built 2.4.3 binary is named
by ``PYKEEPALIVED_KEEPALIVED_24`` (e.g. ``keepalived/keepalived`` of a
``./configure --enable-json --disable-dbus --disable-snmp && make`` tree);
elsewhere they are skipped, and the reason names the variable.  The
golden-data tests (tests/test_auth_hmac.py) always run.

One pykeepalived node and one keepalived 2.4.3 node share a key: VRRPv2,
VRRPv3 over IPv4 and IPv6, and unicast, each with either program as the
master: the backup stays backup while the master's signed adverts arrive,
takes over when the master is killed, and gives the VIP back when it
returns (preemption).  Keys are rotated across the two nodes by reloads
without a state change, and a node with a wrong key is shut out by both.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import (
    KaNode,
    Node,
    PyNode,
    assert_single_holder,
    dump_logs,
    global_defs,
    holders,
    instance,
    wait_holder,
)

pytestmark = pytest.mark.netns

ENV = "PYKEEPALIVED_KEEPALIVED_24"
KA24 = os.environ.get(ENV, "")

VIP4 = "192.0.2.100"
VIP6 = "2001:db8::1:64"
KEY1 = "hex:" + bytes(range(32)).hex()
KEY2 = "a-second-key-in-ASCII-of-32-bytes-or-more"
WRONG = "hex:" + bytes(range(100, 132)).hex()
ENTERING = "Entering "


def _ka24_version() -> str | None:
    """The version line of the binary ``PYKEEPALIVED_KEEPALIVED_24`` names,
    or None when it is not a keepalived 2.4."""
    if not KA24 or not os.access(KA24, os.X_OK):
        return None
    try:
        out = subprocess.run(
            [KA24, "--version"], capture_output=True, text=True, timeout=10
        ).stderr.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out[0] if out else ""
    return first if re.match(r"Keepalived v2\.4\.", first) else None


_VERSION = _ka24_version()
if _VERSION is None:
    pytestmark = [
        pytest.mark.netns,
        pytest.mark.skip(
            reason=f"needs a built keepalived 2.4 named by ${ENV} "
            f"({'not set' if not KA24 else repr(KA24) + ' is not an executable keepalived 2.4'})"
        ),
    ]


class Ka24Node(KaNode):
    """keepalived 2.4.3 instead of the packaged 2.2.7: same command line."""

    kind = "ka24"

    def argv(self) -> list[str]:
        return [KA24, *super().argv()[1:]]


def _auth_hmac(keys: dict[int, str], active: int, mode: str = "enforce") -> str:
    lines = ["    auth_hmac {"]
    lines += [f"        key {i} {v}" for i, v in keys.items()]
    lines += [f"        active_key {active}", f"        mode {mode}", "    }"]
    return "\n".join(lines) + "\n"


#: variant -> (instance() keywords, the VIP watched)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "v2": ({"version": 2, "advert_int": 1}, VIP4),
    "v3-ipv4": ({"version": 3, "advert_int": 0.3}, VIP4),
    "v3-ipv6": ({"version": 3, "advert_int": 0.3, "vips": [f"{VIP6}/64"]}, VIP6),
    "unicast": ({"version": 2, "advert_int": 1}, VIP4),
}


def _conf(
    host: Any,
    peers: list[Any],
    variant: str,
    *,
    priority: int,
    keys: dict[int, str],
    active: int,
    state: str = "BACKUP",
) -> str:
    kw, _vip = VARIANTS[variant]
    kw = dict(kw)
    if variant == "unicast":
        kw["unicast_src"] = host.ip4
        kw["unicast_peers"] = [p.ip4 for p in peers]
    return global_defs(host.name) + instance(
        priority=priority, state=state, extra=_auth_hmac(keys, active), **kw
    )


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    print(dump_logs(made))  # shown when the test fails


def _make(made: list[Node], kind: str, host: Any, tmp: Path) -> Node:
    n: Node = PyNode(host, tmp) if kind == "py" else Ka24Node(host, tmp)
    made.append(n)
    return n


def _py_hmac_counters(n: Node) -> dict[str, int]:
    assert isinstance(n, PyNode)
    counters: dict[str, int] = n.instance_status("VI_1")["auth_hmac"]["counters"]
    return counters


def _no_rejections(n: Node) -> None:
    """Nothing the peer sent was refused (pykeepalived's counters or
    keepalived's rate-limited log lines)."""
    if isinstance(n, PyNode):
        assert set(_py_hmac_counters(n).values()) == {0}, _py_hmac_counters(n)
    else:
        for needle in (
            "authentication trailer",
            "authentication HMAC",
            "authentication key id",
            "replayed authentication",
        ):
            assert n.count(needle, since_mark=False) == 0, n.tail()


@pytest.mark.parametrize("master_kind", ["py", "ka24"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_auth_hmac_interop(
    lab: Any, tmp_path: Path, nodes: list[Node], variant: str, master_kind: str
) -> None:
    lb = lab(2)
    a, b = lb.hosts
    backup_kind = "ka24" if master_kind == "py" else "py"
    nm = _make(nodes, master_kind, a, tmp_path)
    nb = _make(nodes, backup_kind, b, tmp_path)
    _kw, vip = VARIANTS[variant]
    advert = float(_kw["advert_int"])
    keys = {1: KEY1}
    master_conf = _conf(a, [b], variant, priority=150, keys=keys, active=1, state="MASTER")
    nm.start(master_conf)
    wait_holder(lb.hosts, vip, "h1", 15)
    nb.start(_conf(b, [a], variant, priority=100, keys=keys, active=1))
    nb.wait_log(ENTERING + "BACKUP", 10)
    # the backup hears the master's signed adverts: no takeover, no rejection
    assert_single_holder(lb.hosts, vip, "h1", duration=5 * advert + 1)
    assert nb.count(ENTERING + "MASTER") == 0, nb.tail()
    _no_rejections(nm)
    _no_rejections(nb)
    # takeover: the master dies without a goodbye
    nm.kill()
    t0 = time.monotonic()
    wait_holder([b], vip, "h2", 3 * advert + 5)
    assert time.monotonic() - t0 < 3 * advert + 5
    # preemption: the master comes back and takes the VIP again
    nb.mark()
    nm.start(master_conf)
    wait_holder(lb.hosts, vip, "h1", 4 * advert + 10)
    nb.wait_log(ENTERING + "BACKUP", 5)
    assert_single_holder(lb.hosts, vip, "h1", duration=3 * advert + 0.5)
    _no_rejections(nm)
    _no_rejections(nb)


@pytest.mark.parametrize("variant", ["v3-ipv4", "unicast"])
def test_key_rotation_across_implementations(
    lab: Any, tmp_path: Path, nodes: list[Node], variant: str
) -> None:
    """The documented rotation, one node at a time: add key 2 everywhere,
    sign with it everywhere, drop key 1 everywhere; each node keeps its
    state through every reload (the sequence goes on across reloads, so
    nothing is taken as a replay)."""
    lb = lab(2)
    a, b = lb.hosts
    na = _make(nodes, "ka24", a, tmp_path)
    nb = _make(nodes, "py", b, tmp_path)
    advert = float(VARIANTS[variant][0]["advert_int"])

    def confs(keys: dict[int, str], active: int) -> tuple[str, str]:
        return (
            _conf(a, [b], variant, priority=150, keys=keys, active=active, state="MASTER"),
            _conf(b, [a], variant, priority=100, keys=keys, active=active),
        )

    ca, cb = confs({1: KEY1}, 1)
    na.start(ca)
    nb.start(cb)
    wait_holder(lb.hosts, VIP4, "h1", 15)
    time.sleep(3 * advert + 0.5)
    steps = [
        ("b", {1: KEY1, 2: KEY2}, 1),
        ("a", {1: KEY1, 2: KEY2}, 1),
        ("a", {1: KEY1, 2: KEY2}, 2),  # keepalived signs with key 2, we still verify
        ("b", {1: KEY1, 2: KEY2}, 2),
        ("a", {2: KEY2}, 2),
        ("b", {2: KEY2}, 2),
    ]
    entering = (na.count(ENTERING, since_mark=False), nb.count(ENTERING, since_mark=False))
    for who, keys, active in steps:
        ca, cb = confs(keys, active)
        node, conf = (na, ca) if who == "a" else (nb, cb)
        node.reload(conf)
        node.wait_log("Reloading", 10)  # both programs say so
        assert_single_holder(lb.hosts, VIP4, "h1", duration=3 * advert + 0.5)
    assert (na.count(ENTERING, since_mark=False), nb.count(ENTERING, since_mark=False)) == entering
    _no_rejections(na)
    _no_rejections(nb)


@pytest.mark.parametrize("intruder_kind", ["py", "ka24"])
def test_wrong_key_isolates_the_node(
    lab: Any, tmp_path: Path, nodes: list[Node], intruder_kind: str
) -> None:
    """A node with the right key id and a wrong key, at the highest
    priority, takes nothing from a keepalived 2.4.3 + pykeepalived pair,
    and each of them counts or logs its adverts as invalid HMACs."""
    lb = lab(3)
    a, b, c = lb.hosts
    na = _make(nodes, "ka24", a, tmp_path)
    nb = _make(nodes, "py", b, tmp_path)
    nc = _make(nodes, intruder_kind, c, tmp_path)
    variant = "v3-ipv4"
    advert = float(VARIANTS[variant][0]["advert_int"])
    na.start(_conf(a, [], variant, priority=150, keys={1: KEY1}, active=1, state="MASTER"))
    nb.start(_conf(b, [], variant, priority=100, keys={1: KEY1}, active=1))
    wait_holder([a, b], VIP4, "h1", 15)
    nb.wait_log(ENTERING + "BACKUP", 10)
    na.mark()
    nb.mark()
    # The intruder advertises every second, not every 0.3 s: keepalived 2.4.3
    # (vrrp_scheduler.c, as 2.2.7) re-arms a master's advert timer on every
    # packet it reads, valid or not, so an intruder on the master's own
    # interval keeps delaying its adverts until the backup times out.
    intruder = _conf(c, [], variant, priority=254, keys={1: WRONG}, active=1, state="MASTER")
    nc.start(intruder.replace("advert_int 0.3", "advert_int 1"))
    nc.wait_log(ENTERING + "MASTER", 10)
    # the intruder is isolated: master of its own, nobody else moves
    time.sleep(4 * advert + 1)
    assert sorted(holders([a, b], VIP4)) == ["h1"]
    assert (na.count(ENTERING), nb.count(ENTERING)) == (0, 0), dump_logs([na, nb])
    assert _py_hmac_counters(nb)["auth_ext_invalid_hmac"] >= 1
    na.wait_log("invalid authentication HMAC from " + c.ip4, 5, since_mark=False)
    # and the intruder refuses theirs too
    if isinstance(nc, PyNode):
        assert _py_hmac_counters(nc)["auth_ext_invalid_hmac"] >= 1
    else:
        nc.wait_log("invalid authentication HMAC from", 5, since_mark=False)
    # the pair still works: keepalived's master goes, pykeepalived takes over
    na.terminate()
    wait_holder([a, b], VIP4, "h2", 3 * advert + 5)
