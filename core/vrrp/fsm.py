"""Pure VRRP state machine (RFC 5798 / RFC 3768 with keepalived's behaviour).

This module has no sockets, no asyncio and no clock.  The caller passes the
current monotonic time (float seconds) into every method, and each method
returns a list of *actions* for the I/O layer to carry out, in order.

Timing
------
``Skew_Time = (256 - priority) * Master_Adver_Interval / 256`` for VRRPv3 and
``(256 - priority) / 256`` seconds for VRRPv2.  ``Master_Down_Interval =
down_timer_adverts * Master_Adver_Interval + Skew_Time``.  As in keepalived,
an address owner (configured priority 255) always uses 255 for its skew.

Action ordering
---------------
Actions are listed in the order keepalived performs them, so that the I/O
layer can execute them one after another:

* becoming MASTER: ``SendAdvert`` (so that an old master drops the VIPs
  before our gratuitous ARPs go out), ``Log("Entering MASTER STATE")``,
  ``AddVips``, ``SendGratuitous``, ``Transition``;
* leaving MASTER: ``Log("Entering ... STATE")``, (``SendAdvert(0)`` when going
  to FAULT or stopping), ``RemoveVips``, ``Transition``.

The ``Transition`` action comes where keepalived runs its notifications
(after the addresses have been added / removed).

Sync groups
-----------
When ``FsmParams.in_sync_group`` is set, the machine never promotes itself
when its master-down timer expires: it records ``wants_master`` (keepalived's
*wantstate*), re-arms the master-down timer and returns ``WantMaster``.  A
sync-group coordinator then decides, like keepalived's
``vrrp_sync_can_goto_master()``, whether every member wants to be master (or
the group already is) and calls :meth:`VrrpMachine.force_master` on the
members; when one member leaves MASTER it calls
:meth:`VrrpMachine.force_backup` on the others; when one member enters FAULT
it calls :meth:`VrrpMachine.set_group_fault` on the others.

Repeated adverts
----------------
A backup hears the same advert from its master every interval, and each
one only moves the master-down deadline.  After an advert was accepted
without any other effect, :meth:`VrrpMachine.offer_repeat` lets the socket
layer handle its exact repeats by writing their arrival time into a
:class:`RepeatStamp`.  Before any event (and when :attr:`next_deadline` is
read) the machine folds the latest stamp into its deadline, which is what
handling each repeat would have produced; after any event it withdraws the
stamp (``live = False``) if repeats would now mean more than that (state,
effective priority or master changed), and the socket layer hands them
over again.  The machine stays pure: the stamp is data.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

__all__ = [
    "ALLOWED_TRANSITIONS",
    "LOG_DETAIL",
    "LOG_INFO",
    "PRIO_OWNER",
    "PRIO_STOP",
    "Action",
    "AddVips",
    "FsmParams",
    "InvalidTransition",
    "Log",
    "PriorityChanged",
    "ReceivedLowerPriority",
    "RemoveVips",
    "RepeatStamp",
    "RxAdvert",
    "SendAdvert",
    "SendGratuitous",
    "State",
    "Transition",
    "VrrpMachine",
    "VrrpStateError",
    "WantMaster",
    "format_ip",
    "master_down_interval",
    "skew_time",
]

PRIO_OWNER: Final = 255
PRIO_STOP: Final = 0

#: Level of lines keepalived always logs.
LOG_INFO: Final = logging.INFO
#: Level of lines keepalived only logs with ``-D`` / ``--log-detail``.
LOG_DETAIL: Final = logging.DEBUG


class State(enum.Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


#: Every transition the machine may make.  Anything else is a programming
#: error and raises :class:`InvalidTransition`.
ALLOWED_TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    State.INIT: frozenset({State.BACKUP, State.MASTER, State.FAULT, State.STOP}),
    State.BACKUP: frozenset({State.MASTER, State.FAULT, State.STOP}),
    State.MASTER: frozenset({State.BACKUP, State.FAULT, State.STOP}),
    State.FAULT: frozenset({State.BACKUP, State.STOP}),
    State.STOP: frozenset(),
}


class VrrpStateError(RuntimeError):
    """The machine was driven in a way that is a programming error."""


class InvalidTransition(VrrpStateError):
    """A transition not present in :data:`ALLOWED_TRANSITIONS` was attempted."""

    def __init__(self, name: str, old: State, new: State) -> None:
        super().__init__(f"({name}) invalid VRRP transition {old.value} -> {new.value}")
        self.old = old
        self.new = new


# --------------------------------------------------------------------------
# Parameters and inputs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FsmParams:
    """Static configuration of one VRRP instance, as the FSM needs it."""

    name: str
    vrid: int
    version: int
    priority: int
    advert_int: float
    initial_state: State
    preempt: bool = True
    preempt_delay: float = 0.0
    down_timer_adverts: int = 3
    primary_ip: bytes = b""
    #: keepalived ``lower_prio_no_advert``: as MASTER, do not answer a
    #: lower-priority advert with an advert of our own.
    lower_prio_no_advert: bool = False
    #: keepalived ``higher_prio_send_advert``: as MASTER, send one advert
    #: before yielding to a higher-priority advert.
    higher_prio_send_advert: bool = False
    #: keepalived ``garp_lower_prio_repeat``: if > 0, a lower-priority advert
    #: received as MASTER triggers ``SendGratuitous(lower_prio=True)``.  The
    #: I/O layer applies the repeat count and ``garp_lower_prio_delay``.
    garp_lower_prio_repeat: int = 0
    #: Member of a ``vrrp_sync_group``: see the module docstring.
    in_sync_group: bool = False

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"({self.name}) VRRP version must be 2 or 3, not {self.version}")
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"({self.name}) vrid must be 1..255, not {self.vrid}")
        if not 1 <= self.priority <= PRIO_OWNER:
            raise ValueError(f"({self.name}) priority must be 1..255, not {self.priority}")
        if not self.advert_int > 0:
            raise ValueError(f"({self.name}) advert_int must be > 0, not {self.advert_int}")
        if self.initial_state not in (State.BACKUP, State.MASTER):
            raise ValueError(
                f"({self.name}) initial_state must be BACKUP or MASTER, not {self.initial_state}"
            )
        if self.preempt_delay < 0:
            raise ValueError(f"({self.name}) preempt_delay must be >= 0")
        if self.down_timer_adverts < 1:
            raise ValueError(f"({self.name}) down_timer_adverts must be >= 1")
        if self.garp_lower_prio_repeat < 0:
            raise ValueError(f"({self.name}) garp_lower_prio_repeat must be >= 0")


@dataclass(frozen=True)
class RxAdvert:
    """A received advertisement that passed the packet checks."""

    priority: int
    src_ip: bytes
    #: Advert interval carried in the packet, in seconds.
    advert_int: float


class RepeatStamp(Protocol):
    """Where the socket layer records repeats of an accepted advert.

    ``seen``: arrival time of the latest repeat; ``applied``: the latest
    arrival time the machine has folded into its deadline; ``live``:
    cleared by the machine when repeats must be handed over again.
    """

    seen: float
    applied: float
    live: bool


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SendAdvert:
    """Send one advertisement now with this priority (0 = resign)."""

    priority: int


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str


@dataclass(frozen=True)
class AddVips:
    """Take the VIPs / eVIPs, virtual routes and rules."""


@dataclass(frozen=True)
class RemoveVips:
    """Release the VIPs / eVIPs, virtual routes and rules."""


@dataclass(frozen=True)
class SendGratuitous:
    """Send the GARP / unsolicited NA burst.

    ``lower_prio`` False: after becoming master (``garp_master_delay`` /
    ``garp_master_repeat``); True: after a lower-priority advert was received
    as master (``garp_lower_prio_delay`` / ``garp_lower_prio_repeat``).
    """

    lower_prio: bool = False


@dataclass(frozen=True)
class Log:
    level: int
    message: str


@dataclass(frozen=True)
class ReceivedLowerPriority:
    """MASTER received a lower-priority advert (``notify_master_rx_lower_pri``)."""

    src: bytes
    priority: int


@dataclass(frozen=True)
class PriorityChanged:
    """Effective priority changed (``notify_priority_changes``)."""

    old: int
    new: int


@dataclass(frozen=True)
class WantMaster:
    """Sync-group member's master-down timer expired; it waits for the group."""


Action = (
    SendAdvert
    | Transition
    | AddVips
    | RemoveVips
    | SendGratuitous
    | Log
    | ReceivedLowerPriority
    | PriorityChanged
    | WantMaster
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def skew_time(priority: int, master_adver_int: float, version: int) -> float:
    """RFC Skew_Time in seconds for ``priority``."""
    if version == 2:
        return (256 - priority) / 256
    return (256 - priority) * master_adver_int / 256


def master_down_interval(
    priority: int, master_adver_int: float, version: int, down_timer_adverts: int = 3
) -> float:
    """RFC Master_Down_Interval in seconds."""
    return down_timer_adverts * master_adver_int + skew_time(priority, master_adver_int, version)


@functools.lru_cache(maxsize=256)
def format_ip(packed: bytes) -> str:
    """Render a packed IPv4/IPv6 address for log lines (cached: a master
    names each lower-priority peer in a line per advert it hears)."""
    if len(packed) in (4, 16):
        return str(ipaddress.ip_address(packed))
    return packed.hex() if packed else "?"


def _addr_cmp(remote: bytes, ours: bytes) -> int:
    """Compare addresses numerically like keepalived (0 if not comparable)."""
    if not ours or len(remote) != len(ours):
        return 0
    return (remote > ours) - (remote < ours)


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _event(
    method: Callable[Concatenate[VrrpMachine, _P], _R],
) -> Callable[Concatenate[VrrpMachine, _P], _R]:
    """An event method: fold pending repeats in first, re-check them after."""

    @functools.wraps(method)
    def wrapper(self: VrrpMachine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._repeat is None:
            return method(self, *args, **kwargs)
        self._fold_repeats()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._recheck_repeats()

    return wrapper


class VrrpMachine:
    """One VRRP instance's state machine."""

    def __init__(self, params: FsmParams) -> None:
        self.params = params
        self.state: State = State.INIT
        self.base_priority: int = params.priority
        self.effective_priority: int = params.priority
        #: Master_Adver_Interval; learnt from the master's adverts in VRRPv3.
        self.master_adver_int: float = params.advert_int
        # keepalived ignores nopreempt and preempt_delay with state MASTER.
        initial_master = params.initial_state is State.MASTER
        self.preempt: bool = params.preempt or initial_master
        self.preempt_delay: float = (
            params.preempt_delay if self.preempt and not initial_master else 0.0
        )
        #: keepalived's ``wantstate == MASTER``: what the instance would be
        #: disregarding its sync group.
        self.wants_master: bool = initial_master
        #: Source address / priority of the master we last accepted.
        self.master_src: bytes | None = None
        self.master_priority: int | None = None
        #: Absolute time after which a lower-priority master may be
        #: preempted (``None`` = preempt delay not running).
        self.preempt_time: float | None = None
        self._own_fault = False
        self._group_fault = False
        self._deadline: float | None = None
        self._owner_conflict_logged = False
        #: The master whose priority-0 advert shortened our master-down timer
        #: to Skew_Time (the reason given if that timer then expires).
        self._resigned_by: bytes | None = None
        #: Repeats of ``_repeat_adv`` are stamped into ``_repeat`` (see the
        #: module docstring, "Repeated adverts").
        self._repeat: RepeatStamp | None = None
        self._repeat_adv: RxAdvert | None = None

    # ----------------------------------------------------------- properties

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def is_owner(self) -> bool:
        return self.base_priority == PRIO_OWNER

    @property
    def faulted(self) -> bool:
        return self._own_fault or self._group_fault

    @property
    def own_fault(self) -> bool:
        return self._own_fault

    @property
    def group_fault(self) -> bool:
        return self._group_fault

    @property
    def skew_time(self) -> float:
        prio = PRIO_OWNER if self.is_owner else self.effective_priority
        return skew_time(prio, self.master_adver_int, self.params.version)

    @property
    def master_down_interval(self) -> float:
        return self.params.down_timer_adverts * self.master_adver_int + self.skew_time

    @property
    def next_deadline(self) -> float | None:
        """Absolute time at which :meth:`timer_expired` must be called.

        MASTER: next advert; BACKUP: master-down timer; otherwise ``None``.
        """
        if self._repeat is not None:
            self._fold_repeats()
        return self._deadline

    # ---------------------------------------------------------- repeats

    def offer_repeat(self, stamp: RepeatStamp, adv: RxAdvert) -> bool:
        """``adv`` was just accepted with no action: may its exact repeats be
        stamped into ``stamp`` instead of being handed to
        :meth:`advert_received`?  True: ``stamp`` is live until withdrawn."""
        if not self._repeatable(adv):
            return False
        if self._repeat is not None and self._repeat is not stamp:
            self._repeat.live = False
        self._repeat = stamp
        self._repeat_adv = adv
        stamp.live = True
        stamp.applied = stamp.seen
        return True

    def _repeatable(self, adv: RxAdvert) -> bool:
        # A repeat is a pure refresh while a backup would accept it with no
        # other effect: same master, priority and interval as accepted, and
        # the acceptance does not depend on time (preempt_delay is only
        # consulted for a lower priority with preempt on).
        return (
            self.state is State.BACKUP
            and adv.src_ip == self.master_src
            and adv.priority == self.master_priority
            and adv.priority != PRIO_STOP
            and adv.advert_int == self.master_adver_int
            and (adv.priority >= self.effective_priority or not self.preempt)
        )

    def _fold_repeats(self) -> None:
        stamp = self._repeat
        if stamp is not None and stamp.seen > stamp.applied:
            # What _backup_rx does for an accepted advert without effects.
            stamp.applied = stamp.seen
            self._deadline = stamp.seen + self.master_down_interval
            self.wants_master = False

    def _recheck_repeats(self) -> None:
        adv = self._repeat_adv
        if self._repeat is not None and (adv is None or not self._repeatable(adv)):
            self._repeat.live = False
            self._repeat = None
            self._repeat_adv = None

    # ------------------------------------------------------------ internals

    def _log(self, message: str, level: int = LOG_INFO) -> Log:
        return Log(level, f"({self.name}) {message}")

    def _transition(self, new: State, reason: str) -> Transition:
        old = self.state
        if new not in ALLOWED_TRANSITIONS[old]:
            raise InvalidTransition(self.name, old, new)
        self.state = new
        if new not in (State.MASTER, State.BACKUP):
            self._deadline = None
        return Transition(old, new, reason)

    def _learn_adver_int(self, adv: RxAdvert) -> list[Action]:
        if self.params.version != 3 or adv.advert_int <= 0:
            return []
        if adv.advert_int == self.master_adver_int:
            return []
        old = self.master_adver_int
        self.master_adver_int = adv.advert_int
        return [
            self._log(
                f"advertisement interval updated from {round(old * 1000)}ms to "
                f"{round(adv.advert_int * 1000)}ms by master",
                LOG_DETAIL,
            )
        ]

    def _goto_master(self, now: float, reason: str) -> list[Action]:
        actions: list[Action] = [SendAdvert(self.effective_priority)]
        if self.master_adver_int != self.params.advert_int:
            actions.append(
                self._log(
                    f"changing advert interval from {round(self.master_adver_int * 1000)}ms "
                    f"to locally configured {round(self.params.advert_int * 1000)}ms",
                    LOG_DETAIL,
                )
            )
            self.master_adver_int = self.params.advert_int
        actions.append(self._log("Entering MASTER STATE"))
        transition = self._transition(State.MASTER, reason)
        actions += [AddVips(), SendGratuitous(), transition]
        self.wants_master = True
        self.master_src = self.params.primary_ip or None
        self.master_priority = self.effective_priority
        self._owner_conflict_logged = False
        self._resigned_by = None
        self._deadline = now + self.params.advert_int
        return actions

    def _leave_master(self, now: float, new: State, reason: str) -> list[Action]:
        actions: list[Action] = []
        if new is State.BACKUP:
            actions.append(self._log("Entering BACKUP STATE"))
            self.preempt_time = None
        elif new is State.FAULT:
            actions += [
                self._log("Entering FAULT STATE"),
                SendAdvert(PRIO_STOP),
                self._log("sent 0 priority", LOG_DETAIL),
            ]
        else:  # pragma: no cover - guarded by callers
            raise InvalidTransition(self.name, self.state, new)
        actions.append(RemoveVips())
        actions.append(self._transition(new, reason))
        if new is State.BACKUP:
            self._deadline = now + self.master_down_interval
        return actions

    def _enter_fault(self, now: float, reason: str) -> list[Action]:
        self.wants_master = False
        if self.state is State.MASTER:
            return self._leave_master(now, State.FAULT, reason)
        return [self._log("Entering FAULT STATE"), self._transition(State.FAULT, reason)]

    def _leave_fault(self, now: float, reason: str) -> list[Action]:
        # keepalived's try_up_instance()/vrrp_state_leave_fault(): wantstate is
        # FAULT by then, so we always come back as BACKUP with a full
        # Master_Down_Interval based on our own advert interval.
        self.preempt_time = None
        self.master_adver_int = self.params.advert_int
        self.wants_master = False
        actions: list[Action] = [
            self._log("Entering BACKUP STATE"),
            self._transition(State.BACKUP, reason),
        ]
        self._deadline = now + self.master_down_interval
        return actions

    def _update_fault(self, now: float, reason: str) -> list[Action]:
        if self.state in (State.INIT, State.STOP):
            return []
        if self.faulted and self.state is not State.FAULT:
            return self._enter_fault(now, reason)
        if not self.faulted and self.state is State.FAULT:
            return self._leave_fault(now, reason)
        return []

    # ----------------------------------------------------------- lifecycle

    def start(self, now: float) -> list[Action]:
        """Leave INIT: go BACKUP, MASTER (address owner) or FAULT."""
        if self.state is not State.INIT:
            raise VrrpStateError(f"({self.name}) start() called in state {self.state.value}")
        if self.faulted:
            return [self._log("Entering FAULT STATE (init)"), self._transition(State.FAULT, "init")]
        initial_master = self.params.initial_state is State.MASTER
        if initial_master and self.is_owner and not self.params.in_sync_group:
            # keepalived times out of BACKUP after 1us without logging it.
            return self._goto_master(now, "address owner")
        actions: list[Action] = [
            self._log("Entering BACKUP STATE (init)"),
            self._transition(State.BACKUP, "init"),
        ]
        # A sync-group owner asks its group straight away.  Anyone else waits
        # the full Master_Down_Interval: measured with keepalived 2.2.7 in a
        # namespace lab, a non-owner configured "state MASTER" behaves like a
        # backup here (VIP after 3.46 s at advert_int 1, priority 150); it only
        # differs by ignoring nopreempt.
        owner_in_group = initial_master and self.is_owner
        self._deadline = now + (0.0 if owner_in_group else self.master_down_interval)
        return actions

    @_event
    def stop(self, now: float, reason: str = "shutdown") -> list[Action]:
        """Shut down: resign if MASTER (priority 0 advert), release VIPs -> STOP.

        ``reason`` says why (daemon shutdown, or a reload removing or
        changing the instance)."""
        if self.state is State.STOP:
            return []
        actions: list[Action] = []
        if self.state is State.MASTER:
            actions += [
                SendAdvert(PRIO_STOP),
                self._log("sent 0 priority", LOG_DETAIL),
                RemoveVips(),
            ]
        actions.append(self._log("Entering STOP STATE"))
        actions.append(self._transition(State.STOP, reason))
        self.wants_master = False
        return actions

    # -------------------------------------------------------------- events

    @_event
    def timer_expired(self, now: float) -> list[Action]:
        """Handle the timer; a call before :attr:`next_deadline` does nothing."""
        if self._deadline is None or now < self._deadline:
            return []
        if self.state is State.MASTER:
            self._deadline = now + self.params.advert_int
            return [SendAdvert(self.effective_priority)]
        if self.state is not State.BACKUP:  # pragma: no cover - deadline is None
            return []
        actions: list[Action] = [self._log("Receive advertisement timeout", LOG_DETAIL)]
        if self.params.in_sync_group:
            self.wants_master = True
            self._deadline = now + self.master_down_interval
            actions.append(WantMaster())
            return actions
        reason = "master down timer expired"
        if self._resigned_by is not None:
            reason = f"priority 0 advert from {format_ip(self._resigned_by)} (master resigned)"
        return actions + self._goto_master(now, reason)

    @_event
    def advert_received(self, now: float, adv: RxAdvert) -> list[Action]:
        """Process an advert that passed the packet checks."""
        if not 0 <= adv.priority <= PRIO_OWNER:
            raise ValueError(f"({self.name}) advert priority out of range: {adv.priority}")
        if self.state is State.BACKUP:
            return self._backup_rx(now, adv)
        if self.state is State.MASTER:
            return self._master_rx(now, adv)
        return []  # keepalived ignores adverts in INIT and FAULT

    def _backup_rx(self, now: float, adv: RxAdvert) -> list[Action]:
        # The steady state of a backup is an equal or higher advert from the
        # same master every interval: that path formats nothing and
        # allocates only the (empty) result.  Source addresses are rendered
        # only for the log lines actually produced.
        actions: list[Action] = []
        src_ip = adv.src_ip
        prio = adv.priority
        if src_ip != self.master_src:
            if self.master_src is None:
                actions.append(self._log(f"master set to {format_ip(src_ip)}", LOG_DETAIL))
            else:
                actions.append(
                    self._log(
                        f"master changed from {format_ip(self.master_src)} to {format_ip(src_ip)}",
                        LOG_DETAIL,
                    )
                )
        eff = self.effective_priority
        if prio == PRIO_STOP:
            actions.append(self._log("Backup received priority 0 advertisement", LOG_DETAIL))
            self._deadline = now + self.skew_time
            self._resigned_by = src_ip
            return actions
        preempt_delay = self.preempt_delay
        if (
            prio >= eff
            or not self.preempt
            or (preempt_delay > 0 and (self.preempt_time is None or self.preempt_time > now))
        ):
            # Accept the advert.
            if adv.advert_int != self.master_adver_int:
                actions += self._learn_adver_int(adv)
            self._deadline = now + self.master_down_interval
            self.master_src = src_ip
            self.master_priority = prio
            self._resigned_by = None
            if preempt_delay > 0:
                if prio >= eff:
                    if self.preempt_time is not None:
                        actions.append(self._log("stop preempt delay", LOG_DETAIL))
                        self.preempt_time = None
                elif self.preempt_time is None:
                    actions.append(
                        self._log(f"start preempt delay ({preempt_delay:.6f})", LOG_DETAIL)
                    )
                    self.preempt_time = now + preempt_delay
            self.wants_master = False
            return actions
        # Preempting: discard, so that the master-down timer runs out.
        actions.append(
            self._log(
                f"received lower priority ({prio}) advert from {format_ip(src_ip)} - discarding"
            )
        )
        self.master_src = src_ip
        return actions

    def _master_rx(self, now: float, adv: RxAdvert) -> list[Action]:
        actions: list[Action] = []
        eff = self.effective_priority
        src = format_ip(adv.src_ip)  # a master's adverts are rare: never the hot path
        addr_cmp = _addr_cmp(adv.src_ip, self.params.primary_ip)
        higher = adv.priority > eff or (adv.priority == eff and addr_cmp > 0)
        lower = adv.priority < eff or (adv.priority == eff and addr_cmp < 0)
        sent = False

        if adv.priority == PRIO_STOP or (self.params.higher_prio_send_advert and higher):
            actions.append(SendAdvert(eff))
            sent = True
            if adv.priority == PRIO_STOP:
                actions.append(self._log("Master received priority 0 message", LOG_DETAIL))
                self._deadline = now + self.params.advert_int
                return actions

        if adv.priority == eff:
            if addr_cmp == 0:
                actions.append(
                    self._log(
                        "WARNING - equal priority advert received from remote host "
                        "with our IP address."
                    )
                )
            elif eff == PRIO_OWNER and (addr_cmp > 0 or not self._owner_conflict_logged):
                self._owner_conflict_logged = True
                actions.append(
                    self._log(
                        f"CONFIGURATION ERROR: local instance and {src} are both "
                        "configured as address owner, please resolve"
                    )
                )

        if lower:
            suffix = "" if self.params.lower_prio_no_advert else ", forcing new election"
            actions.append(
                self._log(
                    f"Received advert from {src} with lower priority {adv.priority}, "
                    f"ours {eff}{suffix}"
                )
            )
            if not self.params.lower_prio_no_advert:
                actions.append(SendAdvert(eff))
                sent = True
            if self.params.garp_lower_prio_repeat > 0:
                actions.append(SendGratuitous(lower_prio=True))
            actions.append(ReceivedLowerPriority(adv.src_ip, adv.priority))
            if sent:
                self._deadline = now + self.params.advert_int
            return actions

        if higher:
            if adv.priority > eff and not self.is_owner:
                actions.append(
                    self._log(
                        f"Master received advert from {src} with higher priority "
                        f"{adv.priority}, ours {eff}"
                    )
                )
            else:
                actions.append(
                    self._log(
                        f"Master received advert from {src} with same priority "
                        f"{adv.priority} but higher IP address than ours"
                    )
                )
            actions += self._learn_adver_int(adv)
            self.master_src = adv.src_ip
            self.master_priority = adv.priority
            self.wants_master = False
            why = (
                f"advert from {src} with higher priority {adv.priority}"
                if adv.priority > eff
                else f"advert from {src} with same priority {adv.priority} and a higher address"
            )
            return actions + self._leave_master(now, State.BACKUP, why)

        # Equal priority from our own address: nothing more to do.
        return actions

    # ----------------------------------------------------------- trackers

    @_event
    def reconfigure(self, now: float, params: FsmParams) -> list[Action]:
        """A reload changed what a running instance keeps its state across
        (keepalived 2.2.7 keeps an instance with the same VRID, family,
        interface and unicast source): priority, advert_int, state, preempt,
        and whether it is in a sync group.
        No transition; a changed priority moves the effective one by the same
        amount (trackers' weights stay) as :meth:`set_priority` does."""
        old = self.params
        self.params = params
        if old.in_sync_group and not params.in_sync_group:
            self.wants_master = False  # out of its sync group: its own timer decides
        initial_master = params.initial_state is State.MASTER
        self.preempt = params.preempt or initial_master
        self.preempt_delay = params.preempt_delay if self.preempt and not initial_master else 0.0
        if self.state is State.MASTER or params.version == 2:
            # a master advertises its own interval; VRRPv2 has no other
            self.master_adver_int = params.advert_int
        if params.priority == old.priority:
            return []
        adjust = self.effective_priority - self.base_priority
        self.base_priority = params.priority
        return self._set_priority(params.priority + adjust)

    @_event
    def set_priority(self, now: float, effective: int) -> list[Action]:
        """Trackers changed the effective priority (address owners ignore it)."""
        return self._set_priority(effective)

    def _set_priority(self, effective: int) -> list[Action]:
        if self.is_owner or self.state is State.STOP:
            return []
        new = min(max(effective, 1), PRIO_OWNER - 1)
        old = self.effective_priority
        if new == old:
            return []
        old_skew = self.skew_time
        self.effective_priority = new
        if self.state is State.BACKUP and self._deadline is not None:
            # keepalived moves the running master-down timer by the change
            # in Master_Down_Interval, i.e. by the change in skew.
            self._deadline += self.skew_time - old_skew
        return [
            self._log(f"Changing effective priority from {old} to {new}"),
            PriorityChanged(old, new),
        ]

    @_event
    def set_fault(self, now: float, faulted: bool, reason: str = "") -> list[Action]:
        """Own fault (interface down, tracker with weight 0) set or cleared;
        ``reason`` names the trackers (the transition's reason)."""
        self._own_fault = faulted
        return self._update_fault(now, reason or ("fault" if faulted else "fault cleared"))

    # ---------------------------------------------------------- sync group

    @_event
    def set_group_fault(self, now: float, faulted: bool) -> list[Action]:
        """Another sync-group member is (no longer) in FAULT."""
        self._group_fault = faulted
        return self._update_fault(
            now, "sync group fault" if faulted else "sync group fault cleared"
        )

    @_event
    def force_master(self, now: float, reason: str) -> list[Action]:
        """Sync group pushes this BACKUP member to MASTER (no-op otherwise)."""
        if self.state is not State.BACKUP:
            return []
        return self._goto_master(now, f"sync group: {reason}")

    @_event
    def force_backup(self, now: float, reason: str) -> list[Action]:
        """Sync group pulls this MASTER member back to BACKUP (no-op otherwise)."""
        if self.state is not State.MASTER:
            return []
        self.wants_master = False
        return self._leave_master(now, State.BACKUP, f"sync group: {reason}")
