"""keepalived's corrections of virtual servers, compared with keepalived 2.2.7.

keepalived checks every virtual_server before programming IPVS
(check_data.c validate_check_config) and corrects what it reports; ``-t``
runs that check too, without ip_vs, so each case here runs ``keepalived -t``
and ``pykeepalived -t`` on the same file and compares the messages (in order)
and the exit codes; the corrected model (``--dump-conf-json``) is checked
field by field against what keepalived's messages say it did.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from checkhelp import manager
from keepalived_oracle import KEEPALIVED

PYKEEPALIVED = Path(sys.executable).with_name("pykeepalived")

#: keepalived prefixes parse-time messages with "(FILE: Line N) "; its
#: validation messages come after parsing, without a place.
_KA_PLACE = re.compile(r"^\(.+: Line \d+\) ")
_OUR_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?:warning|error): (?P<text>.*)$")

#: Real servers by forwarding method and port, for a virtual server by address.
PORTS = """
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    real_server 192.0.2.20 8080 {
    }
    real_server 192.0.2.21 {
    }
    real_server 192.0.2.22 80 {
        lvs_method NAT
    }
    real_server 192.0.2.23 {
        lvs_method NAT
    }
    real_server 192.0.2.24 8080 {
        lvs_method TUN
    }
    sorry_server 192.0.2.30 90
}
virtual_server 192.0.2.11 443 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 192.0.2.20 8443 {
    }
    real_server 192.0.2.21 {
    }
    sorry_server 192.0.2.30
    sorry_server_lvs_method TUN
}
"""

#: fwmark services: ports cleared unless NAT, protocol and ha_suspend dropped.
FWMARK = """
virtual_server fwmark 5 {
    protocol UDP
    lb_algo rr
    lb_kind TUN
    ha_suspend
    real_server 192.0.2.20 8080 {
    }
    real_server 192.0.2.21 8080 {
        lvs_method NAT
    }
    real_server 192.0.2.22 {
        lvs_method DR
    }
    sorry_server 192.0.2.30 90
}
"""

#: Groups: keepalived only warns; a port-less address entry makes it persistent.
GROUPS = """
virtual_server_group G1 {
    192.0.2.50 80
    192.0.2.51-53 8080
    fwmark 9
}
virtual_server_group G2 {
    192.0.2.60
}
virtual_server group G1 {
    lb_kind DR
    protocol TCP
    lb_algo rr
    ha_suspend
    real_server 192.0.2.20 8080 {
    }
    real_server 192.0.2.21 {
    }
    sorry_server 192.0.2.30 90
}
virtual_server group G2 {
    lb_algo rr
    protocol TCP
    lb_kind NAT
    real_server 192.0.2.20 8080 {
    }
}
"""

#: Defaults, duplicates, sorry server matching a real server, quorum.
DEFAULTS = """
virtual_server 192.0.2.70 0 {
    lb_algo rr
    protocol TCP
    ops
    lb_kind NAT
    real_server 192.0.2.20 0 {
    }
}
virtual_server 192.0.2.71 80 {
    real_server 192.0.2.20 80 {
    }
    real_server 192.0.2.20 80 {
        weight 3
    }
    real_server 192.0.2.21 80 {
        inhibit_on_failure
        weight 0
    }
    sorry_server 192.0.2.21 80
    quorum 4
}
virtual_server 192.0.2.72 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    quorum 2
    real_server 192.0.2.20 80 {
        weight 0
    }
}
virtual_server 192.0.2.73 80 {
    protocol TCP
    lb_algo rr
    sorry_server 192.0.2.30 80
}
virtual_server 192.0.2.74 53 {
    protocol UDP
    lb_algo rr
    lb_kind NAT
    quorum 3
    hysteresis 5
    real_server 192.0.2.20 53 {
        weight 2
    }
    real_server 192.0.2.21 53 {
        weight 2
    }
}
"""

#: Read-time checks (check_parser.c): families, sorry options, empty group.
READTIME = """
virtual_server_group EMPTY {
}
virtual_server 192.0.2.90 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    sorry_server_inhibit
    sorry_server_lvs_method NAT
    real_server 2001:db8::20 80 {
    }
    real_server 192.0.2.20 80 {
    }
    real_server 2001:db8::21 80 {
        lvs_method TUN
    }
    sorry_server 2001:db8::30 80
}
virtual_server 2001:db8::10 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 192.0.2.20 80 {
    }
    real_server 2001:db8::20 80 {
    }
    sorry_server 192.0.2.31 80
    sorry_server_inhibit
    sorry_server_lvs_method TUN
}
"""

#: Scheduler flags need their scheduler first; a group mixing families with
#: a bare fwmark is removed.
FLAGS = """
virtual_server_group MIX {
    192.0.2.50 80
    2001:db8::50 80
    fwmark 9
}
virtual_server_group FAMILIES {
    192.0.2.51 80
    2001:db8::51 80
    fwmark 10 inet
}
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    sh-port
    real_server 192.0.2.20 80 {
    }
}
virtual_server 192.0.2.11 80 {
    protocol TCP
    sh-fallback
    lb_algo sh
    lb_kind NAT
    sh-port
    mh-port
    real_server 192.0.2.20 80 {
    }
}
"""

#: A repeated quorum_up/notify_up: keepalived keeps the first.
SCRIPTS = """
global_defs {
    script_user root
    enable_script_security
}
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    quorum_up /bin/true
    quorum_up /bin/false
    real_server 192.0.2.20 80 {
        notify_down /bin/true
        notify_down "/bin/false x"
    }
}
"""

#: Case-sensitive scheduler and methods: an unknown one is left unset, then defaulted.
INVALID = """
virtual_server 192.0.2.10 80 {
    protocol tcp
    lb_algo RR
    lb_kind nat
    real_server 192.0.2.20 80 {
        lvs_method dr
    }
    sorry_server 192.0.2.30 80
    sorry_server_lvs_method Tun
}
"""

#: virtual_server weight: the weight of real servers without their own
#: (the quorum message shows the total: 5 + 1).
VS_WEIGHT = """
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    quorum 20
    real_server 192.0.2.20 80 {
    }
    real_server 192.0.2.21 80 {
        weight 1
    }
    weight 5
}
"""

#: keepalived's bounds: weight up to INT_MAX, quorum and hysteresis unsigned,
#: persistence up to 31 days (all accepted, then quorum corrected).
BOUNDS = """
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    quorum 4294967295
    hysteresis 4294967295
    persistence_timeout 2678400
    real_server 192.0.2.20 80 {
        weight 2147483647
    }
}
"""

#: Nothing to correct: both exit 0 and say nothing.
CLEAN = """
virtual_server 192.0.2.80 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    real_server 192.0.2.20 80 {
    }
    real_server 192.0.2.21 {
    }
    sorry_server 192.0.2.30
}
"""

CASES = {
    "ports": PORTS,
    "fwmark": FWMARK,
    "groups": GROUPS,
    "defaults": DEFAULTS,
    "readtime": READTIME,
    "bounds": BOUNDS,
    "flags": FLAGS,
    "scripts": SCRIPTS,
    "invalid": INVALID,
    "vs_weight": VS_WEIGHT,
    "protocol": INVALID.replace("protocol tcp", "protocol icmp"),
    "clean": CLEAN,
}


def keepalived_messages(conf: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [KEEPALIVED, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30
    )
    texts = [_KA_PLACE.sub("", line) for line in (proc.stdout + proc.stderr).splitlines()]
    return proc.returncode, [t for t in texts if t.strip()]


def our_messages(conf: Path) -> tuple[int, list[tuple[int, str]]]:
    proc = subprocess.run(
        [str(PYKEEPALIVED), "-t", "-f", str(conf)], capture_output=True, text=True, timeout=60
    )
    found = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = _OUR_LINE.match(line)
        if m and m["file"].endswith(conf.name):
            found.append((int(m["line"]), m["text"]))
    return proc.returncode, found


def dump(conf: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(PYKEEPALIVED), "--dump-conf-json", "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def line_of(text: str, needle: str, start: str = "") -> int:
    """The 1-based line of the first ``needle`` after the line holding ``start``."""
    lines = text.splitlines()
    begin = next(i for i, line in enumerate(lines) if start in line) if start else 0
    return next(i for i, line in enumerate(lines) if i >= begin and needle in line) + 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_messages_and_exit_code_as_keepalived(case: str, tmp_path: Path) -> None:
    conf = tmp_path / f"{case}.conf"
    conf.write_text(CASES[case])
    ka_rc, ka = keepalived_messages(conf)
    our_rc, ours = our_messages(conf)
    assert [text for _, text in ours] == ka
    assert our_rc == ka_rc == (0 if case == "clean" else 5)
    if case != "clean":
        assert ka, "keepalived reported nothing: the case does not test a correction"


def test_places_name_the_server_corrected(tmp_path: Path) -> None:
    """Each message carries the line of what it corrects: the real server,
    the sorry server, or the virtual server itself."""
    conf = tmp_path / "ports.conf"
    conf.write_text(PORTS + FWMARK)
    _, ours = our_messages(conf)
    text = PORTS + FWMARK
    expected = {
        "real server [192.0.2.20]:tcp:8080 ports don't match": line_of(
            text, "real_server 192.0.2.20 8080"
        ),
        "[192.0.2.10]:tcp:80 and sorry server ports": line_of(text, "sorry_server 192.0.2.30 90"),
        "ha_suspend with fwmarks": line_of(text, "virtual_server fwmark 5"),
        "FWM 5, real server [192.0.2.20]:none:8080": line_of(
            text, "real_server 192.0.2.20 8080", "virtual_server fwmark 5"
        ),
    }
    for needle, line in expected.items():
        assert [n for n, t in ours if needle in t] == [line], needle


def servers(vs: dict[str, Any]) -> dict[str, tuple[int | None, str | None]]:
    return {rs["address"]: (rs["port"], rs["lvs_method"]) for rs in vs["real_servers"]}


def test_corrected_model(tmp_path: Path) -> None:
    """What keepalived programs after its corrections, in our model."""
    conf = tmp_path / "all.conf"
    conf.write_text(PORTS + FWMARK + GROUPS + DEFAULTS)
    cfg = dump(conf)
    vss = cfg["virtual_servers"]
    by = {(v["address"], v["fwmark"], v["group"]): v for v in vss}
    # DR/TUN take the virtual server's port; NAT without a port too; NAT keeps its own.
    dr = by[("192.0.2.10", None, None)]
    assert servers(dr) == {
        "192.0.2.20": (80, "DR"),
        "192.0.2.21": (80, "DR"),
        "192.0.2.22": (80, "NAT"),
        "192.0.2.23": (80, "NAT"),
        "192.0.2.24": (80, "TUN"),
    }
    assert (dr["sorry_server"]["port"], dr["sorry_server_lvs_method"]) == (80, "DR")
    nat = by[("192.0.2.11", None, None)]
    assert servers(nat) == {"192.0.2.20": (8443, "NAT"), "192.0.2.21": (443, "NAT")}
    assert (nat["sorry_server"]["port"], nat["sorry_server_lvs_method"]) == (443, "TUN")
    # fwmark: ports cleared unless NAT; no protocol; ha_suspend cleared.
    fwm = by[(None, 5, None)]
    assert servers(fwm) == {
        "192.0.2.20": (None, "TUN"),
        "192.0.2.21": (8080, "NAT"),
        "192.0.2.22": (None, "DR"),
    }
    assert fwm["sorry_server"]["port"] is None
    assert (fwm["protocol"], fwm["ha_suspend"]) == ("", False)
    # groups: ports as written (keepalived only warns), ha_suspend cleared
    # (the group has a fwmark), persistence for a port-less entry.
    g1 = by[(None, None, "G1")]
    assert servers(g1) == {"192.0.2.20": (8080, "DR"), "192.0.2.21": (None, "DR")}
    assert (g1["sorry_server"]["port"], g1["ha_suspend"], g1["protocol"]) == (90, False, "TCP")
    assert g1["persistence_timeout"] is None
    assert by[(None, None, "G2")]["persistence_timeout"] == 360
    # zero port: persistent; OPS only with UDP.
    zero = by[("192.0.2.70", None, None)]
    assert (zero["persistence_timeout"], zero["ops"]) == (360, False)
    assert servers(zero) == {"192.0.2.20": (0, "NAT")}
    # defaults, the duplicate dropped, the sorry server's inhibit from the real server.
    d = by[("192.0.2.71", None, None)]
    assert (d["protocol"], d["lb_algo"], d["lb_kind"]) == ("UDP", "wlc", "NAT")
    assert [(rs["address"], rs["weight"]) for rs in d["real_servers"]] == [
        ("192.0.2.20", 1),
        ("192.0.2.21", 0),
    ]
    assert d["sorry_server_inhibit"] is True
    assert (d["quorum"], d["hysteresis"]) == (1, 0)
    # a pool of weight 0: quorum 0 and keepalived's unsigned 0 - 1.
    w0 = by[("192.0.2.72", None, None)]
    assert (w0["quorum"], w0["hysteresis"]) == (0, 2**32 - 1)
    assert (
        by[("192.0.2.74", None, None)]["quorum"],
        by[("192.0.2.74", None, None)]["hysteresis"],
    ) == (3, 2)
    # no real servers: dropped, sorry server or not.
    assert ("192.0.2.73", None, None) not in by


def test_table_ports_as_keepalived_programs_them() -> None:
    """The corrected model gives keepalived's destinations; in a group,
    keepalived programs a server that is not NAT with each entry's port (0
    for a fwmark entry) and a NAT one with its own (ipvswrapper.c)."""
    m, _, _ = manager(
        PORTS
        + FWMARK
        + """
virtual_server_group G {
    192.0.2.50 80
    192.0.2.51 8080
    fwmark 9
}
virtual_server group G {
    protocol TCP
    lb_algo rr
    lb_kind DR
    persistence_timeout 60
    real_server 192.0.2.20 8080 {
    }
    real_server 192.0.2.21 9000 {
        lvs_method NAT
    }
    real_server 192.0.2.22 {
        lvs_method NAT
    }
}
"""
    )
    table = {(str(s.address), s.port, s.fwmark): s for s in m.table()}

    def ports(key: tuple[str, int | None, int | None]) -> dict[str, tuple[int, str]]:
        return {str(d.address): (d.port, d.forward.value) for d in table[key].destinations}

    assert ports(("192.0.2.10", 80, None)) == {
        "192.0.2.20": (80, "DR"),
        "192.0.2.21": (80, "DR"),
        "192.0.2.22": (80, "NAT"),
        "192.0.2.23": (80, "NAT"),
        "192.0.2.24": (80, "TUN"),
    }
    assert ports(("None", None, 5)) == {
        "192.0.2.20": (0, "TUN"),
        "192.0.2.21": (8080, "NAT"),
        "192.0.2.22": (0, "DR"),
    }
    nat = {"192.0.2.21": (9000, "NAT"), "192.0.2.22": (0, "NAT")}
    assert ports(("192.0.2.50", 80, None)) == {"192.0.2.20": (80, "DR"), **nat}
    assert ports(("192.0.2.51", 8080, None)) == {"192.0.2.20": (8080, "DR"), **nat}
    assert ports(("None", None, 9)) == {"192.0.2.20": (0, "DR"), **nat}


def test_read_time_corrections_in_the_model(tmp_path: Path) -> None:
    conf = tmp_path / "readtime.conf"
    conf.write_text(READTIME)
    cfg = dump(conf)
    assert cfg["virtual_server_groups"] == []
    v4, v6 = cfg["virtual_servers"]
    # the IPv6 real server dropped, the tunnelled one kept; no sorry server.
    assert servers(v4) == {"192.0.2.20": (80, "DR"), "2001:db8::21": (80, "TUN")}
    assert (v4["sorry_server"], v4["sorry_server_inhibit"]) == (None, False)
    # options after sorry_server apply; a tunnelled sorry server may differ in family.
    assert servers(v6) == {"2001:db8::20": (80, "NAT")}
    assert v6["sorry_server"]["address"] == "192.0.2.31"
    assert (v6["sorry_server_inhibit"], v6["sorry_server_lvs_method"]) == (True, "TUN")


def test_flags_and_groups_in_the_model(tmp_path: Path) -> None:
    conf = tmp_path / "flags.conf"
    conf.write_text(FLAGS)
    cfg = dump(conf)
    assert [g["name"] for g in cfg["virtual_server_groups"]] == ["FAMILIES"]
    assert [v["sched_flags"] for v in cfg["virtual_servers"]] == [[], ["sh-port"]]


def test_first_script_kept(tmp_path: Path) -> None:
    conf = tmp_path / "scripts.conf"
    conf.write_text(SCRIPTS)
    [vs] = dump(conf)["virtual_servers"]
    assert vs["quorum_up"]["argv"] == ["/bin/true"]
    assert vs["real_servers"][0]["notify_down"]["argv"] == ["/bin/true"]


def test_invalid_names_defaulted_in_the_model(tmp_path: Path) -> None:
    conf = tmp_path / "invalid.conf"
    conf.write_text(INVALID)
    [vs] = dump(conf)["virtual_servers"]
    assert (vs["protocol"], vs["lb_algo"], vs["lb_kind"]) == ("TCP", "wlc", "NAT")
    assert servers(vs) == {"192.0.2.20": (80, "NAT")}
    assert vs["sorry_server_lvs_method"] == "NAT"


def test_virtual_server_weight(tmp_path: Path) -> None:
    conf = tmp_path / "vs_weight.conf"
    conf.write_text(VS_WEIGHT)
    [vs] = dump(conf)["virtual_servers"]
    assert [rs["weight"] for rs in vs["real_servers"]] == [5, 1]
    assert vs["quorum"] == 6
