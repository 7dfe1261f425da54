"""core/vrrp/timers.py: many timers on one asyncio timer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pykeepalived.core.vrrp.timers import TimerQueue, timer_queue


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    await asyncio.sleep(max(0.0, when - loop.time()) + 0.02)


def test_timers_run_in_order_with_their_due_time_as_now() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = TimerQueue(loop)
        t0 = loop.time()
        ran: list[tuple[str, float, float]] = []
        for name, dt in (("c", 0.06), ("a", 0.02), ("b", 0.04), ("a2", 0.02)):
            when = t0 + dt
            q.call_at(when, lambda n=name, w=when: ran.append((n, w, q.now())))
        assert len(q) == 4
        await _sleep_until(loop, t0 + 0.06)
        assert [r[0] for r in ran] == ["a", "a2", "b", "c"]
        # Inside a group, now() is the time the group was due, so timers
        # re-armed from it keep their cadence.
        assert all(now == when for _, when, now in ran)
        # Outside a group: the loop's time, read when asked (an ordering, no stopwatch).
        before = loop.time()
        now = q.now()
        assert before <= now <= loop.time()
        assert now > ran[-1][1]  # not the last group's due time
        assert len(q) == 0

    asyncio.run(main())


def test_one_asyncio_timer_for_many() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = TimerQueue(loop)
        t0 = loop.time()
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        for k in range(300):
            q.call_at(t0 + 1 + k * 0.001, lambda: None)
        assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
        q.close()

    asyncio.run(main())


def test_cancel_and_rescheduling_from_a_callback() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = timer_queue(loop)
        assert timer_queue(loop) is q
        t0 = loop.time()
        ran: list[str] = []
        gone = q.call_at(t0 + 0.02, lambda: ran.append("cancelled"))
        gone.cancel()

        def again() -> None:
            ran.append("first")
            # Due "now": runs on the next turn, not inside this group.
            q.call_at(q.now(), lambda: ran.append("second"))
            assert ran == ["first"]

        q.call_at(t0 + 0.02, again)
        # An earlier timer added after a later one re-arms the queue.
        q.call_at(t0 + 0.08, lambda: ran.append("late"))
        q.call_at(t0 + 0.04, lambda: ran.append("early"))
        await _sleep_until(loop, t0 + 0.08)
        assert ran == ["first", "second", "early", "late"]

    asyncio.run(main())


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = TimerQueue(loop)
        t0 = loop.time()
        ran: list[int] = []

        def boom() -> None:
            raise RuntimeError("boom")

        q.call_at(t0 + 0.01, boom)
        q.call_at(t0 + 0.01, lambda: ran.append(1))
        q.call_at(t0 + 0.02, lambda: ran.append(2))
        await _sleep_until(loop, t0 + 0.02)
        assert ran == [1, 2]

    with caplog.at_level(logging.ERROR, logger="pykeepalived.vrrp"):
        asyncio.run(main())
    assert "boom" in caplog.text
