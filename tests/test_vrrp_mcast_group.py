"""Adverts to a configured multicast group (mcast_dst_ip, vrrp_mcast_group4).

A backup only hears the master if its receiver joined that group: without
the join the kernel does not deliver the adverts (IP_MULTICAST_ALL is off)
and both nodes would claim the VIP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import PyNode, assert_single_holder, instance, wait_holder

VIP = "192.0.2.100"


@pytest.mark.netns
@pytest.mark.parametrize(
    ("global_defs", "extra"),
    [("", "    mcast_dst_ip 224.0.0.19\n"), ("    vrrp_mcast_group4 224.0.0.20\n", "")],
    ids=["mcast_dst_ip", "vrrp_mcast_group4"],
)
def test_custom_multicast_group(lab: Any, tmp_path: Path, global_defs: str, extra: str) -> None:
    net = lab(2)
    a, b = net.hosts
    na, nb = PyNode(a, tmp_path, "a"), PyNode(b, tmp_path, "b")
    # Adverts still sent to the standard group would not reach b at all.
    b.nft(
        "table inet pka_mcast {\n chain input {\n type filter hook input priority 0;\n"
        " ip daddr 224.0.0.18 drop\n }\n}\n"
    )

    def conf(rid: str, prio: int, state: str) -> str:
        head = f"global_defs {{\n    router_id {rid}\n{global_defs}}}\n"
        return head + instance(priority=prio, state=state, extra=extra)

    na.start(conf("a", 150, "MASTER"))
    # b starts once a is MASTER: started together, both wait about a
    # Master_Down_Interval (a non-owner in state MASTER does too, as in
    # keepalived 2.2.7) and b's could run out first on a loaded machine.
    wait_holder(net.hosts, VIP, "h1", 12)
    nb.start(conf("b", 100, "BACKUP"))
    assert_single_holder(net.hosts, VIP, "h1", duration=4.5)
    assert nb.count("Entering MASTER STATE", since_mark=False) == 0, nb.tail()
    counters = nb.instance_status("VI_1")["counters"]
    assert counters.get("adverts_received", 0) >= 3, counters
