"""The configuration language of keepalived 2.3 and 2.4 (up to 2.4.3).

The keyword list (tests/data/man_keywords_2.4.3.json) holds the names of
keepalived 2.4.3's keepalived.conf(5) syntax listings, checked against its
parser; tests/data/extract_man_keywords.py made it from the keepalived
git tree.  Every name is parsed into the model or listed unsupported with a
notice at its place, never "unknown keyword"; the additions users ask for
most are applied.  Where 2.2.7 and 2.4.3 disagree we follow 2.4.3
(docs/config.md, "keepalived 2.3/2.4").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.config.errors import Diagnostics, Severity
from pykeepalived.core.config.schema import BlockSpec
from pykeepalived.core.config.semantics import delay_after_boot
from pykeepalived.core.plugin.manager import build_registry

DATA = Path(__file__).parent / "data"
KEYWORDS_243: dict[str, Any] = json.loads((DATA / "man_keywords_2.4.3.json").read_text())
KEYWORDS_227: dict[str, list[str]] = json.loads((DATA / "man_keywords.json").read_text())
BLOCKS = sorted(b for b in KEYWORDS_243 if not b.startswith("_"))
#: Handled by the preprocessor wherever they appear.
PREPROCESSOR_KEYWORDS = {"include_check"}


def _spec(block: str) -> BlockSpec:
    grammar = build_registry().grammar()
    if block == "auth_hmac":
        kw = grammar.block("vrrp_instance").lookup("auth_hmac")
    elif block == "real_server_checkers":
        return grammar.block("real_server")
    elif block in ("SSL_GET", "url"):  # the checker's own block, and its url
        kw = grammar.block("real_server").lookup("SSL_GET")
        if block == "url":
            assert kw is not None and kw.block is not None
            kw = kw.block.lookup("url")
    elif block in grammar.blocks:
        return grammar.block(block)
    else:
        kw = grammar.top.lookup(block)  # blocks that plugins declare (vrrp_script)
    assert kw is not None and kw.block is not None, block
    return kw.block


@pytest.mark.parametrize("block", BLOCKS)
def test_every_keepalived_243_keyword_is_known(block: str) -> None:
    spec = _spec(block)
    missing = [
        k for k in KEYWORDS_243[block] if spec.lookup(k) is None and k not in PREPROCESSOR_KEYWORDS
    ]
    assert missing == []


def test_the_list_covers_2_2_7_and_the_2_4_additions() -> None:
    """The 2.4.3 list is a superset of the 2.2.7 one, and it holds what
    2.3/2.4 added to the parser (the data file is not an empty shell)."""
    for block, names in KEYWORDS_227.items():
        # the 2.2.7 list also took these two from the man page's prose
        prose = {"disable_local_igmp", "vrrp_track_file"}
        assert set(names) - set(KEYWORDS_243[block]) <= prose, block
    added = {
        "global_defs": {
            "vrrp_delay_after_boot",
            "json_version",
            "state_dump_file",
            "stats_dump_file",
            "json_dump_file",
            "v3_checksum_as_v2",
            "use_symlink_paths",
            "iproute_etc_dir",
            "vrrp_owner_ignore_adverts",
        },
        "vrrp_instance": {"auth_hmac", "no_virtual_ipaddress", "timer_expired_backup"},
        "auth_hmac": {"key", "active_key", "anti_replay", "time_window", "mode"},
    }
    for block, names in added.items():
        assert names <= set(KEYWORDS_243[block]), block
    # keepalived.conf(5) of 2.4.3 names the dump files *_file_location; the
    # parser knows them as *_dump_file (what keepalived accepts wins)
    assert KEYWORDS_243["_man_only"]["global_defs"] == [
        "json_file_location",
        "state_file_location",
        "stats_file_location",
    ]


def test_new_unsupported_keywords_are_notices_at_their_place() -> None:
    text = (
        "global_defs {\n use_symlink_paths\n iproute_etc_dir /etc/iproute2\n"  # 2, 3
        " snmp_vs_stats_update_interval 5\n vrrp_owner_ignore_adverts\n}\n"  # 4, 5
        "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n priority 100\n"
        " timer_expired_backup\n owner_ignore_adverts\n"  # 11, 12
        " virtual_ipaddress {\n 192.0.2.1\n }\n}\n"
    )
    result = load_text(text, name="u.conf")
    assert not result.diagnostics.failing
    lines = sorted(
        d.place.line
        for d in result.diagnostics.items
        if d.severity is Severity.NOTICE and "not supported by pykeepalived" in d.message
    )
    assert lines == [2, 3, 4, 5, 11, 12]
    assert not any("unknown keyword" in d.message for d in result.diagnostics.items)


def _vi(body: str, gd: str = "") -> str:
    return (
        f"global_defs {{\n{gd}}}\n"
        "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n priority 100\n"
        f"{body}}}\n"
    )


def test_no_virtual_ipaddress_silences_the_no_vip_notice() -> None:
    without = load_text(_vi(""), name="n.conf")
    assert any("no virtual_ipaddress" in d.message for d in without.diagnostics.items)
    with_ = load_text(_vi(" no_virtual_ipaddress\n"), name="n.conf")
    assert not with_.diagnostics.items, [str(d) for d in with_.diagnostics.items]
    assert with_.config.vrrp_instances[0].no_virtual_ipaddress is True


def test_no_virtual_ipaddress_is_cleared_by_strict_mode() -> None:
    # keepalived 2.4.3: "no_virtual_ipaddress and strict mode incompatible"
    result = load_text(_vi(" no_virtual_ipaddress\n strict_mode\n"), name="n.conf")
    [vi] = result.config.vrrp_instances
    assert vi.no_virtual_ipaddress is False
    assert any("strict mode incompatible" in str(d) for d in result.diagnostics.warnings)


def test_duplicate_unicast_peer_is_reported_and_dropped() -> None:
    # keepalived 2.3.3+: "(V) 192.0.2.6 - duplicate unicast_peer"; the first stays
    body = (
        " unicast_peer {\n  192.0.2.6 min_ttl 2\n  192.0.2.7\n  192.0.2.6\n }\n"  # 7, 8, 9
        " virtual_ipaddress {\n  192.0.2.1\n }\n"
    )
    result = load_text(_vi(body), name="d.conf")
    [vi] = result.config.vrrp_instances
    assert [(str(p.address), p.min_ttl) for p in vi.unicast_peer] == [
        ("192.0.2.6", 2),
        ("192.0.2.7", 0),
    ]
    assert [(d.place.line, d.message) for d in result.diagnostics.warnings] == [
        (10, "(V) 192.0.2.6 - duplicate unicast_peer")
    ]


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def test_vrrp_delay_after_boot_becomes_the_startup_delay() -> None:
    # keepalived 2.4.3 caps the value at UINT_MAX microseconds (~71 min after
    # boot), so the uptime is given: SECS - uptime is what is left to wait
    cfg = load_text(_vi("", " vrrp_delay_after_boot 300\n")).config
    gd = cfg.global_defs
    assert gd.vrrp_delay_after_boot == 300
    left = 300 - _uptime()  # this host's own uptime applies at load
    assert gd.vrrp_startup_delay == pytest.approx(max(0.0, left), abs=5)
    gd.vrrp_startup_delay = 0
    delay_after_boot(gd, Diagnostics(), uptime=200.5)
    assert gd.vrrp_startup_delay == 99.5
    # with vrrp_startup_delay too, the longer one
    gd.vrrp_startup_delay = 120
    delay_after_boot(gd, Diagnostics(), uptime=200.5)
    assert gd.vrrp_startup_delay == 120
    # long past boot: no delay
    gd.vrrp_startup_delay = 0
    delay_after_boot(gd, Diagnostics(), uptime=1000)
    assert gd.vrrp_startup_delay == 0


def test_vrrp_delay_after_boot_range_and_decimals() -> None:
    # keepalived 2.4.3 reads it as a timer: 0.001 .. UINT_MAX microseconds
    bad = load_text(_vi("", " vrrp_delay_after_boot 5000\n"), name="b.conf")
    assert any(d.place.line == 2 for d in bad.diagnostics.errors), bad.diagnostics.items
    odd = load_text(_vi("", " vrrp_delay_after_boot 1.00049\n"), name="b.conf")
    assert any("too many decimal places" in str(d) for d in odd.diagnostics.warnings)
    assert odd.config.global_defs.vrrp_delay_after_boot == 1.0


def test_global_v3_checksum_as_v2_is_the_instances_default() -> None:
    cfg = load_text(_vi(" version 3\n", " v3_checksum_as_v2\n")).config
    assert cfg.global_defs.v3_checksum_as_v2 is True
    assert cfg.vrrp_instances[0].v3_checksum_as_v2 is True
    assert load_text(_vi(" version 3\n")).config.vrrp_instances[0].v3_checksum_as_v2 is False


def _script_conf(interval: str, timeout: str | None = None) -> str:
    extra = f" timeout {timeout}\n" if timeout is not None else ""
    return (
        f"vrrp_script chk {{\n script /bin/true\n interval {interval}\n{extra}}}\n"
        "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n"
        " track_script {\n chk\n }\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n"
    )


def _script(result: Any) -> Any:
    return result.config.ext["vrrp_script"]["chk"]


@pytest.mark.parametrize(
    "interval,timeout,expected,warned",
    [
        ("0.25", "0.1", (0.25, 0.1), False),  # keepalived 2.3.2+: milliseconds
        ("2", None, (2.0, 2.0), False),
        ("0.0125", None, (0.013, 0.013), True),  # too many decimals: rounded half up
        ("0.0004", None, (1.0, 1.0), True),  # rounds to 0: "setting to 1"
    ],
)
def test_track_script_millisecond_interval_and_timeout(
    interval: str, timeout: str | None, expected: tuple[float, float], warned: bool
) -> None:
    grammar = build_registry().grammar()  # vrrp_script is a plugin's
    result = load_text(_script_conf(interval, timeout), name="s.conf", grammar=grammar)
    assert not result.diagnostics.errors, [str(d) for d in result.diagnostics.errors]
    script = _script(result)
    assert (script.interval, script.effective_timeout) == expected
    assert bool(result.diagnostics.warnings) == warned


def test_env_substitution_in_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKA_TEST_IFACE", "eth7")
    text = _vi(" virtual_ipaddress {\n 192.0.2.1\n }\n")
    cfg = load_text(text.replace("eth0", "${_ENV PYKA_TEST_IFACE}")).config
    assert cfg.vrrp_instances[0].interface == "eth7"


@pytest.mark.netns
def test_unicast_source_binds_before_the_address_exists(lab: Any) -> None:
    """IP_FREEBIND (keepalived 2.3.3+): a unicast_src_ip that is not on the
    host yet still gives a sending socket (2.2.7 failed the bind)."""
    lb = lab(1)
    [h] = lb.hosts
    code = (
        "from pykeepalived.core.vrrp.io import Sender\n"
        "s4 = Sender('eth0', 4, '192.0.2.250')\n"
        "s6 = Sender('eth0', 6, '2001:db8::250')\n"
        "print(s4.sock.getsockname()[0], s6.sock.getsockname()[0])\n"
    )
    out = h.run([sys.executable, "-c", code], check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["192.0.2.250", "2001:db8::250"]
    assert "192.0.2.250" not in h.addresses()


def test_secrets_stay_masked_in_the_dump() -> None:
    text = (
        "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n"
        " auth_hmac {\n key 1 a-secret-key-of-thirty-two-bytes-at-least\n active_key 1\n }\n"
        " virtual_ipaddress {\n 192.0.2.1\n }\n}\n"
    )
    from pykeepalived.core.config.dump import to_jsonable

    dumped = json.dumps(to_jsonable(load_text(text).config))
    assert "a-secret-key" not in dumped


_KA24 = os.environ.get("PYKEEPALIVED_KEEPALIVED_24", "")
#: keepalived's config messages: "(FILE: Line N) TEXT".
_KA_LINE = re.compile(r"^\((?P<file>.+): Line (?P<line>\d+)\) (?P<text>.*)$")


@pytest.mark.skipif(
    not os.access(_KA24, os.X_OK),
    reason="needs a built keepalived 2.4 named by $PYKEEPALIVED_KEEPALIVED_24",
)
def test_same_lines_and_texts_as_keepalived_243(tmp_path: Path) -> None:
    """keepalived 2.4.3 ``-t`` as the oracle for what 2.3/2.4 report: the
    rounded millisecond value and the duplicate peer, at the same lines."""
    conf = tmp_path / "o.conf"
    conf.write_text(
        "global_defs {\n enable_script_security\n script_user root\n}\n"
        "vrrp_script chk {\n script /bin/true\n interval 0.0125\n timeout 0.25\n}\n"  # 7
        "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n priority 100\n"
        " no_virtual_ipaddress\n unicast_peer {\n  192.0.2.6 min_ttl 2\n  192.0.2.7\n"
        "  192.0.2.6\n }\n track_script {\n  chk\n }\n}\n"  # 18
    )
    proc = subprocess.run(
        [_KA24, "-t", "-l", "-f", str(conf)], capture_output=True, text=True, timeout=30
    )
    theirs = sorted(
        (int(m["line"]), m["text"])
        for line in (proc.stdout + proc.stderr).splitlines()
        if (m := _KA_LINE.match(line)) and m["file"] == str(conf)
    )
    result = load_text(conf.read_text(), name=str(conf), grammar=build_registry().grammar())
    ours = sorted((d.place.line, d.message) for d in result.diagnostics.warnings)
    assert theirs == [
        (7, "number '0.0125' has too many decimal places"),
        (18, "(V) 192.0.2.6 - duplicate unicast_peer"),
    ], proc.stdout + proc.stderr
    assert ours == theirs
