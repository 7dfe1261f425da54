"""Unicast peers' ``min_ttl``/``max_ttl`` and the hop limit of unicast adverts.

keepalived 2.2.7 sends IPv6 unicast adverts with the system's default hop
limit (64; only multicast gets 255) and, with ``check_unicast_src``, drops
an advert whose TTL/hop limit is outside its peer's ``min_ttl``..``max_ttl``
("(VI_1) TTL/HL 64 not in range 250 - 255").  Both are checked here with
real daemons: a backup accepting exactly hop limit 64 stays BACKUP, one
requiring 250 and more drops every advert and becomes MASTER.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import (
    PyNode,
    assert_single_holder,
    dump_logs,
    global_defs,
    instance,
    wait_holder,
)

pytestmark = pytest.mark.netns

VIP6 = "2001:db8::100"


def _conf(name: str, me: Any, peer: Any, priority: int, peer_opts: str = "") -> str:
    return global_defs(name) + instance(
        priority=priority,
        state="MASTER" if priority > 100 else "BACKUP",
        version=3,
        advert_int=0.2,
        vips=[f"{VIP6}/64"],
        unicast_src=me.ip6,
        unicast_peers=[f"{peer.ip6}{peer_opts}"],
        extra="    check_unicast_src",
    )


def test_unicast_ttl_range_and_ipv6_unicast_hop_limit(lab: Any, tmp_path: Path) -> None:
    lb = lab(2)
    a, b = lb.hosts
    na, nb = PyNode(a, tmp_path), PyNode(b, tmp_path / "b1")
    nb2 = PyNode(b, tmp_path / "b2")
    try:
        na.start(_conf("a", a, b, 150))
        # Accepts hop limit 64 only: our unicast adverts must carry 64.
        nb.start(_conf("b", b, a, 100, " min_ttl 64 max_ttl 64"))
        wait_holder(lb.hosts, VIP6, "h1", 10)
        assert_single_holder(lb.hosts, VIP6, "h1", duration=1.5)  # > Master_Down_Interval
        st = nb.instance_status("VI_1")
        assert st["state"] == "BACKUP"
        assert st["counters"].get("rx_drop_unicast_ttl_range", 0) == 0, st["counters"]
        nb.terminate()

        # A range the adverts are outside of: every one is dropped.
        nb2.start(_conf("b", b, a, 100, " min_ttl 250"))
        nb2.wait_log("Entering MASTER STATE", 8)
        st = nb2.instance_status("VI_1")
        assert st["state"] == "MASTER"
        assert st["counters"].get("rx_drop_unicast_ttl_range", 0) >= 1, st["counters"]
        assert nb2.count("(VI_1) TTL/HL 64 not in range 250 - 255", since_mark=False) >= 1
    except BaseException:
        print(dump_logs([na, nb, nb2]))
        raise
    finally:
        for n in (na, nb, nb2):
            if n.running():
                n.terminate()
