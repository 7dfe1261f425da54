"""keepalived 2.4 ``auth_hmac`` between pykeepalived nodes in a namespace lab.

Two nodes sharing a key elect a master and fail over; a third node with
the same key id but another key (and a higher priority, so any advert of
its that got through would take the VIP away) disturbs neither: its
adverts are counted as invalid HMACs and dropped.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import (
    PyNode,
    dump_logs,
    global_defs,
    holders,
    instance,
    wait_holder,
)

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
GOOD = "hex:" + bytes(range(32)).hex()
WRONG = "another-key-of-thirty-two-bytes-or-more"


def _auth_hmac(key: str, mode: str = "enforce") -> str:
    return (
        "    auth_hmac {\n"
        f"        key 1 {key}\n"
        "        active_key 1\n"
        f"        mode {mode}\n"
        "    }\n"
    )


@pytest.fixture
def nodes() -> Iterator[list[PyNode]]:
    made: list[PyNode] = []
    yield made
    print(dump_logs(made))  # shown when the test fails


@pytest.mark.parametrize("version", [2, 3])
def test_auth_hmac_election_and_wrong_key(
    lab: Any, tmp_path: Path, nodes: list[PyNode], version: int
) -> None:
    lb = lab(3)
    a, b, c = lb.hosts
    na, nb, nc = (PyNode(h, tmp_path) for h in (a, b, c))
    nodes += [na, nb, nc]
    advert_int = 1 if version == 2 else 0.2
    common = {"version": version, "advert_int": advert_int}
    na.start(
        global_defs("a") + instance(priority=150, state="MASTER", extra=_auth_hmac(GOOD), **common)
    )
    nb.start(global_defs("b") + instance(priority=100, extra=_auth_hmac(GOOD), **common))
    wait_holder([a, b], VIP, "h1", 10)
    time.sleep(4 * advert_int + 1)
    assert nb.instance_status("VI_1")["state"] == "BACKUP"
    # the intruder: same key id, wrong key, highest priority
    nc.start(
        global_defs("c") + instance(priority=200, state="MASTER", extra=_auth_hmac(WRONG), **common)
    )
    nc.wait_log("Entering MASTER STATE", 10)
    time.sleep(4 * advert_int + 1)
    assert na.instance_status("VI_1")["state"] == "MASTER"
    assert nb.instance_status("VI_1")["state"] == "BACKUP"
    assert sorted(holders([a, b], VIP)) == ["h1"]
    for n in (na, nb):
        st = n.instance_status("VI_1")
        assert st["counters"].get("rx_drop_auth_ext_invalid_hmac", 0) >= 1, st["counters"]
        assert st["auth_hmac"]["counters"]["auth_ext_invalid_hmac"] >= 1, st["auth_hmac"]
        assert st["auth_hmac"]["counters"]["auth_ext_replay"] == 0
    assert nb.count("invalid authentication HMAC from", since_mark=False) >= 1
    # c never accepted theirs either
    assert nc.instance_status("VI_1")["auth_hmac"]["counters"]["auth_ext_invalid_hmac"] >= 1
    assert "000102030405" not in na.text() + nb.text() + nc.text()
    # the master goes: the signed backup takes over
    t0 = time.monotonic()
    na.signal(signal.SIGTERM)
    wait_holder([a, b], VIP, "h2", 5)
    assert time.monotonic() - t0 < 2
    assert nb.instance_status("VI_1")["state"] == "MASTER"


def test_auth_hmac_unicast_and_migration_modes(
    lab: Any, tmp_path: Path, nodes: list[PyNode]
) -> None:
    """Unicast; a receive-only node (sends no trailer) is accepted by a
    permissive one but not by an enforcing one."""
    lb = lab(3)
    a, b, c = lb.hosts
    na, nb = PyNode(a, tmp_path), PyNode(b, tmp_path)
    nodes += [na, nb]
    na.start(
        global_defs("a")
        + instance(
            priority=150,
            state="MASTER",
            unicast_src=a.ip4,
            unicast_peers=[b.ip4, c.ip4],
            extra=_auth_hmac(GOOD, "receive-only"),
        )
    )
    nb.start(
        global_defs("b")
        + instance(
            priority=100,
            unicast_src=b.ip4,
            unicast_peers=[a.ip4],
            extra=_auth_hmac(GOOD, "permissive"),
        )
    )
    wait_holder([a, b], VIP, "h1", 10)
    time.sleep(4.5)
    assert nb.instance_status("VI_1")["state"] == "BACKUP"
    # b signs and a verifies; a sends unsigned and b, permissive, accepts
    assert na.instance_status("VI_1")["auth_hmac"]["counters"] == {
        "auth_ext_missing": 0,
        "auth_ext_malformed": 0,
        "auth_ext_unknown_key": 0,
        "auth_ext_invalid_hmac": 0,
        "auth_ext_stale": 0,
        "auth_ext_replay": 0,
    }
    # an enforcing backup does not take a's unsigned adverts
    nc = PyNode(c, tmp_path)
    nodes.append(nc)
    nc.start(
        global_defs("c")
        + instance(
            priority=100,
            unicast_src=c.ip4,
            unicast_peers=[a.ip4],
            extra=_auth_hmac(GOOD, "enforce"),
        )
    )
    nc.wait_log("Entering MASTER STATE", 10)
    assert nc.instance_status("VI_1")["auth_hmac"]["counters"]["auth_ext_missing"] >= 1
