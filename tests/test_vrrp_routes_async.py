"""virtual_routes / virtual_rules / static_routes / static_rules are applied
by a worker thread (core/vrrp/effects.py IpWorker), never on the VRRP loop:
FIFO order and end state, failures logged with their command, a hung or
missing ``ip``, draining at stop, and the daemon end to end.

The worker runs ``ip -n <lab namespace>`` (Netlink's ``ip`` argument), so
these tests touch only the lab's namespaces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Route, Rule
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.vrrp.manager import VrrpManager
from pykeepalived.testing.daemons import PyNode, global_defs, instance
from pykeepalived.testing.lab import Host

pytestmark = pytest.mark.netns


def routes_of(*lines: str) -> list[Route]:
    """Route objects as the config parser makes them."""
    res = load_text("static_routes {\n" + "".join(f"    {x}\n" for x in lines) + "}\n")
    assert res.ok, res.diagnostics.items
    return list(res.config.static_routes)


def rules_of(*lines: str) -> list[Rule]:
    res = load_text("static_rules {\n" + "".join(f"    {x}\n" for x in lines) + "}\n")
    assert res.ok, res.diagnostics.items
    return list(res.config.static_rules)


def show(host: Host, *what: str) -> str:
    return host.run(["ip", *what]).stdout


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def wrapper(tmp: Path, name: str, body: str) -> str:
    """A stand-in for ip(8): a shell script (slow, hanging once, ...)."""
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pykeepalived.vrrp" and r.levelno >= logging.ERROR
    ]


# -- the worker: order, end state, batching, failures -----------------------------------


def test_worker_order_end_state_and_failures(lab: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "pykeepalived.vrrp")
    (h1,) = lab(1).hosts
    nl = Netlink(ip=("ip", "-n", h1.netns))
    try:
        # One call, both families interleaved: one ip -batch per family.
        v4 = routes_of(*(f"198.51.100.{i}/32 via 192.0.2.1" for i in range(1, 61)))
        v6 = routes_of(*(f"2001:db8:5::{i:x}/128 via 2001:db8::1 dev eth0" for i in range(1, 21)))
        mixed = [r for pair in zip(v4, v6, strict=False) for r in pair] + v4[len(v6) :]
        nl.routes("add", mixed, "eth0")
        assert nl.flush(10)
        assert nl.ip_worker.processes == 2
        table4, table6 = show(h1, "-4", "route"), show(h1, "-6", "route")
        assert all(f"198.51.100.{i} via 192.0.2.1" in table4 for i in range(1, 61)), table4
        assert all(f"2001:db8:5::{i:x} via 2001:db8::1" in table6 for i in range(1, 21)), table6

        # Many small calls queued back to back: FIFO decides the end state.
        nl.routes("del", v4[:30] + v6[:10], "eth0")
        x = routes_of("203.0.113.1/32 via 192.0.2.1")
        y = routes_of("203.0.113.2/32 via 192.0.2.1")
        for action in ("add", "del", "add"):  # BACKUP -> MASTER -> BACKUP -> MASTER
            nl.routes(action, x, "eth0")
        nl.routes("add", y, "eth0")  # MASTER -> BACKUP flap
        nl.routes("del", y, "eth0")
        for k in range(12):  # the last replace wins: via 192.0.2.2
            nl.routes("add", routes_of(f"203.0.113.3/32 via 192.0.2.{1 + k % 5}"), "eth0")
        rule4, rule6 = "from 198.51.100.0/24 table 100", "from 2001:db8:5::/64 table 100"
        nl.rules("add", rules_of(rule4, rule6))
        nl.rules("del", rules_of(rule4))
        # Failures: a gateway the kernel refuses, a word ip's parser exits on
        # (the rest of that batch must still run), and removals of things
        # that are not there (not errors, as before).
        nl.routes(
            "add",
            routes_of(
                "203.0.113.4/32 via 10.9.9.9",
                "203.0.113.5/32 via 192.0.2.1 mtu lots",
                "203.0.113.6/32 via 192.0.2.1",
            ),
            "eth0",
        )
        nl.routes("del", routes_of("203.0.113.7/32 via 192.0.2.1"), "eth0")
        nl.rules("del", rules_of("from 203.0.113.0/24 table 7"))
        assert nl.flush(10)

        table4, table6 = show(h1, "-4", "route"), show(h1, "-6", "route")
        assert not any(f"198.51.100.{i} via" in table4 for i in range(1, 31)), table4
        assert all(f"198.51.100.{i} via 192.0.2.1" in table4 for i in range(31, 61)), table4
        assert not any(f"2001:db8:5::{i:x} via" in table6 for i in range(1, 11)), table6
        assert all(f"2001:db8:5::{i:x} via" in table6 for i in range(11, 21)), table6
        assert "203.0.113.1 via 192.0.2.1" in table4
        assert "203.0.113.2 " not in table4
        assert "203.0.113.3 via 192.0.2.2 " in table4
        assert "203.0.113.4 " not in table4 and "203.0.113.5 " not in table4
        assert "203.0.113.6 via 192.0.2.1" in table4
        assert "198.51.100.0/24 lookup 100" not in show(h1, "-4", "rule")
        assert "from 2001:db8:5::/64 lookup 100" in show(h1, "-6", "rule")

        logged = errors(caplog)
        assert logged == [
            "ip -4 route replace 203.0.113.4/32 via 10.9.9.9: Error: Nexthop has invalid gateway.",
            'ip -4 route replace 203.0.113.5/32 via 192.0.2.1 mtu lots: Error: argument "lots" '
            'is wrong: "mtu" value is invalid',
        ], logged
    finally:
        nl.close()


def test_missing_or_hung_ip_does_not_wedge_the_worker(
    lab: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "pykeepalived.vrrp")
    (h1,) = lab(1).hosts
    missing = Netlink(ip=(str(tmp_path / "no-such-ip"),))
    try:
        missing.routes("del", routes_of("203.0.113.8/32 via 192.0.2.1"), "eth0")
        assert missing.flush(5)
    finally:
        missing.close()
    assert any(
        m.startswith("ip -4 route del 203.0.113.8/32 via 192.0.2.1: cannot run ")
        and "No such file" in m
        for m in errors(caplog)
    ), errors(caplog)

    # The first ip hangs; it is killed at the batch timeout, the queue goes on.
    mark = tmp_path / "hung-once"
    hang_once = wrapper(
        tmp_path,
        "ip-hang-once",
        f'if [ ! -e {mark} ]; then : > {mark}; exec sleep 30; fi\nexec ip -n {h1.netns} "$@"\n',
    )
    nl = Netlink(ip=(hang_once,))
    nl.ip_worker.timeout = 0.5
    try:
        caplog.clear()
        nl.routes("add", routes_of("203.0.113.9/32 via 192.0.2.1"), "eth0")
        assert not nl.flush(0.1)  # stuck: flush gives up, says so
        assert any("still pending after 0.1s" in m for m in errors(caplog)), errors(caplog)
        nl.routes("add", routes_of("203.0.113.10/32 via 192.0.2.1"), "eth0")  # next batch
        started = time.monotonic()
        assert nl.flush(5)
        # The hung ip (sleep 30) was killed at the 0.5 s batch timeout, not waited for:
        # the next batch is in within 10x the timeout.
        assert time.monotonic() - started < 5.0
    finally:
        nl.close()
    assert any(
        m.startswith("ip -4 route replace 203.0.113.9/32 via 192.0.2.1: ip did not finish")
        for m in errors(caplog)
    ), errors(caplog)
    table = show(h1, "-4", "route")
    assert "203.0.113.10 via 192.0.2.1" in table, table


# -- the VRRP loop is never blocked -----------------------------------------------------


def test_routes_return_at_once_and_the_loop_keeps_time(lab: Any, tmp_path: Path) -> None:
    """routes() only queues: the ip processes run on the worker thread while the loop goes
    on.  Asserted as orderings against a slow ip (1.5 s per process), so a busy machine
    cannot fail it; bench/micro measures the figures (call cost, drain time, lateness)."""
    (h1,) = lab(1).hosts
    fifty = routes_of(*(f"198.51.100.{i}/32 via 192.0.2.1" for i in range(1, 51)))
    ip_run = 1.5
    slow = wrapper(tmp_path, "ip-slow", f'sleep {ip_run}\nexec ip -n {h1.netns} "$@"\n')

    async def slow_ip(op: str) -> tuple[int, int, float, int, float]:
        nl = Netlink(ip=(slow,))
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        worst = 0.0
        ticks = 0

        async def ticker() -> None:
            nonlocal worst, ticks
            while True:
                before = loop.time()
                await asyncio.sleep(0.01)
                ticks += 1
                worst = max(worst, loop.time() - before - 0.01)

        tick = asyncio.create_task(ticker(), name="test:ticker")
        await asyncio.sleep(0.05)
        try:
            loop.call_later(0.2, lambda: fired.append(nl.ip_worker.pending()))
            started = time.perf_counter()
            nl.routes(op, fifty, "eth0")
            t_call = time.perf_counter() - started
            queued = nl.ip_worker.pending()
            while not fired:
                await asyncio.sleep(0.01)
            ticks_at_timer = ticks
            await loop.run_in_executor(None, nl.flush, 30.0)
            return queued, fired[0], t_call, ticks_at_timer, worst
        finally:
            tick.cancel()
            await loop.run_in_executor(None, nl.close)

    queued, pending_at_timer, t_call, ticks, worst = asyncio.run(slow_ip("add"))
    table = show(h1, "-4", "route")
    assert all(f"198.51.100.{i} via 192.0.2.1" in table for i in range(1, 51)), table
    print(
        f"slow ip ({ip_run} s): routes() {t_call * 1e3:.2f} ms, ticker at most "
        f"{worst * 1e3:.1f} ms late"
    )
    # routes() returned with all 50 still queued, and a timer due 0.2 s later fired while
    # the worker was still on the batch (whose one ip takes 1.5 s): the loop ran meanwhile.
    assert queued == 50
    assert pending_at_timer == 50
    assert ticks >= 1
    # "Did not block the loop": never stalled for as long as one ip run (the loop ticks
    # every 10 ms; 10x a generous 50 ms is still well under the 1.5 s a blocked loop shows).
    assert worst < 0.5, worst
    assert t_call < 0.5, t_call

    queued, pending_at_timer, _, _, worst = asyncio.run(slow_ip("del"))
    assert (queued, pending_at_timer) == (50, 50) and worst < 0.5
    assert "198.51.100.1 " not in show(h1, "-4", "route")


# -- draining at stop -----------------------------------------------------------------


def test_close_and_manager_stop_wait_for_the_queue(lab: Any, tmp_path: Path) -> None:
    (h1,) = lab(1).hosts
    slow = wrapper(tmp_path, "ip-slow", f'sleep 0.3\nexec ip -n {h1.netns} "$@"\n')

    nl = Netlink(ip=(slow,))
    nl.routes("add", routes_of("203.0.113.11/32 via 192.0.2.1"), "eth0")
    nl.close()  # returns once the route is in, not before
    assert "203.0.113.11 via 192.0.2.1" in show(h1, "-4", "route")

    conf = load_text(
        "static_routes {\n    203.0.113.128/25 via 192.0.2.1 dev eth0\n}\n"
        "static_rules {\n    from 203.0.113.128/25 table 101\n}\n"
    )
    assert conf.ok

    async def run() -> float:
        netlink = Netlink(ip=(slow,))
        mgr = VrrpManager(netlink, lambda event: None)
        mgr.start(conf.config, asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, netlink.flush, 10.0)
        assert "203.0.113.128/25 via 192.0.2.1" in show(h1, "-4", "route")
        assert "from 203.0.113.128/25 lookup 101" in show(h1, "-4", "rule")
        started = time.perf_counter()
        mgr.stop()  # on the loop, as the daemon calls it
        return time.perf_counter() - started

    took = asyncio.run(run())
    assert took >= 0.3  # it did wait for the slow ip
    assert "203.0.113.128/25" not in show(h1, "-4", "route")
    assert "203.0.113.128/25 lookup 101" not in show(h1, "-4", "rule")


# -- the daemon end to end ---------------------------------------------------------------

VIRTUAL = """    virtual_routes {
        198.51.100.0/24 via 192.0.2.1 dev eth0
        203.0.113.0/26 via 192.0.2.1 src 192.0.2.100
        2001:db8:5::/64 via 2001:db8::1 dev eth0
    }
    virtual_rules {
        from 198.51.100.0/24 table 100
        from 2001:db8:5::/64 table 100
    }"""

STATIC = """static_routes {
    203.0.113.128/25 via 192.0.2.1 dev eth0
}
static_rules {
    from 203.0.113.128/25 table 101
}
"""


def node_conf(router_id: str, priority: int) -> str:
    return (
        global_defs(router_id)
        + STATIC
        + instance(priority=priority, version=3, advert_int=0.1, extra=VIRTUAL)
    )


def virtual_present(host: Host) -> dict[str, bool]:
    r4, r6 = show(host, "-4", "route"), show(host, "-6", "route")
    u4, u6 = show(host, "-4", "rule"), show(host, "-6", "rule")
    return {
        "route4": "198.51.100.0/24 via 192.0.2.1" in r4,
        "route4src": "203.0.113.0/26 via 192.0.2.1 dev eth0 src 192.0.2.100" in r4,
        "route6": "2001:db8:5::/64 via 2001:db8::1" in r6,
        "rule4": "from 198.51.100.0/24 lookup 100" in u4,
        "rule6": "from 2001:db8:5::/64 lookup 100" in u6,
    }


def static_present(host: Host) -> dict[str, bool]:
    return {
        "route": "203.0.113.128/25 via 192.0.2.1" in show(host, "-4", "route"),
        "rule": "from 203.0.113.128/25 lookup 101" in show(host, "-4", "rule"),
    }


def test_daemon_moves_virtual_routes_with_state(lab: Any, tmp_path: Path) -> None:
    h1, h2 = lab(2).hosts
    a = PyNode(h1, tmp_path, "a")
    b = PyNode(h2, tmp_path, "b")
    try:
        a.start(node_conf("a", 100))
        a.wait_log("Entering MASTER STATE")
        assert wait_for(lambda: all(virtual_present(h1).values())), (
            virtual_present(h1),
            a.tail(),
        )
        assert all(static_present(h1).values()), static_present(h1)

        b.start(node_conf("b", 200))  # preempts: a goes BACKUP
        a.wait_log("Entering BACKUP STATE")
        assert wait_for(lambda: not any(virtual_present(h1).values())), (
            virtual_present(h1),
            a.tail(),
        )
        assert all(static_present(h1).values()), static_present(h1)

        a.mark()
        assert b.terminate() == 0  # a is MASTER again: the routes come back
        a.wait_log("Entering MASTER STATE")
        assert wait_for(lambda: all(virtual_present(h1).values())), (
            virtual_present(h1),
            a.tail(),
        )

        assert a.terminate() == 0
        # Checked right after the exit: nothing may be left queued behind.
        assert not any(virtual_present(h1).values()), virtual_present(h1)
        assert not any(static_present(h1).values()), static_present(h1)
        assert "192.0.2.100" not in h1.addresses()
        log = a.text()
        assert not any(w in log for w in ("route replace", "rule add", "pending", "Traceback")), log
    finally:
        for n in (a, b):
            if n.running():
                n.kill()
