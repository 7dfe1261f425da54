"""The small rtnetlink client (core/vrrp/rtnl.py) against the kernel, in a namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.netns

# Runs inside the namespace; prints one JSON object with what it saw.
SCRIPT = r"""
import errno, json, socket, sys
from pykeepalived.core.vrrp.rtnl import Rtnl, RtnlError
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.config.model import VirtualAddress
import ipaddress

out = {}
idx = socket.if_nametoindex("d0")
r = Rtnl()

def listing(fam=0):
    return sorted(
        [a.address, a.prefixlen, a.label, a.flags & 0x2, a.scope]
        for a in r.get_addresses(fam, idx)
        if a.address and not a.address.startswith("fe80")
    )

r.add_address(idx, "192.0.2.10", 24, label="d0:vip", broadcast="192.0.2.255")
r.add_address(idx, "2001:db8::10", 64, flags=0x02)
r.add_address(idx, "198.51.100.7", 32, scope=254)
out["after_add"] = listing()
out["v4_only"] = listing(socket.AF_INET)
try:
    r.add_address(idx, "192.0.2.10", 24)
    out["add_again"] = 0
except RtnlError as exc:
    out["add_again"] = exc.code
r.del_address(idx, "192.0.2.10", 24)
try:
    r.del_address(idx, "192.0.2.10", 24)
    out["del_again"] = 0
except RtnlError as exc:
    out["del_again"] = exc.code
try:
    r.add_address(10**6, "192.0.2.11", 24)
    out["bad_index"] = 0
except RtnlError as exc:
    out["bad_index"] = exc.code
out["after_del"] = listing()
r.del_address(idx, "198.51.100.7", 32)

nl = Netlink()
vip = VirtualAddress(address=ipaddress.ip_interface("203.0.113.5/32"))
out["nl_add"] = [nl.add_address(vip, "d0"), nl.add_address(vip, "d0")]
out["nl_has"] = nl.has_address("203.0.113.5", "d0")
out["primary4"] = nl.primary_address("d0", 4)
out["primary6"] = nl.primary_address("d0", 6)
nl.del_address(vip, "d0")
nl.del_address(vip, "d0")  # gone already: not an error
out["nl_has_after"] = nl.has_address("203.0.113.5", "d0")
nl.close()
r.close()
out["pyroute2"] = any(m.split(".")[0] == "pyroute2" for m in sys.modules)
out["errnos"] = [errno.EEXIST, errno.EADDRNOTAVAIL, errno.ENODEV]
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"pka-rtnl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
            ["addr", "add", "192.0.2.1/24", "dev", "d0"],
            ["link", "set", "d1", "up"],
            ["link", "set", "d0", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ip_json(ns: str) -> list[tuple[str, int, str | None]]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "addr", "show", "dev", "d0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(
        (a["local"], a["prefixlen"], a.get("label"))
        for link in json.loads(out)
        for a in link.get("addr_info", [])
        if not a["local"].startswith("fe80")
    )


def test_address_add_get_del(netns: str) -> None:
    res = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    eexist, eaddrnotavail, enodev = out["errnos"]
    assert out["after_add"] == sorted(
        [
            ["192.0.2.1", 24, "d0", 0, 0],
            ["192.0.2.10", 24, "d0:vip", 0, 0],
            ["198.51.100.7", 32, "d0", 0, 254],
            ["2001:db8::10", 64, None, 2, 0],  # IFA_F_NODAD kept
        ]
    )
    assert [a[0] for a in out["v4_only"]] == ["192.0.2.1", "192.0.2.10", "198.51.100.7"]
    assert out["add_again"] == eexist
    assert out["del_again"] == eaddrnotavail
    assert out["bad_index"] == enodev
    assert [a[0] for a in out["after_del"]] == ["192.0.2.1", "198.51.100.7", "2001:db8::10"]
    assert out["nl_add"] == [True, True]  # EEXIST on the second add is success
    assert out["nl_has"] is True and out["nl_has_after"] is False
    assert out["primary4"] == "192.0.2.1"
    assert out["primary6"] is not None and out["primary6"].startswith("fe80")
    assert out["pyroute2"] is False
    # What the kernel holds, as ip(8) reports it.
    assert ip_json(netns) == [("192.0.2.1", 24, "d0"), ("2001:db8::10", 64, None)]


# Links: what rtnl makes and reads, with ip(8) as the oracle for the kernel's view.
LINK_SCRIPT = r"""
import errno, json, socket, sys
from pykeepalived.core.vrrp.rtnl import Rtnl, RtnlError
r = Rtnl()
out = {"errnos": [errno.EEXIST, errno.ENODEV]}
base = socket.if_nametoindex("d0")
MACVLAN_MODE_PRIVATE, MACVLAN_MODE_BRIDGE = 1, 4
if sys.argv[1] == "make":
    r.add_macvlan("vm0", base, bytes.fromhex("00005e000133"), MACVLAN_MODE_PRIVATE)
    try:
        r.add_macvlan("vm0", base, bytes.fromhex("00005e000133"), MACVLAN_MODE_PRIVATE)
        out["add_again"] = 0
    except RtnlError as exc:
        out["add_again"] = exc.code
    vm = {l.name: l for l in r.get_links()}["vm0"]
    out["made"] = [vm.kind, vm.mac.hex(), vm.link == base, vm.macvlan_mode, bool(vm.flags & 1)]
    r.set_link(vm.index, addr_gen_mode=1)  # IN6_ADDR_GEN_MODE_NONE, before up (see set_link)
    r.change_macvlan(vm.index, bytes.fromhex("00005e000134"), MACVLAN_MODE_BRIDGE)
    r.set_link(vm.index, up=True)
    vm = {l.name: l for l in r.get_links()}["vm0"]
    out["changed"] = [vm.mac.hex(), vm.macvlan_mode, bool(vm.flags & 1)]
    out["names"] = sorted(l.name for l in r.get_links())
else:
    idx = socket.if_nametoindex("vm0")
    r.del_link(idx)
    try:
        r.del_link(idx)
        out["del_again"] = 0
    except RtnlError as exc:
        out["del_again"] = exc.code
    out["names"] = sorted(l.name for l in r.get_links())
r.close()
print(json.dumps(out))
"""


def test_links_macvlan_create_change_delete(netns: str) -> None:
    def run(step: str) -> dict[str, Any]:
        res = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", LINK_SCRIPT, step],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    def ip_links() -> dict[str, dict[str, Any]]:
        shown = subprocess.run(
            ["ip", "-n", netns, "-d", "-j", "link", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {link["ifname"]: link for link in json.loads(shown)}

    made = run("make")
    eexist, enodev = made["errnos"]
    assert made["add_again"] == eexist
    # Created down, with its MAC, base and mode (1: private), then changed and set up.
    assert made["made"] == ["macvlan", "00005e000133", True, 1, False]
    assert made["changed"] == ["00005e000134", 4, True]
    assert made["names"] == sorted(ip_links()) == ["d0", "d1", "lo", "vm0"]
    # The kernel's view, as ip(8) reports it.
    vm0 = ip_links()["vm0"]
    assert vm0["address"] == "00:00:5e:00:01:34" and vm0["link"] == "d0"
    assert vm0["linkinfo"]["info_kind"] == "macvlan"
    assert vm0["linkinfo"]["info_data"]["mode"] == "bridge"
    assert "UP" in vm0["flags"]
    assert vm0["inet6_addr_gen_mode"] == "none", vm0
    gone = run("delete")
    assert gone["del_again"] == enodev
    assert gone["names"] == sorted(ip_links()) == ["d0", "d1", "lo"]
