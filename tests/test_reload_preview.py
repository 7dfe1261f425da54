"""``pykeepalived reload --dry-run``: what a SIGHUP would change, computed by
the running daemon against its own model, nothing applied; then the real
SIGHUP shows the preview told the truth."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.config.model import Config
from pykeepalived.core.shell.reloadplan import render, vrrp_preview
from pykeepalived.core.shell.startup import load_config
from pykeepalived.testing.daemons import PYKEEPALIVED, PyNode, instance
from pykeepalived.testing.lab import Host, Lab


def _load(tmp_path: Path, text: str, name: str = "k.conf") -> Config:
    path = tmp_path / name
    path.write_text(text)
    loaded = load_config(argparse.Namespace(file=str(path), config_id=None, disable_plugin=[]))
    assert loaded is not None
    result, _ = loaded
    assert result.ok, [str(d) for d in result.diagnostics.items]
    return result.config


GD = "global_defs {\n    router_id rp\n    script_user root\n}\n"


# -- the VRRP part, pure -------------------------------------------------------------------


def test_vrrp_preview_mirrors_manager_reload(tmp_path: Path) -> None:
    old = _load(
        tmp_path,
        GD
        + "static_ipaddress {\n    192.0.2.150/24 dev eth0\n}\n"
        + instance("KEEP", vrid=1, vips=("192.0.2.100/24",))
        + instance("PRIO", vrid=2, vips=("192.0.2.101/24",))
        + instance("MOVED", vrid=6, vips=("192.0.2.105/24",))
        + instance("GONE", vrid=3, vips=("192.0.2.102/24",))
        + instance(
            "ROUTE",
            vrid=5,
            vips=("192.0.2.104/24",),
            extra="    virtual_routes {\n        198.51.100.0/24 via 192.0.2.1\n    }",
        ),
        "old.conf",
    )
    new = _load(
        tmp_path,
        GD
        + "static_ipaddress {\n    192.0.2.151/24 dev eth0\n}\n"
        + instance("KEEP", vrid=1, vips=("192.0.2.100/24",))
        + instance("PRIO", vrid=2, priority=120, vips=("192.0.2.101/24", "192.0.2.106/24"))
        + instance("MOVED", vrid=7, vips=("192.0.2.105/24",))
        + instance("OWNER", vrid=4, priority=255, vips=("192.0.2.103/24",))
        + instance(
            "ROUTE",
            vrid=5,
            vips=("192.0.2.104/24",),
            extra="    virtual_routes {\n        203.0.113.0/24 via 192.0.2.1\n    }",
        ),
        "new.conf",
    )
    live = {"KEEP": "MASTER", "PRIO": "MASTER", "MOVED": "MASTER", "GONE": "BACKUP"}
    live["ROUTE"] = "MASTER"
    p = vrrp_preview(old, new, live)
    # keepalived 2.2.7 keeps an instance with the same VRID, family, interface and
    # unicast source: a new priority and VIPs apply in place, a MASTER swaps the VIPs
    assert [i["name"] for i in p["instances_kept"]] == ["KEEP", "PRIO", "ROUTE"]
    assert p["instances_kept"][0]["state"] == "MASTER"
    assert p["instances_kept"][1]["changed"] == ["priority", "VIPs"]
    (restarted,) = p["instances_restarted"]
    assert restarted["name"] == "MOVED" and restarted["changed"] == ["virtual_router_id"]
    assert restarted["effect"] == "MASTER -> STOP, then starts again in BACKUP"
    assert p["instances_removed"] == [
        {"name": "GONE", "state": "BACKUP", "effect": "stops -> STOP"}
    ]
    assert p["instances_added"] == [{"name": "OWNER", "effect": "starts in MASTER (address owner)"}]
    # a MASTER restarting drops its VIPs; an owner takes its own; a BACKUP has none
    assert "192.0.2.105/24 (MOVED)" in p["vips_removed"]
    assert "192.0.2.101/24 (PRIO)" not in p["vips_removed"]
    assert "192.0.2.106/24 (PRIO)" in p["vips_added"]
    assert "192.0.2.102/24 (GONE)" not in p["vips_removed"]
    assert "192.0.2.103/24 (OWNER)" in p["vips_added"]
    assert "192.0.2.150/24 (static)" in p["vips_removed"]
    assert "192.0.2.151/24 (static)" in p["vips_added"]
    # a kept MASTER swaps its changed routes, as keepalived 2.2.7
    assert p["instances_kept"][2]["changed"] == ["virtual_routes"]
    assert "203.0.113.0/24 via 192.0.2.1 (ROUTE)" in p["routes_added"]
    assert "198.51.100.0/24 via 192.0.2.1 (ROUTE)" in p["routes_removed"]
    text = render({"config_files": ["new.conf"], "ok": True, "vrrp": p})
    assert "VRRP instances restarted (they transition):" in text
    assert (
        "MOVED (MASTER): MASTER -> STOP, then starts again in BACKUP; changed: virtual_router_id"
        in text
    )
    assert "PRIO (MASTER); changed in place: priority, VIPs" in text
    assert text.endswith("Nothing was applied.")


def test_identical_configuration_changes_nothing(tmp_path: Path) -> None:
    text = GD + instance("VI_1", vips=("192.0.2.100/24",))
    old, new = _load(tmp_path, text, "a.conf"), _load(tmp_path, text, "b.conf")
    p = vrrp_preview(old, new, {"VI_1": "BACKUP"})
    assert not p["instances_restarted"] and not p["vips_added"] and not p["vips_removed"]
    out = render({"config_files": ["b.conf"], "ok": True, "vrrp": p})
    assert "VRRP instances kept (no transition):\n  VI_1 (BACKUP)" in out


def test_unicast_peers_and_password_change_in_place_auth_type_restarts(tmp_path: Path) -> None:
    """keepalived 2.2.7 (vrrp.c vrrp_exist) matches a unicast instance by its
    source address, not its peers; a new auth_pass takes effect in the
    running instance; AH instead of PASS sends another protocol: restart."""

    def conf(peers: tuple[str, ...], auth: tuple[str, str], name: str) -> Config:
        vi = instance(
            "VI_1", unicast_src="192.0.2.11", unicast_peers=peers, auth=auth, extra="    nopreempt"
        )
        return _load(tmp_path, GD + vi, name)

    old = conf(("192.0.2.12",), ("PASS", "secret1"), "a.conf")
    more = conf(("192.0.2.12", "192.0.2.13"), ("PASS", "secret2"), "b.conf")
    p = vrrp_preview(old, more, {"VI_1": "MASTER"})
    assert not p["instances_restarted"], p
    assert p["instances_kept"][0]["changed"] == ["auth_pass", "unicast_peer"]
    assert "secret" not in render({"config_files": ["b.conf"], "ok": True, "vrrp": p})
    ah = conf(("192.0.2.12",), ("AH", "secret1"), "c.conf")
    (restarted,) = vrrp_preview(old, ah, {"VI_1": "MASTER"})["instances_restarted"]
    assert restarted["changed"] == ["auth_type"]
    grouped = _load(
        tmp_path,
        GD
        + "vrrp_sync_group G {\n group {\n VI_1\n }\n}\n"
        + instance(
            "VI_1",
            unicast_src="192.0.2.11",
            unicast_peers=("192.0.2.12",),
            auth=("PASS", "secret1"),
            extra="    nopreempt",
        ),
        "e.conf",
    )
    (kept,) = vrrp_preview(old, grouped, {"VI_1": "BACKUP"})["instances_kept"]
    assert kept["changed"] == ["vrrp_sync_group"]
    plain, source = (
        _load(tmp_path, GD + instance("VI_2", extra=extra), f"{n}.conf")
        for n, extra in (("f", ""), ("g", "    mcast_src_ip 192.0.2.31"))
    )
    (kept,) = vrrp_preview(plain, source, {"VI_2": "MASTER"})["instances_kept"]
    assert kept["changed"] == ["mcast_src_ip"]
    multicast = conf((), ("PASS", "secret1"), "d.conf")
    (restarted,) = vrrp_preview(old, multicast, {"VI_1": "MASTER"})["instances_restarted"]
    assert restarted["changed"] == ["unicast or multicast"]


# -- against a running daemon ---------------------------------------------------------------


def _config(d: Path, *, new: bool) -> str:
    scripts = "".join(
        f"vrrp_script {n} {{\n    script \"/bin/sh -c 'true'\"\n    interval 1\n}}\n"
        for n in (("chk_a", "chk_b") if new else ("chk_a",))
    )
    track_a = "    track_script {\n        chk_a\n    }"
    track_b = "    track_script {\n        chk_b\n    }"
    ports = (8081, 8083) if new else (8081, 8082)
    reals = "".join(
        f"    real_server 192.0.2.11 {port} {{\n"
        "        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n"
        for port in ports
    )
    text = (
        GD
        + scripts
        + instance("VI_1", vrid=51, priority=150, vips=("192.0.2.100/24",), extra=track_a)
        + instance("VI_2", vrid=53 if new else 52, vips=("192.0.2.101/24",))
        + "virtual_server 192.0.2.200 80 {\n    delay_loop 1\n    lb_algo rr\n"
        f"    lb_kind NAT\n    protocol TCP\n{reals}}}\n"
    )
    if new:
        text += instance("VI_4", vrid=54, vips=("192.0.2.103/24",), extra=track_b)
    else:
        text += instance("VI_3", vrid=53, vips=("192.0.2.102/24",))
    return text


def _listen(host: Host, port: int) -> subprocess.Popen[Any]:
    return host.popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", host.ip4],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _dry_run(node: PyNode, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYKEEPALIVED, "reload", "--dry-run", "--socket", str(node.status_socket), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.netns
def test_dry_run_against_running_daemon_then_real_reload(lab: type[Lab], tmp_path: Path) -> None:
    net = lab(1)
    (h1,) = net.hosts
    for port in (8081, 8082, 8083):
        _listen(h1, port)
    node = PyNode(h1, tmp_path, "rp")
    node.start(_config(tmp_path, new=False))
    new_conf = tmp_path / "new.conf"
    new_conf.write_text(_config(tmp_path, new=True))
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = {i["name"]: i["state"] for i in node.status()["vrrp_instances"]}
            reals = [
                r["alive"] for vs in node.status()["virtual_servers"] for r in vs["real_servers"]
            ]
            if set(states.values()) == {"MASTER"} and reals == [True, True]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not settled: {node.status()}")
        node.mark()

        proc = _dry_run(node, "-f", str(new_conf))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        print(out)
        assert "VI_4: starts in BACKUP" in out
        assert "VI_3 (MASTER): stops (priority 0 advert, VIPs released) -> STOP" in out
        assert (
            "VI_2 (MASTER): MASTER -> STOP, then starts again in BACKUP;"
            " changed: virtual_router_id" in out
        )
        assert "VRRP instances kept (no transition):\n  VI_1 (MASTER)" in out
        assert "192.0.2.102/24 (VI_3)" in out and "192.0.2.101/24 (VI_2)" in out
        assert "Trackers started:\n  script chk_b" in out
        assert "script chk_a" in out.split("Trackers restarted:")[1]
        ipvs = out.split("IPVS operations:")[1].splitlines()
        assert any("add real server" in line and ":8083" in line for line in ipvs), out
        assert any("delete real server" in line and ":8082" in line for line in ipvs), out
        assert "Checkers started:" in out and "Checkers stopped:" in out

        # --json for scripts; the running daemon's file is the default
        doc = json.loads(_dry_run(node, "--json", "-f", str(new_conf)).stdout)
        assert doc["ok"] and doc["config_files"] == [str(new_conf)]
        same = _dry_run(node)
        assert same.returncode == 0 and "Nothing would change" in same.stdout, same.stdout

        # nothing was applied
        time.sleep(1.0)
        assert "Reloading configuration" not in node.since()
        assert node.count("Entering") == 0, node.since()
        assert "192.0.2.102" in " ".join(h1.addresses())

        # a broken file: exit 1, the problem shown, the running config untouched
        broken = tmp_path / "broken.conf"
        broken.write_text(GD + "vrrp_instance X {\n    interface eth0\n}\n")
        bad = _dry_run(node, "-f", str(broken))
        assert bad.returncode == 1, bad.stdout
        assert "a SIGHUP would keep the running one" in bad.stdout
        assert f"{broken}:" in bad.stdout

        # Now the real SIGHUP with the new file: the preview told the truth
        node.reload(new_conf.read_text())
        node.wait_log("(VI_4) Entering BACKUP STATE (init)", 10)
        node.wait_log("(VI_3) Entering STOP STATE (reload: removed)", 10)
        node.wait_log("(VI_2) Entering STOP STATE (reload: configuration changed)", 10)
        assert node.count("(VI_1) Entering") == 0, node.since()
        assert "192.0.2.102" not in " ".join(h1.addresses())
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.tail()}") from None


def test_dry_run_without_daemon(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYKEEPALIVED, "reload", "--dry-run", "--socket", str(tmp_path / "none.sock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
