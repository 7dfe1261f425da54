"""An event loop on a thread of its own, for the VRRP engine.

Adverts, their timers and the state machines run on this loop; plugins
(trackers, checkers, notifiers, actions) run on the daemon's main loop.  A
plugin that blocks its loop (``time.sleep``, blocking I/O, a long
computation) therefore delays only other plugins, never an advert: a
blocking call releases the GIL, and CPU-bound Python code is preempted every
``sys.getswitchinterval()`` (5 ms).

Crossing between the loops is explicit: :meth:`LoopThread.call` runs a
function on the VRRP loop and awaits its result from the main loop;
:meth:`LoopThread.call_soon` posts without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("pykeepalived")

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> None:
        self._thread.start()
        self._started = True

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on this thread's loop; await its result."""

        async def run() -> T:
            return fn(*args)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return await asyncio.wrap_future(future)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._started:
            self.loop.close()
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s thread did not stop within %.0fs", self.name, timeout)
