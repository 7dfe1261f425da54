"""What VRRP trackers do to an instance: effective priority and FAULT.

Trackers (``vrrp_script``, ``vrrp_track_process``, ``track_interface``,
``track_file`` and third-party families) are plugins; this module turns
their statuses into one :class:`TrackVerdict` per VRRP instance, with
keepalived's rules (keepalived.conf(5), "VRRP script(s)", "Track files",
"VRRP track processes", ``track_interface``):

* an up/down tracker with weight 0 faults the instance while it is down
  (``reverse``: while it is up);
* weight ``w > 0`` adds ``w`` while up, ``w < 0`` subtracts ``|w|`` while
  down; ``reverse`` flips the sign of the adjustment;
* a value tracker (track_file) adds ``value * weight`` (negated by
  ``reverse``), capped at +253, and faults at -254 or below; with weight 0 a
  non-zero value faults (``reverse``: a zero value faults);
* the effective priority is clamped to 1..254; an address owner
  (priority 255) stays 255 and only weight-0 trackers (which can fault it)
  apply to it, weighted ones are ignored (keepalived drops them);
* tracks of a ``vrrp_sync_group`` apply to every member; the members' own
  weighted tracks lose their weights unless ``sync_group_tracking_weight``
  is set (keepalived: interfaces and track files become weight 0, weighted
  scripts are dropped);
* a tracker that has not reported yet (a script that has not run once)
  neither adds nor faults; ``TrackVerdict.pending`` tells the daemon that an
  unweighted one is still pending (keepalived then holds the instance out of
  MASTER, its "init" state).

The daemon's API (all calls from the event loop's thread)::

    trackers = TrackerSet(config, registry, on_change=callback)
    await trackers.start()            # builds nothing new; starts run() tasks
    trackers.verdict("VI_1")          # -> TrackVerdict(priority, fault, reasons, pending)
    trackers.add_listener(cb)         # more callbacks: cb(instance_name) -> None
    await trackers.stop()             # cancels the tasks, closes the trackers

``on_change(instance_name)`` is called (synchronously, from the loop) each
time a tracker feeding that instance, directly or through its sync group,
changes status; the daemon then asks :meth:`TrackerSet.verdict` and acts
(log ``(VI_1) Changing effective priority from X to Y``, enter or leave
FAULT).  Callbacks must not block; an exception in one is logged.

Each tracker's :meth:`~pykeepalived.core.plugin.base.Tracker.run` runs in its own
task: an exception is logged with the tracker's family and name, the tracker
is marked down, and it is restarted after a back-off; it never reaches the
adverts or the state machine.  Trackers may define ``configure(config)``
(called before ``run``), ``close()`` (awaited at stop) and a ``pending``
attribute (see :class:`WatchTracker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pykeepalived.core.config.model import Config, SyncGroup, TrackRef, VrrpInstance
from pykeepalived.core.config.trackrefs import definitions
from pykeepalived.core.plugin.base import Tracker, TrackStatus

if TYPE_CHECKING:
    from pykeepalived.core.plugin.manager import PluginRegistry

log = logging.getLogger("pykeepalived.tracking")

PRIO_OWNER = 255
_ADJUSTMENT = re.compile(r": [+-]\d+$")
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class TrackVerdict:
    """What the trackers say about one instance."""

    priority: int
    fault: bool = False
    reasons: list[str] = field(default_factory=list)
    #: An unweighted tracker has not reported yet (keepalived's script "init").
    pending: bool = False

    @property
    def fault_reason(self) -> str:
        """Why the instance is in FAULT ("tracker script chk_web down ..."),
        the reason its transition and status give; "" without a fault."""
        if not self.fault:
            return ""
        # Weight adjustments end in ": +N" / ": -N"; the rest are faults.
        faults = [r for r in self.reasons if not _ADJUSTMENT.search(r)]
        return "tracker " + "; ".join(faults or self.reasons) if self.reasons else "tracker fault"


@dataclass
class InterfaceTrackConf:
    """Configuration of one tracked interface (family ``interface``).

    Delays come from the top-level ``interface_up_down_delays`` block.
    """

    name: str
    down_delay: float = 0.0
    up_delay: float = 0.0
    weight: int = 0
    reverse: bool = False


# -- pure aggregation -----------------------------------------------------------------


def _family_word(ref: TrackRef) -> str:
    return ref.kind


class TrackingState:
    """One instance's configured priority and its (already filtered) references."""

    def __init__(self, base_priority: int, refs: Iterable[tuple[TrackRef, Tracker]]) -> None:
        self.base_priority = base_priority
        self.refs = list(refs)

    def evaluate(self) -> TrackVerdict:
        owner = self.base_priority >= PRIO_OWNER
        total = self.base_priority
        fault = False
        pending = False
        reasons: list[str] = []
        for ref, tracker in self.refs:
            what = f"{_family_word(ref)} {ref.name}"
            weight = ref.weight if ref.weight is not None else tracker.weight
            reverse = ref.reverse or tracker.reverse
            mult = -1 if reverse else 1
            if tracker.pending:
                if weight == 0:
                    pending = True
                continue
            status = tracker.status
            if tracker.value_based:
                if owner and weight == 1:
                    weight = 0  # keepalived: the default weight is dropped for an owner
                if owner and weight != 0:
                    continue
                if weight == 0:
                    if (status.value != 0) == (not reverse):
                        fault = True
                        reasons.append(f"{what} has status {status.value}")
                    continue
                adj = status.value * weight * mult
                if adj <= -254:
                    fault = True
                    reasons.append(f"{what} has status {adj}")
                    continue
                adj = min(adj, 253)
                if adj:
                    total += adj
                    reasons.append(f"{what} value {status.value} * weight {weight}: {adj:+d}")
                continue
            if weight == 0:
                if status.up == reverse:
                    fault = True
                    state = "up" if status.up else "down"
                    why = f" ({status.reason})" if status.reason else ""
                    reasons.append(f"{what} {state}{' (reverse)' if reverse else ''}{why}")
                continue
            if owner:
                continue  # keepalived: weighted trackers never change an owner's priority
            if status.up and weight > 0:
                total += weight * mult
                reasons.append(f"{what} up: {weight * mult:+d}")
            elif not status.up and weight < 0:
                total += weight * mult
                reasons.append(f"{what} down: {weight * mult:+d}")
        priority = PRIO_OWNER if owner else max(1, min(PRIO_OWNER - 1, total))
        return TrackVerdict(priority, fault, reasons, pending)


# -- configuration helpers ------------------------------------------------------------


def _sync_group_of(config: Config, instance: str) -> SyncGroup | None:
    return next((g for g in config.vrrp_sync_groups if instance in g.group), None)


def instance_refs(config: Config, vi: VrrpInstance) -> list[TrackRef]:
    """Every reference feeding ``vi``, with keepalived's sync-group rules applied."""
    refs: list[TrackRef] = []
    if vi.interface is not None and not vi.dont_track_primary:
        refs.append(TrackRef("interface", vi.interface, vi.place, weight=0))
    sg = _sync_group_of(config, vi.name)
    strip_weights = sg is not None and not sg.sync_group_tracking_weight
    own = {(r.kind, r.name) for r in refs}
    for ref in vi.tracks:
        if (ref.kind, ref.name) in own:
            continue
        if strip_weights:
            weight = _ref_weight(config, ref)
            if ref.kind == "interface":
                ref = dataclasses.replace(ref, weight=0)
            elif ref.kind == "file":
                if weight not in (0, 1):
                    continue  # "ignoring tracked file X with weight N due to SYNC group"
                ref = dataclasses.replace(ref, weight=0)  # the default weight 1 becomes 0
            elif ref.kind != "process" and weight != 0:
                continue  # "ignoring tracked script X with weights due to SYNC group"
        refs.append(ref)
        own.add((ref.kind, ref.name))
    if sg is not None:
        has_owner = any(
            (m := config.instance(n)) is not None and m.priority >= PRIO_OWNER for n in sg.group
        )
        for ref in sg.tracks:
            if (ref.kind, ref.name) in own:
                continue
            if has_owner:
                ref = dataclasses.replace(ref, weight=0)
            refs.append(ref)
            own.add((ref.kind, ref.name))
    return refs


def _ref_weight(config: Config, ref: TrackRef) -> int:
    if ref.weight is not None:
        return ref.weight
    if ref.kind == "interface":
        return 0
    conf = definitions(config, ref.kind).get(ref.name)
    return int(getattr(conf, "weight", 0) or 0)


def interface_delays(config: Config) -> dict[str, tuple[float, float]]:
    """``interface_up_down_delays``: ifname -> (down_delay, up_delay)."""
    value = config.ext.get("interface_up_down_delays") or {}
    return dict(value)


# -- the running set ------------------------------------------------------------------

Listener = Callable[[str], None]


class TrackerSet:
    """All trackers of one configuration, their tasks, and per-instance verdicts."""

    def __init__(
        self,
        config: Config,
        registry: PluginRegistry | dict[str, type[Tracker]],
        on_change: Listener | None = None,
    ) -> None:
        self.config = config
        classes = registry if isinstance(registry, dict) else registry.trackers
        self._classes: dict[str, type[Tracker]] = dict(classes)
        self._listeners: list[Listener] = [on_change] if on_change is not None else []
        self.trackers: dict[tuple[str, str], Tracker] = {}
        self._feeds: dict[tuple[str, str], set[str]] = {}
        self._states: dict[str, TrackingState] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._build()

    # -- construction ------------------------------------------------------------
    def _build(self) -> None:
        delays = interface_delays(self.config)
        for vi in self.config.vrrp_instances:
            pairs: list[tuple[TrackRef, Tracker]] = []
            for ref in instance_refs(self.config, vi):
                tracker = self._tracker_for(ref, delays)
                if tracker is None:
                    continue
                pairs.append((ref, tracker))
                self._feeds.setdefault((ref.kind, ref.name), set()).add(vi.name)
            self._states[vi.name] = TrackingState(vi.priority, pairs)

    def _tracker_for(self, ref: TrackRef, delays: dict[str, tuple[float, float]]) -> Tracker | None:
        key = (ref.kind, ref.name)
        if key in self.trackers:
            return self.trackers[key]
        cls = self._classes.get(ref.kind)
        if cls is None:
            log.error("(%s) no plugin provides %s trackers; track ignored", ref.name, ref.kind)
            return None
        conf: Any
        if ref.kind == "interface":
            down, up = delays.get(ref.name, (0.0, 0.0))
            conf = InterfaceTrackConf(ref.name, down, up)
        else:
            conf = definitions(self.config, ref.kind, cls.config_key).get(ref.name)
            if conf is None:
                log.error("track %s %s not found, ignoring...", ref.kind, ref.name)
                return None
        tracker = cls(ref.name, conf, self._tracker_changed)
        self.trackers[key] = tracker
        return tracker

    # -- API for the daemon -------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def instances_fed_by(self, tracker: Tracker) -> set[str]:
        return set(self._feeds.get((tracker.family, tracker.name), ()))

    def verdict(self, instance: str) -> TrackVerdict:
        state = self._states.get(instance)
        if state is None:
            vi = self.config.instance(instance)
            return TrackVerdict(vi.priority if vi is not None else 100)
        return state.evaluate()

    def status(self) -> list[dict[str, Any]]:
        """Every tracker's last report and the instances it feeds (status socket)."""
        return [
            {
                "kind": kind,
                "name": name,
                "up": tracker.status.up,
                "value": tracker.status.value,
                "reason": tracker.status.reason,
                "pending": tracker.pending,
                "instances": sorted(self._feeds.get((kind, name), ())),
            }
            for (kind, name), tracker in self.trackers.items()
        ]

    async def start(self) -> None:
        for key, tracker in self.trackers.items():
            try:
                tracker.configure(self.config)
            except Exception as exc:
                log.error("tracker %s %s: configure failed: %s", key[0], key[1], exc)
            self._tasks[key] = asyncio.create_task(
                self._supervise(key, tracker), name=f"tracker:{key[0]}:{key[1]}"
            )

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for key, tracker in self.trackers.items():
            try:
                await asyncio.wait_for(tracker.close(), 5.0)
            except Exception as exc:
                log.error("tracker %s %s: close failed: %s", key[0], key[1], exc)

    # -- internals ------------------------------------------------------------------
    async def _supervise(self, key: tuple[str, str], tracker: Tracker) -> None:
        failures = 0
        while True:
            try:
                await tracker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
                failures += 1
                log.error(
                    "tracker %s %s failed: %s: %s; treated as down, restarting in %gs",
                    key[0],
                    key[1],
                    type(exc).__name__,
                    exc,
                    delay,
                )
                was_pending = tracker.pending
                tracker.pending = False
                was_up = tracker.status.up
                tracker.report(TrackStatus(up=False, reason=f"tracker error: {exc}"))
                if was_pending and not was_up:
                    self._tracker_changed(tracker)
                await asyncio.sleep(delay)

    def _tracker_changed(self, tracker: Tracker) -> None:
        for name in sorted(self.instances_fed_by(tracker)):
            for listener in list(self._listeners):
                try:
                    listener(name)
                except Exception as exc:
                    log.error("tracking listener failed for %s: %s", name, exc)
