"""keepalived's dumps and signals (core/shell/dumps.py, core/shell/version.py,
core/vrrp/stats.py): numbers and version block against the real keepalived
binary, paths, the formats as the exporters parse them (tests/exporters.py),
secrets masked.  The daemon-level comparison with keepalived 2.2.7 is
tests/test_dumps_interop.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import exporters as ex
import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Config
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.core.shell import dumps
from pykeepalived.core.shell.version import signal_numbers, version_text
from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp import stats as vstats
from pykeepalived.testing.daemons import KEEPALIVED, PYKEEPALIVED

NAMES = ["STOP", "RELOAD", "DATA", "STATS", "STATS_CLEAR", "JSON"]

CONF = """
global_defs {
    router_id lb1
    enable_script_security
    script_user root
    notification_email {
        ops@example.com
    }
    notification_email_from ka@example.com
    smtp_server 192.0.2.25 25
    smtp_auth_user mailer
    smtp_password Mail-Secret-1
}
vrrp_script chk_ok {
    script "/bin/true"
    interval 2
    weight -20
    rise 2
    fall 3
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass Vrrp-Secret
    }
    track_script {
        chk_ok
    }
    virtual_ipaddress {
        192.0.2.100/24
        192.0.2.101/24 dev eth0 label eth0:1
    }
    virtual_ipaddress_excluded {
        198.51.100.7/32
    }
    notify_master "/bin/true master"
}
vrrp_instance VI_2 {
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority 100
    version 3
    advert_int 0.5
    virtual_ipaddress {
        2001:db8::52/64
    }
}
vrrp_sync_group G1 {
    group {
        VI_2
    }
}
virtual_server 192.0.2.200 80 {
    delay_loop 5
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.2 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"""

SECRETS = ("Vrrp-Secret", "Mail-Secret-1")

_REGISTRY: Any = None


def config(text: str = CONF) -> Config:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry(autoload=False)
    res = load_text(text, grammar=_REGISTRY.grammar())
    errors = [str(d) for d in res.diagnostics.errors]
    assert not errors, errors
    return res.config


def snapshot(cfg: Config | None = None) -> dumps.Snapshot:
    stats1 = dict.fromkeys(vstats.STATS_FIELDS, 0) | {"advert_sent": 41, "become_master": 1}
    stats2 = dict.fromkeys(vstats.STATS_FIELDS, 0) | {"advert_rcvd": 80, "auth_failure": 2}
    return dumps.Snapshot(
        config=cfg or config(),
        vrrp=[
            {
                "name": "VI_1",
                "state": "MASTER",
                "wantstate": "MASTER",
                "interface": "eth0",
                "source": "192.0.2.11",
                "effective_priority": 150,
                "last_transition": 1796581261.626057,
                "read_timeout": 1796581262.5,
                "master_down_interval": 3.4140625,
                "stats": stats1,
            },
            {
                "name": "VI_2",
                "state": "BACKUP",
                "wantstate": "BACKUP",
                "interface": "eth0",
                "source": "fe80::1",
                "effective_priority": 100,
                "master_src": "fe80::2",
                "master_priority": 200,
                "master_adver_int": 0.5,
                "last_transition": 1796581000.0,
                "read_timeout": None,
                "master_down_interval": 1.6953125,
                "stats": stats2,
            },
        ],
        trackers=[{"kind": "script", "name": "chk_ok", "up": True, "pending": False}],
        lvs=[
            {
                "quorum_up": True,
                "real_servers": [{"real_server": "192.0.2.2:80", "alive": True, "weight": 3}],
            }
        ],
    )


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


# -- signals and version: the real keepalived binary is the oracle ---------------------------
def test_signum_matches_keepalived() -> None:
    for name in NAMES:
        ours = _run([PYKEEPALIVED, f"--signum={name}"])
        theirs = _run([KEEPALIVED, f"--signum={name}"])
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), name
        assert ours.stdout.strip().isdigit()
    # mehdy parses the output as a JSON number
    assert json.loads(_run([PYKEEPALIVED, "--signum=JSON"]).stdout) == signal_numbers()["JSON"]
    bad_ours, bad_theirs = (
        _run([PYKEEPALIVED, "--signum=TDATA"]),
        _run([KEEPALIVED, "--signum=TDATA"]),
    )
    assert (bad_ours.returncode, bad_ours.stderr) == (bad_theirs.returncode, bad_theirs.stderr)
    assert bad_ours.returncode == 1 and bad_ours.stdout == ""


def test_version_block_as_exporters_read_it(tmp_path: Path) -> None:
    alias = tmp_path / "keepalived"
    alias.symlink_to(PYKEEPALIVED)
    for argv0, want_first in ((PYKEEPALIVED, "pykeepalived v"), (str(alias), "Keepalived v2.2.7")):
        short, long = _run([argv0, "-v"]), _run([argv0, "--version"])
        assert short.returncode == long.returncode == 0
        # like keepalived: on stderr, nothing on stdout
        assert short.stdout == "" and short.stderr == long.stderr
        assert short.stderr.startswith(want_first)
        assert "--enable-json" in short.stderr  # mehdy HasJSONSignalSupport
        assert "JSON" in short.stderr.split("Config options:")[1].split()
    # mehdy ParseVersion: >= 1.3.8 or it never asks --signum (and exits on JSON)
    assert ex.parse_version(_run([str(alias), "-v"]).stderr) >= (1, 3, 8)
    assert ex.parse_version(_run([KEEPALIVED, "-v"]).stderr) == (2, 2, 7)
    assert "--enable-json" in _run([KEEPALIVED, "--version"]).stderr


def test_version_text_shape() -> None:
    text = version_text(as_keepalived=True)
    assert text.splitlines()[0].split(" ")[:2] == ["Keepalived", "v2.2.7"]


# -- paths ---------------------------------------------------------------------------------------
def _gd(text: str) -> Any:
    return config(f"global_defs {{\n{text}\n}}\n").global_defs


def test_default_paths_and_tmpdir() -> None:
    gd = _gd("router_id x")
    p = dumps.DumpPaths.from_config(gd, env={})
    assert p == dumps.DumpPaths(
        "/tmp/keepalived.data",
        "/tmp/keepalived_check.data",
        "/tmp/keepalived.stats",
        "/tmp/keepalived.json",
    )
    # keepalived's set_tmp_dir: TMPDIR only when absolute
    assert (
        dumps.DumpPaths.from_config(gd, env={"TMPDIR": "/run/ka"}).json == "/run/ka/keepalived.json"
    )
    assert dumps.DumpPaths.from_config(gd, env={"TMPDIR": "rel"}).data == "/tmp/keepalived.data"


@pytest.mark.parametrize(
    ("template", "data", "check"),
    [
        ("/var/run/ka/", "/var/run/ka/keepalived.data", "/var/run/ka/keepalived_check.data"),
        ("/var/run/ka/state.dump", "/var/run/ka/state.dump", "/var/run/ka/state_check.dump"),
        ("state", "/tmp/state", "/tmp/state_check"),
    ],
)
def test_state_dump_file_template(template: str, data: str, check: str) -> None:
    # keepalived 2.3.3+ open_dump_file: the checker's suffix goes before the extension
    p = dumps.DumpPaths.from_config(_gd(f"state_dump_file {template}"), env={})
    assert (p.data, p.check_data) == (data, check)


def test_stats_and_json_dump_file() -> None:
    gd = _gd("stats_dump_file /run/ka/s.txt\njson_dump_file /run/ka/\njson_version 2")
    p = dumps.DumpPaths.from_config(gd, env={})
    assert (p.stats, p.json) == ("/run/ka/s.txt", "/run/ka/keepalived.json")
    assert gd.json_version == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('json_dump_file ""', "requires a non-empty path"),
        ("json_version 3", "json_version"),
        ("state_dump_file", "state_dump_file"),
    ],
)
def test_bad_dump_keywords(line: str, message: str) -> None:
    res = load_text(f"global_defs {{\n    {line}\n}}\n", name="k.conf")
    errors = [str(d) for d in res.diagnostics.errors]
    assert len(errors) == 1 and errors[0].startswith("k.conf:2:") and message in errors[0]


def test_write_atomic(tmp_path: Path) -> None:
    path = tmp_path / "keepalived.stats"
    path.write_text("old\n")
    dumps.write_atomic(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["keepalived.stats"]
    with pytest.raises(OSError):
        dumps.write_atomic(str(tmp_path / "missing" / "x"), "y")


# -- formats ---------------------------------------------------------------------------------------
def test_data_dump_as_exporters_parse_it() -> None:
    text = dumps.render_data(snapshot())
    data = ex.parse_vrrp_data(text)
    assert set(data) == {"VI_1", "VI_2"}
    vi1, vi2 = data["VI_1"], data["VI_2"]
    assert (vi1.state, vi1.wantstate, vi1.intf, vi1.vrid, vi1.garp_delay) == (2, 2, "eth0", 51, 5)
    assert vi1.vips == [
        "192.0.2.100/24 dev eth0 scope global set",
        "192.0.2.101/24 dev eth0 scope global label eth0:1 set",
    ]
    assert [ex.parse_vip(v) for v in vi1.vips] == [
        ("192.0.2.100/24", "eth0"),
        ("192.0.2.101/24", "eth0"),
    ]
    assert vi1.excluded_vips == ["198.51.100.7/32 dev eth0 scope global set"]
    assert (vi2.state, vi2.vrid) == (1, 52)
    assert vi2.vips == ["2001:db8::52/64 dev eth0 scope global preferred_lft forever"]
    assert ex.parse_vrrp_scripts(text) == {"chk_ok": ("GOOD", "idle")}
    lines = text.splitlines()
    assert lines[0] == "------< Global definitions >------"
    for want in (
        " Router ID = lb1",
        " Email notification to:",
        "   ops@example.com",
        "------< VRRP Topology >------",
        "   Authentication type = SIMPLE_PASSWORD",
        "   Password = ********",
        "   Master router = fe80::2",
        "   Master priority = 200",
        "   Master advert int = 0.50 sec",
        "   Advert interval = 500 milli-sec",
        "   Master down timer = 3414062 usecs",
        "   Last transition = 1796581261.626057 (" + dumps._ctime_us(1796581261.626057) + ")",
        "   Read timeout = DISABLED",
        "   Tracked scripts :",
        "     chk_ok weight -20",
        "   Master state transition script = '/usr/bin/true' 'master', uid:gid 0:0",
        " VRRP Sync Group = G1, BACKUP",
        "   Weight = -20",
        "   Result = 4",
        "     VI_1, weight -20",
    ):
        assert want in lines, want


def test_secrets_masked_everywhere() -> None:
    snap = snapshot()
    for text in (
        dumps.render_data(snap),
        dumps.render_check_data(snap),
        dumps.render_json(snap),
        dumps.render_stats(snap),
    ):
        for secret in SECRETS:
            assert secret not in text
    assert " Smtp password = ********" in dumps.render_data(snap).splitlines()
    assert json.loads(dumps.render_json(snap))[0]["data"]["auth_data"] == "********"


def test_stats_dump_every_counter() -> None:
    text = dumps.render_stats(snapshot())
    parsed = ex.parse_stats(text)
    assert list(parsed) == ["VI_1", "VI_2"]
    for name in ("VI_1", "VI_2"):
        assert sorted(parsed[name]) == sorted(vstats.STATS_FIELDS)
    assert parsed["VI_1"]["advert_sent"] == 41 and parsed["VI_2"]["auth_failure"] == 2
    # keepalived's exact lines (vrrp_print.c)
    assert text.splitlines()[:6] == [
        "VRRP Instance: VI_1",
        "  Advertisements:",
        "    Received: 0",
        "    Sent: 41",
        "  Became master: 1",
        "  Released master: 0",
    ]
    assert text.endswith("    Sent: 0\n")


def test_json_v1_types_for_exporters() -> None:
    text = dumps.render_json(snapshot())
    assert text.endswith("}]\n") and "\\/" in text  # keepalived escapes '/'
    rows = ex.parse_json(text)
    assert [(r["iname"], r["state"], r["wantstate"], r["vrid"]) for r in rows] == [
        ("VI_1", 2, 2, 51),
        ("VI_2", 1, 1, 52),
    ]
    assert rows[0]["stats"]["advert_sent"] == 41
    doc = json.loads(text)
    data = doc[0]["data"]
    assert list(data)[:6] == [
        "iname",
        "dont_track_primary",
        "skip_check_adv_addr",
        "strict_mode",
        "vmac_ifname",
        "ifp_ifname",
    ]
    assert '"last_transition":1796581261.626057,' in text
    assert '"garp_delay":5,' in text and '"adver_int":1,' in text
    assert doc[1]["data"]["adver_int"] == 0.5 and doc[1]["data"]["master_priority"] == 200
    assert data["track_script"] == ["'/usr/bin/true'"]
    assert data["script_master"] == "'/usr/bin/true' 'master'"
    assert "evips" in data and "vroutes" not in data  # empty lists are left out
    assert data["auth_type"] == 1 and "auth_data" not in doc[1]["data"]


def test_json_v2() -> None:
    cfg = config(CONF.replace("router_id lb1", "router_id lb1\n    json_version 2"))
    doc = json.loads(dumps.render_json(snapshot(cfg)))
    assert list(doc) == ["vrrp"] and [i["data"]["iname"] for i in doc["vrrp"]] == ["VI_1", "VI_2"]
    with pytest.raises(ex.ExporterError):
        ex.parse_json(dumps.render_json(snapshot(cfg)))


def test_check_dump() -> None:
    lines = dumps.render_check_data(snapshot()).splitlines()
    for want in (
        "------< LVS Topology >------",
        " VS VIP = 192.0.2.200, VPORT = 80",
        "   lvs_sched = rr",
        "   protocol = TCP",
        "   RIP = 192.0.2.2, RPORT = 80, WEIGHT = 3 EFF WEIGHT = 3",
        "   alive = 1",
    ):
        assert want in lines, want
    assert " Default interface = eth0" not in lines  # the VRRP process prints that one


# -- counters: keepalived's counting points ---------------------------------------------------------
def test_counting_points() -> None:
    st: Counter[str] = Counter()
    vstats.count_rejection(st, pk.Rejection.AUTH_FAILURE)
    vstats.count_rejection(st, pk.Rejection.TTL)
    vstats.count_rejection(st, pk.Rejection.ADVERT_INT_MISMATCH)  # silently dropped
    assert st == Counter({"auth_failure": 1, "ip_ttl_err": 1})
    # rejected after keepalived counted the advert as received
    vstats.count_rejection(st, pk.Rejection.VIP_MISSING)
    assert st["addr_list_err"] == 1 and st["advert_rcvd"] == 1
    vstats.count_decode_error(st, pk.LengthError("x"))
    vstats.count_accepted(st, 0, 2)
    assert st["packet_len_err"] == 1 and st["pri_zero_rcvd"] == 2 and st["advert_rcvd"] == 3
    assert list(vstats.as_dict(st)) == list(vstats.STATS_FIELDS)
