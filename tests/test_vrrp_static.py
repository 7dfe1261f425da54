"""static_ipaddress / static_routes / static_rules: added at start-up,
kept across a reload when unchanged, removed at stop (as keepalived does)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import PyNode, instance
from pykeepalived.testing.lab import Host


def static_conf(addr: str, route_net: str) -> str:
    return (
        "static_ipaddress {\n"
        f"    {addr} dev eth0\n"
        "}\n"
        "static_routes {\n"
        f"    {route_net} via 192.0.2.1 dev eth0\n"
        "}\n"
        "static_rules {\n"
        "    from 198.51.100.0/24 table 100\n"
        "}\n"
    ) + instance(priority=150, state="MASTER")


def routes(host: Host) -> str:
    return host.run(["ip", "-4", "route", "show"]).stdout


def rules(host: Host) -> str:
    return host.run(["ip", "rule", "show"]).stdout


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.netns
def test_static_entries_follow_the_daemon(lab: Any, tmp_path: Path) -> None:
    net = lab(1)
    (h1,) = net.hosts
    node = PyNode(h1, tmp_path, "a")
    node.start(static_conf("198.51.100.5/24", "203.0.113.0/24"))
    assert wait_for(lambda: "198.51.100.5" in h1.addresses()), node.tail()
    assert "203.0.113.0/24 via 192.0.2.1" in routes(h1)
    assert "from 198.51.100.0/24 lookup 100" in rules(h1)

    # Reload: the address changes, the route stays (never removed meanwhile).
    node.reload(static_conf("198.51.100.6/24", "203.0.113.0/24"))
    assert wait_for(lambda: "198.51.100.6" in h1.addresses()), node.tail()
    assert "198.51.100.5" not in h1.addresses()
    assert "203.0.113.0/24 via 192.0.2.1" in routes(h1)

    assert node.terminate() == 0
    assert "198.51.100.6" not in h1.addresses()
    assert "203.0.113.0/24" not in routes(h1)
    assert "198.51.100.0/24 lookup 100" not in rules(h1)
