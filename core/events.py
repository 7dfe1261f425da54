"""Ordered, isolated delivery of state events to notifiers, actions and hooks.

The VRRP state machine and the checkers call :meth:`EventDispatcher.emit`,
which only stamps a sequence number and queues the event: it never awaits
and never raises, so a notifier can never hold up adverts.

Delivery runs in *lanes*: one lane per (subject, consumer), where the
subject is ``(kind, name)`` (``INSTANCE VI_1``, ``RS [192.0.2.21]:tcp:80 ...``)
and a consumer is one notifier/action object or one plugin's
``pykeepalived_state_change`` hook.  A lane delivers its events strictly in
emission order, one at a time, each under the consumer's timeout.  Lanes run
concurrently, so:

* a hanging notifier for instance A delays neither instance B nor the caller;
* a slow consumer (an SMTP server timing out for 30 s) does not hold back
  another consumer of the same subject (the notify script of the next
  transition runs on time), while each consumer still sees the subject's
  events in order.

keepalived rule applied here, once, for every consumer: an instance deleted
at reload is notified as FAULT unless it has ``notify_deleted``
(keepalived.conf(5), ``notify_deleted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pykeepalived.core.plugin.base import EventKind, Notifier, StateEvent

if TYPE_CHECKING:
    from pykeepalived.core.config.model import Config
    from pykeepalived.core.plugin.manager import PluginRegistry

log = logging.getLogger("pykeepalived.events")

#: Seconds a plugin's ``pykeepalived_state_change`` awaitable may take.
HOOK_TIMEOUT = 30.0
#: Seconds ``close()`` lets queued events drain before cancelling them.
CLOSE_TIMEOUT = 10.0
#: Seconds one plugin's ``start()``/``close()`` may take.
LIFECYCLE_TIMEOUT = 10.0

Subject = tuple[EventKind, str]


@dataclasses.dataclass
class _Consumer:
    """Something that receives events: a notifier/action object or a hook."""

    name: str
    wants: Callable[[StateEvent], bool]
    deliver: Callable[[StateEvent], Awaitable[None] | None]
    timeout: Callable[[], float]


@dataclasses.dataclass
class _Lane:
    queue: deque[StateEvent] = dataclasses.field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class EventDispatcher:
    """Builds the configured notifiers/actions and feeds them events in order.

    The daemon owns one per configuration::

        dispatcher = EventDispatcher(config, registry, router_id)
        dispatcher.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
        ...
        await dispatcher.close()

    Created inside the running loop, it starts the plugins' ``async start()``
    (FIFO readers) at once; ``await start()`` waits for that.
    """

    def __init__(
        self,
        config: Config,
        registry: PluginRegistry,
        router_id: str = "",
        *,
        hook_timeout: float = HOOK_TIMEOUT,
    ) -> None:
        self.config = config
        self.registry = registry
        self.router_id = router_id
        self.hook_timeout = hook_timeout
        self.plugins: list[Notifier] = []
        self._seq = itertools.count(1)
        self._lanes: dict[tuple[Subject, int], _Lane] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._started = False
        self._start_task: asyncio.Task[None] | None = None
        classes: list[tuple[str, type[Notifier]]] = [
            *registry.notifiers.items(),
            *registry.actions.items(),
        ]
        for key, cls in classes:
            try:
                self.plugins.append(cls(config))
            except Exception as exc:  # a plugin's bug must not stop the daemon
                log.error(
                    "notifier %s could not be configured: %s: %s", key, type(exc).__name__, exc
                )
        self._consumers: list[_Consumer] = [self._notifier_consumer(n) for n in self.plugins]
        self._consumers.extend(self._hook_consumers())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._start_task = loop.create_task(self._start_plugins(), name="events:start")

    # -- consumers ---------------------------------------------------------------

    @staticmethod
    def _notifier_consumer(n: Notifier) -> _Consumer:
        return _Consumer(_name(n), n.wants, n.notify, lambda: float(n.timeout))

    def _hook_consumers(self) -> list[_Consumer]:
        out: list[_Consumer] = []
        caller = self.registry.pm.hook.pykeepalived_state_change
        for impl in caller.get_hookimpls():
            if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
                continue
            func = impl.function

            def deliver(ev: StateEvent, func: Any = func) -> Awaitable[None] | None:
                return func(event=ev)  # type: ignore[no-any-return]

            out.append(
                _Consumer(
                    f"plugin {impl.plugin_name}",
                    lambda ev: True,
                    deliver,
                    lambda: self.hook_timeout,
                )
            )
        return out

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the plugins' optional ``start()`` (idempotent)."""
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(
                self._start_plugins(), name="events:start"
            )
        await asyncio.shield(self._start_task)

    async def _start_plugins(self) -> None:
        if self._started:
            return
        self._started = True
        for n in self.plugins:
            await _isolated(_name(n), "start", n.start, LIFECYCLE_TIMEOUT)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Refuse new events, let queued ones drain for ``timeout`` seconds,
        cancel what is left (logged), then close every plugin."""
        self._closed = True
        if self._start_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._start_task
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            left = sum(len(lane.queue) for lane in self._lanes.values())
            log.warning("events: shutting down with %d undelivered event(s); cancelling", left)
            tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._lanes.clear()
            self._idle.set()
        for n in self.plugins:
            await _isolated(_name(n), "close", n.close, LIFECYCLE_TIMEOUT)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every queued event has been delivered (for tests)."""
        if self._start_task is not None:
            await asyncio.shield(self._start_task)
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- the hot path -------------------------------------------------------------

    def emit(self, event: StateEvent) -> StateEvent:
        """Queue ``event`` for delivery; returns the stamped event.

        Never blocks, never raises; must be called from the event loop's
        thread (the state machine's code path).
        """
        try:
            return self._emit(event)
        except Exception:  # emit must never break the caller
            log.exception(
                "events: cannot queue %s %s %s", event.kind.value, event.name, event.state
            )
            return event

    def _emit(self, event: StateEvent) -> StateEvent:
        state, detail = event.state, event.detail
        if (
            event.kind is EventKind.INSTANCE
            and state == "DELETED"
            and getattr(event.subject, "notify_deleted", None) is None
        ):
            state, detail = "FAULT", detail or "deleted"
        ev = dataclasses.replace(
            event,
            seq=next(self._seq),
            state=state,
            detail=detail,
            router_id=event.router_id or self.router_id,
            timestamp=event.timestamp or time.time(),
        )
        if self._closed:
            log.warning(
                "events: dispatcher closed, dropping %s %s %s", ev.kind.value, ev.name, ev.state
            )
            return ev
        subject: Subject = (ev.kind, ev.name)
        for i, consumer in enumerate(self._consumers):
            try:
                wanted = consumer.wants(ev)
            except Exception as exc:
                log.error("%s: wants() failed: %s: %s", consumer.name, type(exc).__name__, exc)
                continue
            if not wanted:
                continue
            lane = self._lanes.setdefault((subject, i), _Lane())
            lane.queue.append(ev)
            if lane.task is None:
                self._idle.clear()
                lane.task = asyncio.get_running_loop().create_task(
                    self._run_lane((subject, i), lane),
                    name=f"events:{ev.kind.value}:{ev.name}:{consumer.name}",
                )
        return ev

    async def _run_lane(self, key: tuple[Subject, int], lane: _Lane) -> None:
        consumer = self._consumers[key[1]]
        try:
            if self._start_task is not None and not self._start_task.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._start_task)
            while lane.queue:
                ev = lane.queue.popleft()
                await _deliver(consumer, ev)
        finally:
            # No await between the empty check above and here: emit() cannot
            # slip an event into a lane whose task is finishing.
            lane.task = None
            if not lane.queue:
                self._lanes.pop(key, None)
            if not self._lanes:
                self._idle.set()


async def _deliver(consumer: _Consumer, ev: StateEvent) -> None:
    what = f"{ev.kind.value} {ev.name} {ev.state} (#{ev.seq})"
    timeout = consumer.timeout()
    try:
        result = consumer.deliver(ev)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, timeout)
    except TimeoutError:
        log.error("%s: timed out after %gs handling %s", consumer.name, timeout, what)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("%s: failed handling %s: %s: %s", consumer.name, what, type(exc).__name__, exc)


def _name(n: Notifier) -> str:
    return n.name or type(n).__name__


async def _isolated(name: str, what: str, func: Callable[[], Any], timeout: float) -> None:
    try:
        result = func()
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, timeout)
    except TimeoutError:
        log.error("%s: %s() timed out after %gs", name, what, timeout)
    except Exception as exc:
        log.error("%s: %s() failed: %s: %s", name, what, type(exc).__name__, exc)
