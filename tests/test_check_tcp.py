"""TCP_CHECK and the scheduler: success, failure, retry, recovery, sharing, isolation."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import random
import socket
from typing import ClassVar

import pytest
from checkhelp import lines, manager, one_checker

from pykeepalived.core.config.model import CheckerConf
from pykeepalived.core.lvs.checking import CheckOptions, CheckScheduler, run_attempt
from pykeepalived.core.plugin.base import Checker, CheckResult, CheckTarget
from pykeepalived.testing.checks import unanswered_tcp_port


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def listener() -> tuple[asyncio.Server, int]:
    srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_tcp_check_attempts() -> None:
    srv, port = await listener()
    try:
        ok = await one_checker("TCP_CHECK {\n connect_timeout 1\n}", port=port).check()
        assert ok.ok
    finally:
        srv.close()
        await srv.wait_closed()
    checker = one_checker("TCP_CHECK {\n connect_timeout 1\n}", port=closed_port())
    result = await run_attempt(checker, 2)
    assert not result.ok and "111" in result.message


async def test_defaults_come_from_real_and_virtual_server() -> None:
    checker = one_checker(
        "retry 4\n  connect_timeout 2\n  TCP_CHECK {\n connect_port 81\n delay_before_retry 0.5\n}",
        vs_extra="delay_loop 7\n  warmup 0",
    )
    opts = checker.conf.options
    assert (
        opts.retry,
        opts.connect_timeout,
        opts.delay_before_retry,
        opts.delay_loop,
        opts.warmup,
    ) == (
        4,
        2.0,
        0.5,
        7.0,
        0.0,
    )
    assert checker.target.port == 81 and checker.timeout == 2.0


async def test_down_after_retries_then_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    srv, port = await listener()
    m, events, _ = manager(
        f"""virtual_server 192.0.2.100 80 {{
  protocol TCP
  delay_loop 0.1
  real_server 127.0.0.1 {port} {{
    TCP_CHECK {{
      connect_timeout 0.5
      retry 2
      delay_before_retry 0.05
      warmup 0
    }}
  }}
}}"""
    )
    await m.start()
    try:
        await asyncio.sleep(0.3)
        assert f"TCP connection to [127.0.0.1]:tcp:{port} success." in lines(caplog)
        srv.close()
        await srv.wait_closed()
        for _ in range(100):
            if not m.virtual_servers[0].reals[0].alive:
                break
            await asyncio.sleep(0.02)
        assert f"TCP_CHECK on service [127.0.0.1]:tcp:{port} failed after 2 retries." in lines(
            caplog
        )
        assert f"Removing service [127.0.0.1]:tcp:{port} from VS [192.0.2.100]:tcp:80" in lines(
            caplog
        )
        run = m.scheduler.runs[0]
        assert run.failures >= 3  # the attempt and its two retries
        srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        for _ in range(100):
            if m.virtual_servers[0].reals[0].alive:
                break
            await asyncio.sleep(0.02)
        assert m.virtual_servers[0].reals[0].alive
        await asyncio.sleep(0.05)
        assert [(e.kind.value, e.state) for e in events] == [
            ("VS", "UP"),  # quorum gained at start-up, as keepalived
            ("RS", "DOWN"),
            ("VS", "DOWN"),
            ("RS", "UP"),
            ("VS", "UP"),
        ]
    finally:
        srv.close()
        await m.stop()


async def test_identical_checks_run_once_for_all_virtual_servers() -> None:
    srv, port = await listener()
    block = f"""real_server 127.0.0.1 {port} {{
    TCP_CHECK {{
      connect_timeout 1
      warmup 0
    }}
  }}"""
    m, _, _ = manager(
        f"virtual_server 192.0.2.100 80 {{\n protocol TCP\n delay_loop 0.05\n {block}\n}}\n"
        f"virtual_server 192.0.2.101 80 {{\n protocol TCP\n delay_loop 0.05\n {block}\n}}\n"
        f"virtual_server 192.0.2.102 80 {{\n protocol TCP\n delay_loop 0.05\n alpha\n {block}\n}}\n"
    )
    # the alpha one differs in behaviour, so it is its own check
    assert len(m.scheduler.runs) == 2
    assert sorted(len(r.keys) for r in m.scheduler.runs) == [1, 2]
    await m.start()
    try:
        await asyncio.sleep(0.3)
        assert all(r.alive for vs in m.virtual_servers for r in vs.reals)
    finally:
        srv.close()
        await m.stop()


class Broken(Checker):
    keyword: ClassVar[str] = "BROKEN"
    mode = "raise"

    async def check(self) -> CheckResult:
        if self.target.address == "hang":
            # ignores the first cancellation: the scheduler must still go on
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.5)
            return CheckResult(True)
        raise RuntimeError("plugin bug")


async def test_a_raising_or_hanging_check_only_fails_its_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changes: list[tuple[list[object], bool]] = []
    sched = CheckScheduler(lambda keys, up, result, first: changes.append((keys, up)))
    opts = CheckOptions(connect_timeout=0.1, retry=0, delay_loop=0.05, warmup=0)
    sched.add("raises", Broken(CheckerConf("BROKEN", options=opts), CheckTarget("raise", 1)))
    sched.add("hangs", Broken(CheckerConf("BROKEN", options=opts), CheckTarget("hang", 1)))
    sched.start()
    try:
        await asyncio.sleep(1.5)
    finally:
        await asyncio.wait_for(sched.stop(), 5)
    assert (["raises"], False) in changes and (["hangs"], False) in changes
    assert all(r.attempts >= 2 for r in sched.runs)  # both kept being scheduled
    assert any("raised RuntimeError: plugin bug" in line for line in lines(caplog))


async def test_connect_timeout_is_logged_as_timedout(caplog: pytest.LogCaptureFixture) -> None:
    """A SYN that gets no answer: the checker's own connect_timeout ends the
    attempt, logged as keepalived does ("timedout", not "failed")."""
    caplog.set_level(logging.INFO)
    # a listener whose accept queue is full drops further SYNs
    with unanswered_tcp_port() as port:
        checker = one_checker("TCP_CHECK {\n connect_timeout 0.2\n log_all_failures\n}", port=port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await run_attempt(checker, 5)
        assert not result.ok and result.message == "timeout after 0.2s"
        # The checker's own timeout ended it, not the scheduler's grace (5 s): at least the
        # timeout, and well under the grace (10x the timeout: "did not wait for the grace").
        assert 0.15 < loop.time() - start < 2.0
        assert checker.attempt_failed_line(result) == (  # type: ignore[attr-defined]
            f"TCP connection to [127.0.0.1]:tcp:{port} timedout."
        )


async def test_schedule_warmup_spread_and_delay_after_the_attempt() -> None:
    """The first attempts spread over warmup; the next one is delay_loop
    after the previous attempt ended (keepalived's thread_add_timer)."""
    starts: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()

    class Slow(Checker):
        keyword: ClassVar[str] = "SLOW"

        async def check(self) -> CheckResult:
            starts.setdefault(self.target.address, []).append(loop.time())
            await asyncio.sleep(0.1)
            return CheckResult(True)

    class Drawn(random.Random):
        """The scheduler's random source, recording each warmup delay it draws."""

        def __init__(self) -> None:
            super().__init__(15)
            self.draws: list[tuple[float, float, float]] = []

        def uniform(self, a: float, b: float) -> float:
            value = super().uniform(a, b)
            self.draws.append((a, b, value))
            return value

    rng = Drawn()
    sched = CheckScheduler(lambda *a: None, rng=rng)
    opts = CheckOptions(connect_timeout=1, retry=0, delay_loop=0.2, warmup=0.5)
    for i in range(20):
        sched.add(i, Slow(CheckerConf("SLOW", options=opts), CheckTarget(f"rs{i}", 1)))
    t0 = loop.time()
    sched.start()
    try:
        # Event-driven: until every server has started a third attempt (the timeout only
        # ends a hung run).
        for _ in range(1000):
            if len(starts) == 20 and all(len(s) >= 3 for s in starts.values()):
                break
            await asyncio.sleep(0.01)
    finally:
        await sched.stop()
    # One draw per server, up to warmup; each first attempt starts no earlier than its
    # draw, and the first attempts come in the order of the draws: spread, not a burst.
    assert [(a, b) for a, b, _ in rng.draws] == [(0, 0.5)] * 20
    planned = {f"rs{i}": d for i, (_, _, d) in enumerate(rng.draws)}
    assert all(starts[rs][0] - t0 >= planned[rs] for rs in planned)
    by_start = sorted(planned, key=lambda rs: starts[rs][0])
    assert by_start == sorted(planned, key=planned.__getitem__)
    # The next attempt is delay_loop after the previous one ENDED (0.1 s attempt + 0.2 s),
    # not after it started (0.2 s); the upper bound is 10x: "was not stuck".
    gaps = [b - a for s in starts.values() for a, b in itertools.pairwise(s)]
    assert gaps and all(0.29 <= g < 3.0 for g in gaps), gaps


async def test_suspended_runs_skip_and_stop_ends_attempts_in_flight() -> None:
    calls: list[str] = []
    cancelled: list[str] = []

    class Rec(Checker):
        keyword: ClassVar[str] = "REC"

        async def check(self) -> CheckResult:
            calls.append(self.target.address)
            try:
                # "slow" is still in its first attempt at stop, however busy the machine.
                await asyncio.sleep(30 if self.target.address == "slow" else 0)
            except asyncio.CancelledError:
                cancelled.append(self.target.address)
                raise
            return CheckResult(True)

    sched = CheckScheduler(lambda *a: None)
    opts = CheckOptions(connect_timeout=1, retry=0, delay_loop=0.02, warmup=0)
    sched.add("a", Rec(CheckerConf("REC", options=opts), CheckTarget("a", 1)))
    sched.add("slow", Rec(CheckerConf("REC", options=opts), CheckTarget("slow", 1)))
    sched.suspend(["a"])
    sched.start()
    assert gc.get_freeze_count() > 0  # the long-lived heap is out of the collector's way
    try:
        # Suspended: "slow" has started (and is sleeping), "a" never has.
        for _ in range(500):
            if "slow" in calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # several of a's 0.02 s delay_loops
        assert "slow" in calls and "a" not in calls
        sched.resume(["a"])
        for _ in range(500):  # event-driven: until a ran twice (the timeout ends a hang)
            if calls.count("a") >= 2:
                break
            await asyncio.sleep(0.01)
        assert calls.count("a") >= 2
    finally:
        await sched.stop()
    # slow's attempt was in flight and is ended (a's may be too, if stop caught one).
    assert "slow" in cancelled and set(cancelled) <= {"a", "slow"}
    assert gc.get_freeze_count() == 0
    n = len(calls)
    await asyncio.sleep(0.1)
    assert len(calls) == n  # nothing scheduled after stop


async def test_a_check_that_raises_before_it_awaits(caplog: pytest.LogCaptureFixture) -> None:
    class NotAsync(Checker):
        keyword: ClassVar[str] = "NOTASYNC"

        def check(self) -> CheckResult:  # type: ignore[override]
            raise ValueError("not a coroutine")

    changes: list[bool] = []
    sched = CheckScheduler(lambda keys, up, result, first: changes.append(up))
    opts = CheckOptions(connect_timeout=1, retry=0, delay_loop=0.05, warmup=0)
    sched.add("x", NotAsync(CheckerConf("NOTASYNC", options=opts), CheckTarget("x", 1)))
    sched.start()
    try:
        await asyncio.sleep(0.2)
    finally:
        await sched.stop()
    assert changes == [False] and sched.runs[0].attempts >= 2
    assert any("raised ValueError: not a coroutine" in line for line in lines(caplog))
