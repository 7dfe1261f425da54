"""bgp_speaker / bgp_announce: VIPs announced over BGP (docs/scale-out.md).

The lab (pykeepalived.testing.bgplab): a router running BIRD 2 peers with
two pykeepalived nodes, each with its own speaker; a client sits behind the
router.  Routes are read from the router's BIRD (``birdc show route``) and
checked with traffic from the client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.api import Config, EventKind, StateEvent
from pykeepalived.plugins.actions import bgp
from pykeepalived.testing import load_text
from pykeepalived.testing.bgplab import HOLD, VIP_ANY, VIP_MASTER, BgpLab, node_config
from pykeepalived.testing.lab import wait_for, wait_until

# -- configuration, no lab ----------------------------------------------------------


GOOD = """
bgp_speaker EDGE {
    backend exabgp
    local_as 65001
    local_address 192.0.2.12
    neighbor 192.0.2.11 65000
    hold_time 3
}
bgp_announce WEB {
    prefix 203.0.113.10/32
    track_instance VI_1
    community 65000:100 65000:200
    med 10
    as_path_prepend 2 while_backup
}
bgp_announce ANY {
    speaker EDGE
    prefix 203.0.113.20/32
    track_virtual_server 203.0.113.20 8080
    mode anycast
}
"""


def _load(text: str) -> Config:
    res = load_text(text)
    assert res.ok, [str(d) for d in res.diagnostics.errors]
    return res.config


def _errors(text: str) -> list[str]:
    return [str(d) for d in load_text(text).diagnostics.errors]


def test_blocks_parse() -> None:
    cfg = _load(GOOD)
    (speaker,) = cfg.ext["bgp_speaker"]
    assert speaker.backend == "EXABGP" and speaker.local_as == 65001
    assert speaker.neighbors == [bgp.Neighbor("192.0.2.11", 65000)]
    web, anyc = cfg.ext["bgp_announce"]
    assert web.mode == "MASTER" and web.prepend == 2 and web.prepend_while_backup
    assert web.communities == ["65000:100", "65000:200"] and web.med == 10
    assert anyc.virtual_servers == ["[203.0.113.20]:tcp:8080"] and anyc.mode == "ANYCAST"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("prefix 203.0.113.1/24", "is not a prefix"),
        ("prefix 203.0.113.0/24\n mode master", "mode master needs track_instance"),
        ("prefix 203.0.113.0/24\n mode quorum", "mode quorum needs track_virtual_server"),
        ("prefix 203.0.113.0/24\n community 65000", "is not a community"),
        ("track_instance VI_1", "needs at least one prefix"),
        ("prefix 203.0.113.0/24\n as_path_prepend 2 always", "only 'while_backup'"),
    ],
)
def test_bad_blocks_are_one_line_errors(body: str, message: str) -> None:
    errors = _errors(f"bgp_announce X {{\n {body}\n}}\n")
    assert any(message in e for e in errors), errors
    assert all("\n" not in e and "<string>:" in e for e in errors)  # one line, its place


def test_decide_modes() -> None:
    cfg = _load(GOOD)
    web, anyc = cfg.ext["bgp_announce"]
    assert bgp.decide(web, {}, {}) is None
    assert bgp.decide(web, {"instance:VI_1": "MASTER"}, {}) == 0
    assert bgp.decide(web, {"instance:VI_1": "BACKUP"}, {}) == 2  # prepended, not withdrawn
    assert bgp.decide(web, {"instance:VI_1": "FAULT"}, {}) is None
    vs = "[203.0.113.20]:tcp:8080"
    assert bgp.decide(anyc, {}, {vs: True}) == 0
    assert bgp.decide(anyc, {}, {vs: False}) is None


def test_rendered_commands() -> None:
    cfg = _load(GOOD)
    (speaker,) = cfg.ext["bgp_speaker"]
    route = bgp.Route(ipaddress.ip_network("203.0.113.10/32"), "self", ("65000:100",), 10, None, 2)
    line = bgp.ExaBgp(speaker)._announce_line(route)
    assert line == (
        "announce route 203.0.113.10/32 next-hop self med 10 "
        "community [ 65000:100 ] as-path [ 65001 65001 65001 ]"
    )
    bird = bgp.Bird(bgp.SpeakerConf("B", backend="BIRD", local_as=65001, include_file="/x"))
    text = bird.render({route.prefix: route}, 4)
    assert (
        "route 203.0.113.10/32 blackhole { bgp_community.add((65000,100)); bgp_med = 10; "
        "bgp_path.prepend(65001); bgp_path.prepend(65001); };" in text
    )


# -- the lab ------------------------------------------------------------------------

needs_bird = pytest.mark.skipif(
    shutil.which("bird") is None or shutil.which("birdc") is None, reason="needs BIRD 2 (bird2)"
)
needs_exabgp = pytest.mark.skipif(
    bgp._exabgp_program(bgp.SpeakerConf("probe")) is None,
    reason="needs ExaBGP (pip install exabgp, in the [test] extra)",
)


_CLOCK = re.compile(r"\b(\d\d):(\d\d):(\d\d)\.(\d{3})\b")


def assert_same_times(after: str, before: str) -> None:
    """``before`` and ``after`` (birdc output) are the same but for 1-2 ms of
    jitter in each timestamp: BIRD prints a time as the wall clock now minus its
    age on the monotonic clock, and the two clocks are read a moment apart. A
    route or session renewed by the reload would move by far more (the reload
    happened after ``before`` was read)."""
    assert _CLOCK.sub("T", after) == _CLOCK.sub("T", before)

    def seconds(text: str) -> list[float]:
        return [
            int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
            for h, m, s, ms in _CLOCK.findall(text)
        ]

    for a, b in zip(seconds(after), seconds(before), strict=True):
        assert abs(a - b) <= 0.005, f"timestamp moved {a - b:+.3f}s:\n{before}\n->\n{after}"


def _dump(bl: BgpLab) -> None:
    print(bl.bird.birdc("show route all"))
    print(bl.router.run(["ip", "route"], check=False).stdout)
    for n in bl.nodes:
        print(n.host.name, n.host.run(["ip", "addr"], check=False).stdout)
        print(n.py.tail(60))


@pytest.mark.netns
@needs_bird
@needs_exabgp
@pytest.mark.timeout(120)
def test_exabgp_master_anycast_failover_and_death(lab: Any, tmp_path: Path) -> None:
    bl = BgpLab(lab(n_hosts=0), tmp_path)
    n1, n2 = bl.nodes
    ip1, ip2 = n1.host.ip4, n2.host.ip4
    bl.start_nodes("exabgp")
    try:
        # MASTER-only route at n1; the anycast route at both (ECMP).
        bl.wait_hops(f"{VIP_MASTER}/32", {ip1}, 20)
        bl.wait_hops(f"{VIP_ANY}/32", {ip1, ip2}, 10)
        assert "BGP.community: (65000,100)" in bl.bird.birdc("show route all", f"{VIP_MASTER}/32")
        wait_until(lambda: bl.bird.primary(f"{VIP_ANY}/32") == {ip1, ip2}, 5)
        assert set(bl.who(VIP_MASTER, 3)) == {"n1"}
        assert set(bl.who(VIP_ANY, 24)) == {"n1", "n2"}  # both paths carry traffic

        # n2's health check fails: its anycast route goes, traffic stays on n1.
        n2.stop_who()
        bl.wait_hops(f"{VIP_ANY}/32", {ip1}, 10)
        wait_until(lambda: bl.bird.primary(f"{VIP_ANY}/32") == {ip1}, 5)
        n2.start_who()
        bl.wait_hops(f"{VIP_ANY}/32", {ip1, ip2}, 10)

        # n1 stops (SIGTERM): failover, the route follows the new MASTER.
        n1.py.terminate()
        bl.wait_hops(f"{VIP_MASTER}/32", {ip2}, 15)
        bl.wait_hops(f"{VIP_ANY}/32", {ip2}, 5)
        wait_until(lambda: set(bl.who(VIP_MASTER, 2)) == {"n2"}, 5)

        # n1 back (higher priority): the route comes back.
        n1.py.start(node_config(n1, "exabgp", 200))
        bl.wait_hops(f"{VIP_MASTER}/32", {ip1}, 20)

        # A reload (SIGHUP) keeps the speaker, its session and the routes: the
        # router's route and session timestamps do not move.
        route_before = bl.bird.birdc("show route", f"{VIP_MASTER}/32")
        session_before = bl.bird.birdc("show protocols", "n1")
        n1.py.reload(node_config(n1, "exabgp", 200))
        n1.py.wait_log("kept across the reload", 10)
        time.sleep(1.0)  # room for a wrong withdraw to reach the router
        assert_same_times(bl.bird.birdc("show route", f"{VIP_MASTER}/32"), route_before)
        assert_same_times(bl.bird.birdc("show protocols", "n1"), session_before)

        # n1 killed (SIGKILL): its ExaBGP sees the relay's EOF and closes the
        # session itself, long before the hold timer would.
        t0 = time.monotonic()
        n1.py.kill()
        wait_until(lambda: not bl.bird.established("n1"), 2 * HOLD, interval=0.02)
        dead = time.monotonic() - t0
        bl.wait_hops(f"{VIP_MASTER}/32", {ip2}, 15)
        assert dead < HOLD, f"session closed {dead:.2f}s after SIGKILL: hold timer, not shutdown"

        # A frozen node (SIGSTOP of its daemon and speaker): only the hold timer
        # tells the router; its routes go when it expires.
        bl.wait_hops(f"{VIP_ANY}/32", {ip2}, 5)
        wait_until(lambda: bl.bird.established("n2"), 5)
        t0 = time.monotonic()
        bl.lab_signal_group(n2, signal.SIGSTOP)
        try:
            wait_until(lambda: not bl.bird.established("n2"), 4 * HOLD, interval=0.02)
            frozen = time.monotonic() - t0
            assert bl.bird.next_hops(f"{VIP_ANY}/32") == set()
        finally:
            bl.lab_signal_group(n2, signal.SIGCONT)
        # Hold timer: HOLD s after the last keepalive, which may be up to one
        # keepalive (1 s, later on a loaded machine) before the freeze; a
        # NOTIFICATION would take tens of ms.
        assert frozen > 0.5, f"session dropped {frozen:.2f}s after the freeze"
    except BaseException:
        _dump(bl)
        raise


@pytest.mark.netns
@needs_bird
@needs_exabgp
@pytest.mark.timeout(120)
def test_exabgp_prepend_while_backup(lab: Any, tmp_path: Path) -> None:
    bl = BgpLab(lab(n_hosts=0), tmp_path)
    n1, n2 = bl.nodes
    ip1, ip2 = n1.host.ip4, n2.host.ip4
    bl.start_nodes("exabgp", "    as_path_prepend 2 while_backup")
    prefix = f"{VIP_MASTER}/32"
    try:
        # Once n1 is MASTER: its path is plain, the BACKUP's carries two more
        # copies of its AS, and the router forwards to the MASTER only.
        wait_until(lambda: "BGP.as_path: 65001\n" in bl.bird.birdc("show route all", prefix), 20)
        bl.wait_hops(prefix, {ip1, ip2}, 10)  # n2's session may come up later
        assert "BGP.as_path: 65002 65002 65002\n" in bl.bird.birdc("show route all", prefix)
        wait_until(lambda: bl.bird.primary(prefix) == {ip1}, 5)
    except BaseException:
        _dump(bl)
        raise


@pytest.mark.netns
@needs_bird
@pytest.mark.timeout(120)
def test_bird_backend_follows_master(lab: Any, tmp_path: Path) -> None:
    bl = BgpLab(lab(n_hosts=0), tmp_path)
    n1, n2 = bl.nodes
    ip1, ip2 = n1.host.ip4, n2.host.ip4
    bl.start_nodes("bird", "    as_path_prepend 2 while_backup")
    try:
        # The BACKUP keeps announcing, with a longer path: the router has both
        # paths and forwards to the MASTER's.
        prefix = f"{VIP_MASTER}/32"
        # Both start as BACKUP (both prepended); wait for n1's plain path.
        wait_until(lambda: "BGP.as_path: 65001\n" in bl.bird.birdc("show route all", prefix), 20)
        bl.wait_hops(prefix, {ip1, ip2}, 10)  # n2's session may come up later
        shown = bl.bird.birdc("show route all", prefix)
        assert "BGP.as_path: 65002 65002 65002\n" in shown, shown
        wait_until(lambda: bl.bird.primary(prefix) == {ip1}, 5)
        bl.wait_hops(f"{VIP_ANY}/32", {ip1, ip2}, 10)
        assert set(bl.who(VIP_MASTER, 2)) == {"n1"}
        n2.stop_who()
        bl.wait_hops(f"{VIP_ANY}/32", {ip1}, 10)
        n2.start_who()
        bl.wait_hops(f"{VIP_ANY}/32", {ip1, ip2}, 10)
        n1.py.terminate()
        # Stopped: its routes are withdrawn from its BIRD; n2 takes over.
        bl.wait_hops(f"{VIP_MASTER}/32", {ip2}, 15)
        bl.wait_hops(f"{VIP_ANY}/32", {ip2}, 5)
        assert n1.bird is not None
        assert "\nroute" not in (n1.bird.dir / "pka4.conf").read_text()
        wait_until(lambda: set(bl.who(VIP_MASTER, 2)) == {"n2"}, 5)
    except BaseException:
        _dump(bl)
        raise


def test_wants_only_vrrp_and_vs_events() -> None:
    cfg = _load(GOOD)
    a = bgp.BgpAnnouncer(cfg)
    assert a.wants(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER"))
    assert not a.wants(StateEvent(EventKind.REAL_SERVER, "x", "UP"))


@needs_exabgp
async def test_exabgp_acks_and_stops_with_its_relay() -> None:
    """The real ExaBGP on loopback, no peer: every command is acknowledged
    (``done``), a bad one is refused (``error``), and when pykeepalived's end
    of the relay goes (as when the daemon is SIGKILLed) ExaBGP stops."""
    conf = bgp.SpeakerConf(
        "LO",
        local_as=65001,
        local_address="127.0.0.1",
        neighbors=[bgp.Neighbor("127.0.0.2", 65000)],
    )
    speaker = bgp.ExaBgp(conf)
    await speaker.start()
    try:
        route = bgp.Route(ipaddress.ip_network("203.0.113.10/32"), communities=("65000:1",))
        await speaker.apply({route.prefix: route})
        assert speaker._announced == {route.prefix: route}
        assert not await speaker._command("announce route not-a-prefix next-hop self")
        await speaker.apply({})
        assert speaker._announced == {}
        assert speaker._proc is not None and speaker._writer is not None
        speaker._writer.close()  # the relay sees EOF, as if pykeepalived died
        await asyncio.wait_for(speaker._proc.wait(), 15)
    finally:
        await speaker.close()


@pytest.mark.netns
@needs_bird
async def test_bird_not_running_yet_is_retried(lab: Any, tmp_path: Path) -> None:
    """A failed apply (BIRD not up yet) is tried again without a new event."""
    from pykeepalived.testing.bgplab import Bird

    host = lab(n_hosts=1)[0]
    bird = Bird(host, tmp_path / "bird")
    bird.dir.mkdir()
    include = bird.dir / "pka4.conf"
    include.write_text("")
    cfg = _load(
        f"bgp_speaker B {{\n backend bird\n include_file {include}\n"
        f" control_socket {bird.socket}\n}}\n"
        "bgp_announce ALWAYS {\n prefix 203.0.113.30/32\n}\n"
    )
    announcer = bgp.BgpAnnouncer(cfg)
    await announcer.start()
    try:
        await asyncio.sleep(0.5)  # the first birdc configure has failed by now
        assert "route 203.0.113.30/32 blackhole;" in include.read_text()
        # BIRD comes up reading an empty file: only a retry (rewrite + birdc
        # configure) can bring the route in.
        include.write_text("")
        bird.start(
            f'router id {host.ip4};\nprotocol static pka4 {{\n  ipv4;\n  include "{include}";\n}}\n'
        )
        await wait_for(lambda: "203.0.113.30/32" in bird.birdc("show route"), 3 * bgp.RETRY + 5)
    finally:
        await announcer.close()
        await asyncio.gather(*(p.stop() for p in list(bgp._PARKED.values())))
    assert "route" not in include.read_text().split("\n", 1)[1]
