"""The nftables backend, end to end: the real daemon on a kernel without ip_vs.

Lab (one bridge, documentation addresses only)::

    client    192.0.2.12                      sends real TCP connections to the VIP
    director  192.0.2.11, VIP 192.0.2.100,    pykeepalived with TCP_CHECKs, an unchanged
              198.51.100.1 (the real servers'  keepalived.conf (lvs_backend absent: auto)
              gateway), ip_forward on
    rs1..rs4  198.51.100.11..14 only,          a TCP server on :8080 answering its name,
              default route via the director   then echoing lines

NAT as keepalived means it (LVS-NAT): the director rewrites the destination
only; the replies come back through it because the real servers route via
the director, so conntrack undoes the DNAT.  No masquerade: the real servers
see the client's address.

Pure parts (rendering, diff) are tested without namespaces below.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pykeepalived.core.lvs.manager import Forward, IpvsDest, IpvsService
from pykeepalived.core.lvs.nft import TABLE, closest_scheduler, plan, relayout, render

VIP = "192.0.2.100"
PORT = 80
RS_PORT = 8080
STICKY_PORT = 81
DELAY_LOOP = 1
#: Chi-square critical value, 2 degrees of freedom, p = 0.001: a correct
#: weighted selection fails this test once in a thousand runs.
CHI2_2DF_P001 = 13.82
SAMPLES = 300

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    name = sys.argv[1].encode()
    async def serve(r, w):
        try:
            w.write(name + b"\\n")
            await w.drain()
            while line := await r.readline():
                w.write(line)
                await w.drain()
        except OSError:  # TCP_CHECK resets its connections
            pass
        w.close()
    async def main():
        srv = await asyncio.start_server(serve, "0.0.0.0", int(sys.argv[2]))
        print("ready", flush=True)
        await srv.serve_forever()
    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import json, socket, sys
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def connect():
        s = socket.create_connection((host, port), timeout=3)
        f = s.makefile("rb")
        return s, f, f.readline().decode().strip()
    if mode == "count":
        counts = {}
        for _ in range(int(sys.argv[4])):
            try:
                s, f, name = connect()
                s.close()
            except OSError as exc:
                name = "error:" + type(exc).__name__
            counts[name] = counts.get(name, 0) + 1
        print(json.dumps(counts), flush=True)
    else:  # hold: one connection, echo lines from stdin through it
        s, f, name = connect()
        print(name, flush=True)
        for line in sys.stdin:
            s.sendall(line.encode())
            print(f.readline().decode().strip(), flush=True)
    """
)

A = ipaddress.ip_address


# -- pure parts ---------------------------------------------------------------------------------


def _svc(weights: list[int], scheduler: str = "wrr", **kw: object) -> IpvsService:
    dests = [IpvsDest(A(f"198.51.100.{11 + i}"), RS_PORT, w) for i, w in enumerate(weights)]
    return IpvsService(
        "TCP",
        A(VIP),
        PORT,
        scheduler=scheduler,
        destinations=dests,
        **kw,  # type: ignore[arg-type]
    )


def test_weights_become_slot_intervals() -> None:
    vs = render(_svc([1, 0, 3]))
    assert vs.selector == "numgen inc mod 4 vmap @sel-tcp-192.0.2.100-80"
    assert list(vs.elements) == [(0, 0), (1, 3)]
    # weight 0: no slot and no chain (no new connections, as IPVS)
    assert not any("198.51.100.12" in c for c in vs.reals)
    assert render(_svc([0, 0])).selector == "reject"


def test_relayout_keeps_slots_and_covers_exactly() -> None:
    rng = random.Random(13)
    chains = [f"rs{i}" for i in range(12)]
    layout: dict[tuple[int, int], str] = {}
    for _ in range(300):
        weights = {c: rng.choice([0, 0, 1, 2, 3, 7, 50]) for c in chains}
        before = dict(layout)
        layout = relayout(layout, weights)
        total = sum(weights.values())
        # exactly 0..total-1, no overlap, each chain owns its weight
        assert sorted(a for a, _ in layout) == [a for a, _ in sorted(layout)]
        pos = 0
        owned: dict[str, int] = {}
        for (a, b), c in sorted(layout.items()):
            assert a == pos and b >= a
            pos = b + 1
            owned[c] = owned.get(c, 0) + b - a + 1
        assert pos == total
        assert owned == {c: w for c, w in weights.items() if w}
        # a slot whose owner keeps all its weight stays where it was
        for (a, b), c in before.items():
            if b < total and weights.get(c) == sum(
                y - x + 1 for (x, y), d in before.items() if d == c
            ):
                assert layout.get((a, b)) == c
    one = relayout({(0, 9): "a", (10, 19): "b", (20, 29): "c"}, {"a": 10, "b": 12, "c": 10})
    assert one == {(0, 9): "a", (10, 19): "b", (20, 29): "c", (30, 31): "b"}


def test_schedulers_that_need_connection_counts_are_reported_with_the_closest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert closest_scheduler("wlc")[0] == "wrr" and closest_scheduler("rr") == ("rr", None)
    vs = render(_svc([1, 2], "wlc"))
    assert vs.selector.startswith("numgen random mod 3 ")
    [msg] = [r.getMessage() for r in caplog.records]
    assert "scheduler wlc cannot be expressed in nftables" in msg and "using wrr" in msg


def test_persistence_is_a_timed_set_per_real_server_and_dr_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = _svc([1, 1], "rr", persistence_timeout=300, persistence_granularity="255.255.255.0")
    svc.destinations.append(IpvsDest(A("192.0.2.50"), 80, 1, Forward.DR))
    vs = render(svc)
    assert vs.name == "tcp-192.0.2.100-80-p300-255.255.255.0"
    assert vs.selector.startswith("numgen inc mod 2 ")
    chain = "rs-tcp-192.0.2.100-80-p300-255.255.255.0-198.51.100.11-8080"
    assert vs.reals[chain] == (
        "meta l4proto tcp update @aff-tcp-192.0.2.100-80-p300-255.255.255.0-198.51.100.11-8080"
        " { ip saddr & 255.255.255.0 } dnat to 198.51.100.11:8080"
    )
    lines = plan({}, {vs.name: vs})
    assert "timeout 300s" in "\n".join(lines)
    recent = [line for line in lines if line.startswith("insert rule")]
    assert recent[0].endswith(f"ip saddr & 255.255.255.0 @aff-{chain[3:]} goto {chain}")
    assert len(recent) == 2
    assert any("uses DR forwarding" in r.getMessage() for r in caplog.records)
    # a real server leaving takes its "recent client" rule (by handle) and set along
    vs.affinity_handles, vs.handle = {chain: 41}, 40
    one = _svc([0, 1], "rr", persistence_timeout=300, persistence_granularity="255.255.255.0")
    gone = plan({vs.name: vs}, {vs.name: render(one)})
    assert f"delete rule ip pykeepalived_lvs vs-{vs.name} handle 41" in gone
    assert gone[-1] == f"delete set ip pykeepalived_lvs aff-{chain[3:]}"


def test_plan_is_a_diff() -> None:
    old = render(_svc([1, 1]))
    old.handle = 7
    new = render(_svc([1, 2, 1]))
    lines = plan({old.name: old}, {new.name: new})
    text = "\n".join(lines)
    # the existing slots stay; the new ones are added; the selector rule is
    # replaced by handle (its modulus changed)
    assert "delete element" not in text
    assert "add element ip pykeepalived_lvs sel-tcp-192.0.2.100-80 { 2 : goto rs-" in text
    assert (
        "replace rule ip pykeepalived_lvs vs-tcp-192.0.2.100-80 handle 7 numgen inc mod 4" in text
    )
    assert not any(line.startswith("flush") for line in lines)
    new.handle = 8
    again = render(_svc([1, 2, 1]))
    assert plan({new.name: new}, {again.name: again}) == []
    # a server out: its slot is freed and handed on, its chain deleted after
    out = render(_svc([1, 0, 1]))
    lines = plan({new.name: new}, {out.name: out})
    assert lines[-2:] == [
        "flush chain ip pykeepalived_lvs rs-tcp-192.0.2.100-80-198.51.100.12-8080",
        "delete chain ip pykeepalived_lvs rs-tcp-192.0.2.100-80-198.51.100.12-8080",
    ]


def test_lvs_backend_keyword() -> None:
    from pykeepalived.core.config import load_text

    ok = load_text("global_defs {\n lvs_backend NFTables\n}\n")
    assert ok.config.global_defs.lvs_backend == "nftables" and not ok.diagnostics.errors
    assert load_text("global_defs {\n}\n").config.global_defs.lvs_backend == "auto"
    bad = load_text("global_defs {\n lvs_backend iptables\n}\n")
    assert [str(d) for d in bad.diagnostics.errors] == [
        "<string>:2: error: lvs_backend: unknown backend 'iptables'"
        " (expected auto, ipvs or nftables)"
    ]


@pytest.mark.netns
def test_selection_without_ip_vs(caplog: pytest.LogCaptureFixture) -> None:
    from pykeepalived.core.lvs.ipvs import NoIpvsBackend, available, open_backend
    from pykeepalived.core.lvs.nft import NftBackend
    from pykeepalived.core.lvs.nft import available as nft_available

    if asyncio.run(available(load_module=False)) is None:
        pytest.skip("this kernel has ip_vs: auto picks IPVS (see tests/test_ipvs.py)")
    if asyncio.run(nft_available()) is not None:
        pytest.skip("no usable nft here")
    caplog.set_level(logging.INFO)
    auto = asyncio.run(open_backend(load_module=False))
    assert isinstance(auto, NftBackend)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "virtual servers served by nftables" in said[0]
    assert isinstance(asyncio.run(open_backend(load_module=False, kind="nftables")), NftBackend)
    assert isinstance(asyncio.run(open_backend(load_module=False, kind="ipvs")), NoIpvsBackend)


# -- the lab ------------------------------------------------------------------------------------


class NatLab:
    def __init__(self, lab: object, workdir: Path) -> None:
        from pykeepalived.testing.lab import Lab

        assert isinstance(lab, Lab)
        self.lab = lab
        self.dir = workdir
        self.director = lab.add_host("director")
        self.client = lab.add_host("client")
        self.rs = [lab.add_host(f"rs{i}") for i in range(1, 5)]
        d = self.director
        d.ip("addr", "add", "198.51.100.1/24", "dev", "eth0")
        d.ip("addr", "add", f"{VIP}/32", "dev", "eth0")
        d.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        # The director forwards out of the interface it received on: no redirects.
        for conf in ("all", "default", "eth0"):
            d.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{conf}.send_redirects=0"])
        self.servers: dict[int, subprocess.Popen[str]] = {}
        (workdir / "server.py").write_text(SERVER)
        (workdir / "client.py").write_text(CLIENT)
        for i, h in enumerate(self.rs, start=1):
            h.ip("addr", "del", f"{h.ip4}/24", "dev", "eth0")
            h.ip("addr", "add", f"198.51.100.{10 + i}/24", "dev", "eth0")
            h.ip("route", "add", "default", "via", "198.51.100.1")
            self.start_server(i)

    def start_server(self, i: int) -> None:
        proc = self.rs[i - 1].popen(
            [sys.executable, str(self.dir / "server.py"), f"rs{i}", str(RS_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.servers[i] = proc

    def stop_server(self, i: int) -> None:
        proc = self.servers.pop(i)
        proc.kill()
        proc.wait(5)

    def count(self, n: int, port: int = PORT) -> dict[str, int]:
        out = self.client.run(
            [sys.executable, str(self.dir / "client.py"), "count", VIP, str(port), str(n)],
            timeout=120,
        ).stdout
        counts: dict[str, int] = json.loads(out)
        return counts

    def nft(self) -> str:
        return self.director.run(["nft", "list", "ruleset"]).stdout

    def wait_table(self, ok: Callable[[str], bool], timeout: float) -> bool:
        """Poll the director's ruleset until ``ok`` holds (False: timed out)."""
        deadline = time.monotonic() + timeout
        while not ok(self.nft()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def config(weights: dict[int, int]) -> str:
    reals = "".join(
        textwrap.dedent(
            f"""
            real_server 198.51.100.{10 + i} {RS_PORT} {{
                weight {w}
                TCP_CHECK {{
                    connect_timeout 1
                    retry 0
                }}
            }}"""
        )
        for i, w in weights.items()
    )
    # No lvs_backend and the default scheduler (wlc): an unchanged keepalived.conf.
    # The second virtual server: rr with persistence, same real servers.
    return (
        "global_defs {\n    router_id director\n}\n"
        f"virtual_server {VIP} {PORT} {{\n    delay_loop {DELAY_LOOP}\n    lb_kind NAT\n"
        f"    protocol TCP\n{textwrap.indent(reals, '    ')}\n}}\n"
        f"virtual_server {VIP} {STICKY_PORT} {{\n    delay_loop {DELAY_LOOP}\n    lb_kind NAT\n"
        f"    lb_algo rr\n    persistence_timeout 60\n"
        f"    protocol TCP\n{textwrap.indent(reals, '    ')}\n}}\n"
    )


def chi2(counts: dict[str, int], weights: dict[int, int]) -> float:
    total = sum(counts.values())
    wsum = sum(weights.values())
    return sum(
        (counts.get(f"rs{i}", 0) - total * w / wsum) ** 2 / (total * w / wsum)
        for i, w in weights.items()
    )


@pytest.fixture
def natlab(lab: object, tmp_path: Path) -> Iterator[NatLab]:
    from pykeepalived.core.lvs.ipvs import available

    if asyncio.run(available(load_module=False)) is None:
        pytest.skip("this kernel has ip_vs: auto picks IPVS (see tests/test_ipvs.py)")
    assert callable(lab)
    yield NatLab(lab(0), tmp_path)


@pytest.mark.netns
def test_nft_backend_serves_virtual_servers(natlab: NatLab) -> None:
    from pykeepalived.testing.daemons import PyNode

    weights = {1: 1, 2: 2, 3: 3}
    node = PyNode(natlab.director, natlab.dir)
    node.start(config(weights))
    try:
        node.wait_log("served by nftables", timeout=10)
        node.wait_log("scheduler wlc cannot be expressed in nftables", timeout=10)
        # All three checks pass at start; wait for the table to hold them.
        assert natlab.wait_table(lambda t: t.count("dnat to 198.51.100.") == 6, 10)

        # Persistence: rr alone would spread 30 connections over all three.
        sticky = natlab.count(30, STICKY_PORT)
        assert len(sticky) == 1 and sum(sticky.values()) == 30, sticky

        counts = natlab.count(SAMPLES)
        assert sum(counts.get(f"rs{i}", 0) for i in weights) == SAMPLES, counts
        assert chi2(counts, weights) < CHI2_2DF_P001, counts

        # A connection held open across every table update below, on a
        # real server that stays up (rs2 will be stopped).
        for _ in range(20):
            hold = natlab.client.popen(
                [sys.executable, str(natlab.dir / "client.py"), "hold", VIP, str(PORT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert hold.stdout is not None and hold.stdin is not None
            held_by = hold.stdout.readline().strip()
            assert held_by in {"rs1", "rs2", "rs3"}
            if held_by != "rs2":
                break
            hold.stdin.close()
            hold.wait(5)
        assert held_by != "rs2"

        def echo(word: str) -> str:
            assert hold.stdin is not None and hold.stdout is not None
            hold.stdin.write(word + "\n")
            hold.stdin.flush()
            return hold.stdout.readline().strip()

        # rs2 fails: out of the table once its check says so; no new
        # connection reaches it afterwards (none refused either).
        natlab.stop_server(2)
        t0 = time.monotonic()
        node.wait_log("Removing service [198.51.100.12]:tcp:8080", timeout=DELAY_LOOP * 3 + 5)
        detect = time.monotonic() - t0
        # Out of the table within one delay_loop of the failed check.
        assert natlab.wait_table(lambda t: "198.51.100.12" not in t, DELAY_LOOP)
        after = natlab.count(60)
        assert set(after) <= {"rs1", "rs3"} and sum(after.values()) == 60, after
        assert echo("after-removal") == "after-removal"
        assert detect < DELAY_LOOP * 3 + 5

        # rs2 recovers: it gets connections again.
        node.mark()
        natlab.start_server(2)
        node.wait_log("Adding service [198.51.100.12]:tcp:8080", timeout=DELAY_LOOP * 3 + 5)
        assert natlab.wait_table(lambda t: "198.51.100.12" in t, DELAY_LOOP)
        back = natlab.count(120)
        assert back.get("rs2", 0) > 0 and sum(back.values()) == 120, back

        # A weight change and a real server added (reload): the held
        # connection is untouched, the new server takes its share.
        weights = {1: 3, 2: 2, 3: 3, 4: 4}
        node.reload(config(weights))
        node.wait_log("Reloading configuration")
        # keepalived puts a new real server in service at once (no alpha).
        assert natlab.wait_table(lambda t: "198.51.100.14" in t, 10)
        assert echo("still-there") == "still-there"
        more = natlab.count(120)
        assert more.get("rs4", 0) > 0 and sum(more.values()) == 120, more
        assert echo("again") == "again"

        # A crash (kill -9) leaves the table serving; the next daemon takes it
        # over without cutting the held connection (the NAT hooks stay).
        node.kill()
        assert echo("after-crash") == "after-crash"
        node.start(config(weights))
        node.wait_log("served by nftables", timeout=10)
        assert natlab.wait_table(lambda t: t.count("dnat to 198.51.100.") == 8, 10)
        assert natlab.nft().count("table ip pykeepalived_lvs") == 1
        assert echo("after-restart") == "after-restart"
        assert sum(natlab.count(30).values()) == 30
        hold.stdin.close()
        hold.wait(5)
        assert "Traceback" not in node.text()
        assert "update failed" not in node.text(), node.tail()
    finally:
        rc = node.terminate()
    assert rc == 0, node.tail()
    assert TABLE not in natlab.director.run(["nft", "list", "tables"]).stdout


V6_SERVER = (
    "import asyncio, sys\n"
    "async def serve(r, w):\n"
    "    w.write(sys.argv[1].encode() + b'\\n')\n"
    "    await w.drain()\n"
    "    w.close()\n"
    "async def main():\n"
    "    srv = await asyncio.start_server(serve, '::', int(sys.argv[2]))\n"
    "    print('ready', flush=True)\n"
    "    await srv.serve_forever()\n"
    "asyncio.run(main())\n"
)

V6_BACKEND = """
import asyncio, ipaddress
from pykeepalived.core.lvs.manager import IpvsDest, IpvsService
from pykeepalived.core.lvs.nft import NftBackend
A = ipaddress.ip_address
dests = [IpvsDest(A("2001:db8:1::11"), 8080, 1), IpvsDest(A("2001:db8:1::12"), 8080, 1)]
svc = IpvsService("TCP", A("2001:db8::1:0"), 80, scheduler="rr", family=6, destinations=dests)
asyncio.run(NftBackend().apply([svc]))
"""


@pytest.mark.netns
def test_nft_backend_ipv6(natlab: NatLab) -> None:
    """table ip6: DNAT to [address]:port, real servers on 2001:db8:1::/64 via the director."""
    d = natlab.director
    d.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth0")
    d.ip("-6", "addr", "add", "2001:db8::1:0/128", "dev", "eth0")
    d.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"])
    for i, h in enumerate(natlab.rs[:2], start=1):
        h.ip("-6", "addr", "del", f"{h.ip6}/64", "dev", "eth0")
        h.ip("-6", "addr", "add", f"2001:db8:1::{10 + i}/64", "dev", "eth0")
        h.ip("-6", "route", "add", "default", "via", "2001:db8:1::1")
        proc = h.popen(
            [sys.executable, "-c", V6_SERVER, f"v6rs{i}", str(RS_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    d.run([sys.executable, "-c", V6_BACKEND])
    assert "table ip6 pykeepalived_lvs" in natlab.nft()
    counts = json.loads(
        natlab.client.run(
            [sys.executable, str(natlab.dir / "client.py"), "count", "2001:db8::1:0", "80", "10"]
        ).stdout
    )
    assert counts == {"v6rs1": 5, "v6rs2": 5}  # rr: a counter, exactly alternating
