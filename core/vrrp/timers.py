"""Many timers on one asyncio loop for the price of one.

Every VRRP instance has a timer (a master's next advert, a backup's
master-down deadline).  asyncio keeps its timers in a heap ordered by a
Python-level comparison (``TimerHandle.__lt__``), so with hundreds of
instances each scheduling costs tens of comparisons in Python, and each
timer is run through the loop's handle machinery.  This queue keeps due
times as plain floats in a heap (compared in C), groups timers due at the
same time (a backup stamps every advert of one read batch with the same
time, so its instances' deadlines coincide), and holds a single asyncio
timer for the earliest of them.

Cancelling is lazy: a cancelled timer stays in its group until the group
is due and is then skipped.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import weakref
from collections.abc import Callable

log = logging.getLogger("pykeepalived.vrrp")

#: asyncio runs a timer up to its clock resolution early; a deadline
#: within this margin of "now" counts as reached.
EARLY = 1e-6
#: Groups due within this time after the one that woke the loop run in the
#: same wake-up (each with its own due time as "now").  Instances started
#: one after the other have deadlines microseconds apart; without this
#: each would cost a loop turn of its own, every interval.
SLACK = 0.001


class Timer:
    """A scheduled callback; :meth:`cancel` stops it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Timers of one event loop; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[float] = []
        self._due: dict[float, list[Timer]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._head = float("inf")
        self._now: float | None = None

    def now(self) -> float:
        """The loop's time; while a group runs, the time the group was due
        (at most :data:`SLACK` ahead of the loop's time).

        Timers that were due together and re-arm from :meth:`now` stay
        together (a master's instances keep sending their adverts in one
        burst, every interval, without drifting apart by the time each
        callback takes), which keeps the wake-ups of this loop, and of the
        peers reading the adverts, to one per group.
        """
        now = self._now
        return self._loop.time() if now is None else now

    def __len__(self) -> int:
        return sum(1 for lst in self._due.values() for t in lst if not t.cancelled)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(when, callback)
        group = self._due.get(when)
        if group is None:
            self._due[when] = [timer]
            heapq.heappush(self._heap, when)
            if when < self._head and self._now is None:  # _run arms at its end
                self._arm(when)
        else:
            group.append(timer)
        return timer

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._head = when
        self._handle = self._loop.call_at(when, self._run)

    def _run(self) -> None:
        self._handle = None
        self._head = float("inf")
        heap = self._heap
        due = self._due
        # Timers scheduled by the callbacks for "now" run on the next turn.
        limit = self._loop.time() + SLACK
        try:
            while heap and heap[0] <= limit:
                when = heapq.heappop(heap)
                self._now = when
                for timer in due.pop(when):
                    if timer.cancelled:
                        continue
                    timer.cancelled = True  # ran: a late cancel() is harmless
                    try:
                        timer.callback()
                    except Exception:  # one failing callback must not stop the others
                        log.exception("timer callback %r failed", timer.callback)
        finally:
            self._now = None
        if heap and heap[0] < self._head:
            self._arm(heap[0])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()
        self._due.clear()
        self._head = float("inf")


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerQueue] = (
    weakref.WeakKeyDictionary()
)


def timer_queue(loop: asyncio.AbstractEventLoop) -> TimerQueue:
    """The queue of ``loop`` (one per loop, created on first use)."""
    queue = _QUEUES.get(loop)
    if queue is None:
        queue = _QUEUES[loop] = TimerQueue(loop)
    return queue
