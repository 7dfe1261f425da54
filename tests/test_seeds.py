"""Real keepalived.conf files from the seed documents (tests/fixtures/seeds).

Each fixture is a config copied verbatim from /work/shared/seeds/*.txt
(Japanese, English and Russian articles).  Fragments that an article adds to
another config are kept alone *and* combined:

* ``001_lb_fragment.conf`` is the virtual_server the ArchWiki page says "can
  be added to the above configuration"; ``001_lb_combined_host_a.conf`` is
  host A's monitoring config followed by it;
* ``004_*_fragment.conf`` are the pieces the Russian article adds step by
  step; ``004_proxy_serv0[12].conf`` are its final files, i.e. the
  combination it describes;
* ``003_flat_*.conf`` are one-line configs as the Japanese page flattened
  them: keepalived misreads them, pykeepalived understands them (the model
  below is the intended one) and warns, so that ``-t`` fails as keepalived's.

Two things are checked for every file:

1. acceptance: ``pykeepalived -t`` exits as keepalived 2.2.7 ``-t`` does
   (0 ok, 5 config problems, 6 script security), with no ERROR-level
   diagnostic unless keepalived rejects the same thing; the netns test
   re-measures keepalived's exit codes so this table cannot drift;
2. meaning: the model holds what keepalived makes of the file.

Tracker and checker keywords come from plugins, loaded through the real
registry (:func:`require` fails naming the plugin if one is missing).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykeepalived.core.config import LoadResult, load
from pykeepalived.core.config.grammar import Grammar
from pykeepalived.core.config.model import Config, TrackRef, VrrpInstance
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.core.shell.cli import main as cli_main

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
FIXTURES = sorted(p.name for p in SEEDS.glob("*.conf"))

#: keepalived 2.2.7 ``-t -f FILE`` exit codes, measured in a network namespace
#: holding the interfaces the configs name, with mail.example.net in the
#: namespace's /etc/hosts (keepalived resolves smtp_server while parsing).
#: Re-measured by test_keepalived_agrees.
KEEPALIVED_EXIT = {
    # killall exists: "SECURITY VIOLATION - scripts are being executed but
    # script_security not enabled." (6 wins over the sync-group weight error)
    "000_haproxy_primary.conf": 6,
    "000_nat_backup.conf": 0,
    "000_nat_primary.conf": 0,
    "001_basic_host_a.conf": 0,
    "001_basic_host_b.conf": 0,
    "001_lb_combined_host_a.conf": 0,
    "001_lb_fragment.conf": 0,
    "001_monitor_host_a.conf": 0,
    "001_monitor_host_b.conf": 0,
    # "lb_kind nat": unknown [nat] routing method; nb_get_retry is deprecated
    "002_lvs_http_get.conf": 5,
    # flattened onto one line: misread
    "003_flat_backup.conf": 5,
    "003_flat_master.conf": 5,
    # /usr/sbin/squid does not exist: "Disabling track script ... not found"
    "004_proxy_serv01.conf": 5,
    "004_proxy_serv02.conf": 5,
    # instance keywords at the top level: Unknown keyword
    "004_track_interface_fragment.conf": 5,
    "004_track_script_fragment.conf": 5,
    # an unused vrrp_script is fine
    "004_vrrp_script_fragment.conf": 0,
}

#: Interfaces the fixtures name; created as veth in the namespace.
INTERFACES = ("eth0", "eth1", "enp0s8", "enp0s9", "br0")

#: Keyword -> plugin that provides it (entry point name).
PLUGIN_OF = {
    "vrrp_script": "track_script",
    "track_script": "track_script",
    "vrrp_track_process": "track_process",
    "track_process": "track_process",
    "TCP_CHECK": "tcp_check",
    "HTTP_GET": "http_get",
}

#: Which plugin keywords each fixture uses.
USES = {
    "000_haproxy_primary.conf": ("vrrp_script", "track_script"),
    "000_nat_backup.conf": ("TCP_CHECK",),
    "000_nat_primary.conf": ("TCP_CHECK",),
    "001_lb_combined_host_a.conf": ("vrrp_track_process", "track_process", "TCP_CHECK"),
    "001_lb_fragment.conf": ("TCP_CHECK",),
    "001_monitor_host_a.conf": ("vrrp_track_process", "track_process"),
    "001_monitor_host_b.conf": ("vrrp_track_process", "track_process"),
    "002_lvs_http_get.conf": ("HTTP_GET",),
    "004_proxy_serv01.conf": ("vrrp_script", "track_script"),
    "004_proxy_serv02.conf": ("vrrp_script", "track_script"),
    "004_vrrp_script_fragment.conf": ("vrrp_script",),
}


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    return build_registry().grammar()


def _known(grammar: Grammar, keyword: str) -> bool:
    return any(spec.lookup(keyword) is not None for spec in grammar.blocks.values())


def require(grammar: Grammar, *keywords: str) -> None:
    """The plugin keywords a fixture needs are registered (all plugins have landed:
    a missing one is a failure, no longer an xfail)."""
    missing = [f"{kw} (plugin {PLUGIN_OF[kw]})" for kw in keywords if not _known(grammar, kw)]
    assert not missing, f"plugin keywords not registered: {missing}"


def _load(name: str, grammar: Grammar) -> LoadResult:
    return load(str(SEEDS / name), config_id="seedhost", grammar=grammar)


def _vi(cfg: Config, name: str) -> VrrpInstance:
    vi = cfg.instance(name)
    assert vi is not None, f"no vrrp_instance {name}"
    return vi


def _vips(vi: VrrpInstance) -> list[str]:
    return [v.address.with_prefixlen for v in vi.virtual_ipaddress]


def _refs(vi: VrrpInstance, kind: str) -> list[TrackRef]:
    return [r for r in vi.tracks if r.kind == kind]


def test_fixture_table_is_complete() -> None:
    assert set(FIXTURES) == set(KEEPALIVED_EXIT), "every fixture needs keepalived's exit code"


# -- acceptance: pykeepalived -t exits as keepalived -t does --------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_cli_exit_code_matches_keepalived(
    name: str, grammar: Grammar, capsys: pytest.CaptureFixture[str]
) -> None:
    require(grammar, *USES.get(name, ()))
    rc = cli_main(["-t", "-f", str(SEEDS / name), "-i", "seedhost"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == KEEPALIVED_EXIT[name], err
    # Every message carries FILE:LINE or is one of keepalived's global lines.
    for line in err.splitlines():
        assert line.startswith(str(SEEDS / name) + ":") or "SECURITY VIOLATION" in line, line


@pytest.mark.parametrize("name", FIXTURES)
def test_loads_without_traceback_core_grammar(name: str) -> None:
    """Without plugins, plugin keywords are 'unknown' warnings, never errors."""
    result = load(str(SEEDS / name), config_id="seedhost")
    for d in result.diagnostics.items:
        assert str(d).startswith(str(SEEDS / name) + ":"), str(d)


# -- meaning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,role", [("000_nat_primary.conf", "MASTER"), ("000_nat_backup.conf", "BACKUP")]
)
def test_000_nat(name: str, role: str, grammar: Grammar) -> None:
    cfg = _load(name, grammar).config
    gd = cfg.global_defs
    assert gd.notification_email == ["root@example.com"]
    assert gd.notification_email_from == (
        "srv1@example.com" if role == "MASTER" else "srv2@example.com"
    )
    assert gd.smtp_server == ("localhost", 25)
    assert gd.smtp_connect_timeout == 30
    [sg] = cfg.vrrp_sync_groups
    assert (sg.name, sg.group) == ("VRRP1", ["external", "internal"])
    for vname, dev, vrid, vip in (
        ("external", "enp0s8", 91, "192.168.1.1/24"),
        ("internal", "enp0s9", 92, "10.0.0.100/24"),
    ):
        vi = _vi(cfg, vname)
        assert (vi.state, vi.interface, vi.virtual_router_id) == (role, dev, vrid)
        assert vi.priority == (200 if role == "MASTER" else 100)
        assert vi.advert_int == 1 and vi.version == 2
        assert vi.authentication is not None
        assert (vi.authentication.auth_type, vi.authentication.auth_pass) == ("PASS", "1215")
        assert _vips(vi) == [vip]
    [vs] = cfg.virtual_servers
    assert (vs.address, vs.port, vs.protocol) == (ipaddress.ip_address("192.168.1.1"), 80, "TCP")
    assert (vs.delay_loop, vs.lb_algo, vs.lb_kind, vs.persistence_timeout) == (
        10,
        "rr",
        "NAT",
        7200,
    )
    assert [(str(rs.address), rs.port, rs.weight) for rs in vs.real_servers] == [
        ("10.0.0.71", 80, 1),
        ("10.0.0.72", 80, 1),
    ]
    require(grammar, "TCP_CHECK")
    for rs in vs.real_servers:
        [chk] = rs.checkers
        assert chk.kind == "TCP_CHECK"
        assert chk.options.connect_timeout == 5
        assert chk.options.connect_port == 80


def test_000_haproxy(grammar: Grammar) -> None:
    result = _load("000_haproxy_primary.conf", grammar)
    cfg = result.config
    [sg] = cfg.vrrp_sync_groups
    assert sg.group == ["external", "internal"]
    ext, internal = _vi(cfg, "external"), _vi(cfg, "internal")
    assert (ext.state, ext.interface, ext.virtual_router_id, ext.priority) == (
        "MASTER",
        "enp0s8",
        91,
        200,
    )
    assert (internal.interface, internal.virtual_router_id) == ("enp0s9", 92)
    assert _vips(ext) == ["192.168.1.1/24"] and _vips(internal) == ["10.0.0.100/24"]
    assert internal.tracks == []
    require(grammar, "vrrp_script", "track_script")
    [ref] = _refs(ext, "script")
    assert ref.name == "chk_haproxy"
    # vrrp_script weight 2, but the instance is in a sync group without
    # sync_group_tracking_weight: keepalived 2.2.7 drops the track and says so
    # (it neither adds weight nor faults the instance); -t still checks it.
    from pykeepalived.core.tracking import instance_refs

    assert ("script", "chk_haproxy") not in {(r.kind, r.name) for r in instance_refs(cfg, ext)}
    assert any(
        "ignoring tracked script chk_haproxy with weights due to SYNC group" in d.message
        for d in result.diagnostics.warnings
    )
    scripts = cfg.ext["vrrp_script"]
    items = scripts.values() if isinstance(scripts, dict) else scripts
    [chk] = [s for s in items if s.name == "chk_haproxy"]
    assert chk.script.argv == ["killall", "-0", "haproxy"]  # the '# check ...' comment is cut
    assert chk.interval == 2 and chk.weight == 2


@pytest.mark.parametrize(
    "name,state,prio",
    [("001_basic_host_a.conf", "MASTER", 20), ("001_basic_host_b.conf", "BACKUP", 15)],
)
def test_001_basic(name: str, state: str, prio: int, grammar: Grammar) -> None:
    result = _load(name, grammar)
    assert not result.diagnostics.failing
    vi = _vi(result.config, "VI_1")
    assert (vi.state, vi.interface, vi.virtual_router_id, vi.priority, vi.advert_int) == (
        state,
        "eth0",
        101,
        prio,
        1,
    )
    assert vi.authentication is not None
    # "auth_pass pass1234 " with a trailing blank on host A
    assert (vi.authentication.auth_type, vi.authentication.auth_pass) == ("PASS", "pass1234")
    # no prefix given: a /32 host address, as keepalived adds it
    assert _vips(vi) == ["172.16.0.100/32"]
    assert vi.preempt


@pytest.mark.parametrize(
    "name", ["001_monitor_host_a.conf", "001_monitor_host_b.conf", "001_lb_combined_host_a.conf"]
)
def test_001_monitor(name: str, grammar: Grammar) -> None:
    cfg = _load(name, grammar).config
    gd = cfg.global_defs
    assert gd.notification_email == ["admin@example.net"]
    assert gd.smtp_server == ("mail.example.net", 25)
    vi = _vi(cfg, "VI_1")
    assert vi.state == "BACKUP" and vi.nopreempt and not vi.preempt
    assert vi.priority == (15 if name == "001_monitor_host_b.conf" else 20)
    assert vi.authentication is not None and vi.authentication.auth_type == "AH"
    assert vi.authentication.auth_pass == "key12345"
    assert vi.smtp_alert is True
    assert _vips(vi) == ["172.16.0.100/32"]
    require(grammar, "vrrp_track_process", "track_process")
    [ref] = _refs(vi, "process")
    assert (ref.name, ref.weight) == ("track_sshd", None)
    procs = cfg.ext["vrrp_track_process"]
    items = procs.values() if isinstance(procs, dict) else procs
    [tp] = [p for p in items if p.name == "track_sshd"]
    assert tp.process == "sshd" or getattr(tp, "process", None) == ["sshd"]


@pytest.mark.parametrize("name", ["001_lb_fragment.conf", "001_lb_combined_host_a.conf"])
def test_001_lb(name: str, grammar: Grammar) -> None:
    cfg = _load(name, grammar).config
    [vs] = cfg.virtual_servers
    assert (str(vs.address), vs.port, vs.delay_loop, vs.lb_algo, vs.lb_kind, vs.protocol) == (
        "172.16.0.100",
        80,
        6,
        "rr",
        "NAT",
        "TCP",
    )
    assert [str(rs.address) for rs in vs.real_servers] == [
        f"172.16.1.{n}" for n in (20, 21, 22, 23)
    ]
    assert all(rs.port == 80 and rs.weight == 1 for rs in vs.real_servers)
    if name == "001_lb_fragment.conf":
        assert cfg.vrrp_instances == []
    else:
        assert [vi.name for vi in cfg.vrrp_instances] == ["VI_1"]
    require(grammar, "TCP_CHECK")
    for rs in vs.real_servers:
        [chk] = rs.checkers
        assert chk.kind == "TCP_CHECK" and chk.options.connect_timeout == 10


def test_002_lvs_http_get(grammar: Grammar) -> None:
    result = _load("002_lvs_http_get.conf", grammar)
    cfg = result.config
    assert cfg.global_defs.router_id == "LVS_DEVEL"
    vi = _vi(cfg, "VI_1")
    assert (vi.state, vi.priority, vi.interface, vi.virtual_router_id) == (
        "MASTER",
        100,
        "br0",
        100,
    )
    assert _vips(vi) == ["10.100.5.11/21"]
    [vs] = cfg.virtual_servers
    # keepalived: "unknown [nat] routing method" (case matters), default NAT
    assert vs.lb_kind == "NAT"
    assert any("[nat]" in d.message and d.place.line == 23 for d in result.diagnostics.failing)
    assert (vs.lb_algo, vs.delay_loop) == ("rr", 6)
    assert [str(rs.address) for rs in vs.real_servers] == ["10.100.0.11", "10.100.0.21"]
    require(grammar, "HTTP_GET")
    deprecated = [
        d for d in result.diagnostics.warnings if "nb_get_retry is deprecated" in d.message
    ]
    assert [d.place.line for d in deprecated] == [33, 44]
    for rs in vs.real_servers:
        [chk] = rs.checkers
        assert chk.kind == "HTTP_GET"
        assert chk.options.connect_timeout == 1
        assert chk.options.retry == 2
        assert chk.options.delay_before_retry == 1
        [url] = chk.options.url
        assert url.path == "/"
        assert url.status_ok(200) and not url.status_ok(301)


@pytest.mark.parametrize(
    "name,state,prio",
    [("003_flat_master.conf", "MASTER", 150), ("003_flat_backup.conf", "BACKUP", 100)],
)
def test_003_flattened_is_understood(name: str, state: str, prio: int, grammar: Grammar) -> None:
    text = (SEEDS / name).read_text()
    assert text.count("\n") == 1, "the fixture must stay on one line"
    result = _load(name, grammar)
    assert not result.diagnostics.errors
    # what keepalived would misread is pointed out, at line 1
    assert result.diagnostics.warnings
    assert all(d.place.line == 1 for d in result.diagnostics.warnings)
    cfg = result.config
    assert cfg.global_defs.vrrp_garp_master_refresh == 60
    vi = _vi(cfg, "VI_1")
    assert (vi.state, vi.interface, vi.virtual_router_id, vi.priority, vi.advert_int) == (
        state,
        "eth0",
        50,
        prio,
        1,
    )
    assert vi.authentication is not None
    assert (vi.authentication.auth_type, vi.authentication.auth_pass) == ("PASS", "password")
    assert _vips(vi) == ["192.168.0.40/32"]
    assert vi.garp_master_refresh == 60  # inherited from global_defs


@pytest.mark.parametrize("name", ["004_proxy_serv01.conf", "004_proxy_serv02.conf"])
def test_004_proxy(name: str, grammar: Grammar) -> None:
    cfg = _load(name, grammar).config
    ip1, ip2 = _vi(cfg, "proxy_ip1"), _vi(cfg, "proxy_ip2")
    master, backup = (ip1, ip2) if name == "004_proxy_serv01.conf" else (ip2, ip1)
    assert (master.state, master.priority, backup.state, backup.priority) == (
        "MASTER",
        255,
        "BACKUP",
        100,
    )
    assert (ip1.virtual_router_id, ip2.virtual_router_id) == (1, 2)
    for vi, n in ((ip1, 1), (ip2, 2)):
        assert vi.interface == "eth0" and vi.advert_int == 1 and vi.authentication is None
        [vip] = vi.virtual_ipaddress
        assert vip.address == ipaddress.ip_interface(f"192.168.2.10{n}/24")
        assert (vip.dev, vip.label) == ("eth0", f"eth0:{n}")
        assert [(r.name, r.weight) for r in _refs(vi, "interface")] == [("eth1", None)]
    require(grammar, "vrrp_script", "track_script")
    for vi in (ip1, ip2):
        assert [r.name for r in _refs(vi, "script")] == ["chk_squid_service"]


def test_004_fragments(grammar: Grammar) -> None:
    for name, keyword in (
        ("004_track_interface_fragment.conf", "track_interface"),
        ("004_track_script_fragment.conf", "track_script"),
    ):
        result = _load(name, grammar)
        [d] = result.diagnostics.warnings
        assert d.place.line == 1 and f"unknown keyword '{keyword}' in top level" in d.message
    require(grammar, "vrrp_script")
    result = _load("004_vrrp_script_fragment.conf", grammar)
    assert not result.diagnostics.failing
    scripts = result.config.ext["vrrp_script"]
    items = list(scripts.values() if isinstance(scripts, dict) else scripts)
    [s] = items
    assert s.name == "chk_squid_service"
    assert s.script.argv == ["/usr/sbin/squid", "-k", "check"] and s.interval == 3


# -- keepalived itself ---------------------------------------------------------------------


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@pytest.fixture(scope="module")
def keepalived_ns() -> Iterator[str]:
    """A namespace with the fixtures' interfaces (veth: no dummy module here)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    # make test installs keepalived (APT_PACKAGES): missing is a broken setup, not a skip.
    assert shutil.which("keepalived"), (
        "keepalived (the oracle) is missing: `make setup` installs it"
    )
    # named like core.lab's namespaces so its stale cleanup knows the owner
    ns = f"pka-{_b36(os.getpid())}x{secrets.token_hex(2)}-seeds"
    etc = Path("/etc/netns") / ns
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for dev in INTERFACES:
            subprocess.run(
                ["ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", f"q{dev}"],
                check=True,
            )
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        # `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n192.0.2.25 mail.example.net\n")
        yield ns
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.mark.netns
@pytest.mark.parametrize("name", FIXTURES)
def test_keepalived_agrees(name: str, keepalived_ns: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", keepalived_ns, "keepalived", "-t", "-l", "-f", str(SEEDS / name)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == KEEPALIVED_EXIT[name], proc.stdout + proc.stderr
