"""What plugin classes implement: checkers, trackers, notifiers, actions.

The async rule (pluggy has none): hook functions are plain functions.
Those that are allowed to do I/O may return an awaitable; the core awaits
each plugin's result on its own, under a timeout, and an exception or
timeout is logged with the plugin's name and never reaches another plugin,
the adverts or the state machine.  Plugin *classes* below expose ``async``
methods that the core calls in the same isolated way.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pykeepalived.core.config.model import CheckerConf, Config, RealServer, VirtualServer


# -- real-server checkers -----------------------------------------------------------


@dataclass(frozen=True)
class CheckTarget:
    """Where a checker connects; keepalived's connect_ip/connect_port override."""

    address: str
    port: int | None
    protocol: str = "TCP"
    virtual_server: str = ""  # label of the VS, for log lines
    bind_address: str | None = None
    bind_port: int | None = None
    bind_interface: str | None = None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str = ""
    #: MISC_CHECK misc_dynamic: a new weight for the real server.
    weight: int | None = None


class Checker(ABC):
    """A health check of one real server (``TCP_CHECK { ... }`` and friends).

    The core owns the schedule: it calls :meth:`check` every delay_loop,
    under ``timeout`` seconds, retries ``retry`` times ``delay_before_retry``
    apart, and decides up/down.  ``check`` makes one attempt.
    """

    #: Keyword in real_server that configures this checker (``TCP_CHECK``).
    keyword: ClassVar[str]
    #: keepalived.conf(5) defaults of the schedule when neither the checker block
    #: nor its real/virtual server sets them; None for delay_before_retry means
    #: "delay_loop" (HTTP_GET, SSL_GET).
    default_retry: ClassVar[int] = 1
    default_delay_before_retry: ClassVar[float | None] = 1.0
    #: Checkers that watch rather than probe (FILE_CHECK) poll at this pace,
    #: without retries or warmup.
    fixed_delay_loop: ClassVar[float | None] = None

    #: The checker block as parsed and resolved (common options filled in).
    conf: CheckerConf
    #: Where to connect (connect_ip/connect_port or the real server).
    target: CheckTarget
    #: The real server's configured weight (set by the core before configure()).
    real_server_weight: int

    def __init__(self, conf: CheckerConf, target: CheckTarget) -> None:
        self.conf = conf
        self.target = target
        self.real_server_weight = 1

    def configure(self, config: Config) -> None:  # noqa: B027 - optional hook
        """Called once after construction with the whole configuration, before
        the first check (SSL_GET reads the top-level ``SSL`` block, FILE_CHECK
        its track_file).  Raising drops this checker with an error at its place."""

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take (connect_timeout, misc_timeout, ...)."""
        value = getattr(self.conf.options, "connect_timeout", None)
        return float(value) if value is not None else 5.0

    @property
    def identity(self) -> tuple[Any, ...]:
        """Checks with equal identities run once and feed every real server.

        The virtual server's label is only for log lines: the same check of
        the same endpoint from several virtual servers is one check
        (keepalived issue #2111)."""
        return (
            self.keyword,
            dataclasses.replace(self.target, virtual_server=""),
            repr(self.conf.options),
        )

    @abstractmethod
    async def check(self) -> CheckResult:
        """One attempt. Raise or return ok=False on failure; never block."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, sockets) on unconfigure."""


# -- VRRP trackers -------------------------------------------------------------------


@dataclass(frozen=True)
class TrackStatus:
    """What a tracker reports.  ``value`` is used by value trackers (track_file)."""

    up: bool
    value: int = 0
    reason: str = ""


class Tracker(ABC):
    """Something VRRP instances track: a script, a process, an interface, a file.

    One tracker object exists per configured tracked object (one per
    ``vrrp_script NAME``); instances refer to it by ``(family, name)``.
    Its life, driven by the core on the main loop:

    1. ``cls(name, conf, on_change)`` with the named definition found in
       ``Config.ext[config_key]`` (``vrrp_script NAME {...}``);
    2. :meth:`configure` with the whole configuration;
    3. :meth:`run` as a task (restarted with a back-off if it raises);
       the tracker calls :meth:`report` whenever its status changes;
    4. at stop or reload: the task is cancelled, then :meth:`close` awaited.

    While :attr:`pending` is true the tracker has not observed anything yet:
    it neither adds nor faults (keepalived's script "init" state).
    """

    #: Tracker family: "script", "process", "interface", "file", ...
    family: ClassVar[str]
    #: Value trackers contribute value * weight instead of a up/down weight.
    value_based: ClassVar[bool] = False
    #: Where the named definitions of this family live in ``Config.ext``
    #: (None: the core's default for the family, e.g. ``vrrp_script``).
    config_key: ClassVar[str | None] = None

    #: The tracked object's name (``chk_haproxy``) and its parsed definition.
    name: str
    conf: Any
    #: True until the first observation (see above).
    pending: bool
    #: The last reported status; read by the core.
    status: TrackStatus

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        self.name = name
        self.conf = conf
        self._on_change = on_change
        self.pending = False
        self.status = TrackStatus(up=self.initial_up(), reason="initial")

    def configure(self, config: Config) -> None:  # noqa: B027 - optional hook
        """Called once before :meth:`run` with the whole configuration."""

    def initial_up(self) -> bool:
        return True

    @property
    def weight(self) -> int:
        """The tracker's own weight (a track_* reference may override it)."""
        return int(getattr(self.conf, "weight", 0) or 0)

    @property
    def reverse(self) -> bool:
        return bool(getattr(self.conf, "reverse", False))

    def report(self, status: TrackStatus) -> None:
        changed = status.up != self.status.up or status.value != self.status.value
        self.status = status
        if changed:
            self._on_change(self)

    @abstractmethod
    async def run(self) -> None:
        """Watch forever; cancelled on shutdown or reload."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources after the run task was cancelled (awaited under 5 s)."""


class WatchTracker(Tracker):
    """A tracker that is :attr:`pending` until its first real observation.

    Subclasses call :meth:`settle` with each observation: the first one
    always notifies (so the core learns that the tracker is no longer
    pending), later ones only on change.
    """

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        super().__init__(name, conf, on_change)
        self.pending = True

    def settle(self, status: TrackStatus) -> None:
        if self.pending:
            self.pending = False
            self.status = status
            self._on_change(self)
        else:
            self.report(status)


# -- events, notifiers and actions --------------------------------------------------


class EventKind(enum.Enum):
    INSTANCE = "INSTANCE"
    GROUP = "GROUP"
    REAL_SERVER = "RS"
    VIRTUAL_SERVER = "VS"


#: ``StateEvent.state`` of an INSTANCE event: another MASTER for the same
#: virtual router was found on the wire (pykeepalived; ``detail`` names it).
SPLIT_BRAIN = "SPLIT_BRAIN"
#: ``StateEvent.state`` of an INSTANCE event: that other MASTER is gone, or
#: this instance is no longer MASTER (``detail`` says which).
SPLIT_BRAIN_CLEARED = "SPLIT_BRAIN_CLEARED"


@dataclass(frozen=True)
class StateEvent:
    """One state change, delivered to notifiers and actions in order.

    ``state`` is keepalived's word: MASTER, BACKUP, FAULT, STOP, DELETED,
    MASTER_RX_LOWER_PRI for VRRP; UP/DOWN for real servers and virtual
    server quorum; and pykeepalived's :data:`SPLIT_BRAIN` /
    :data:`SPLIT_BRAIN_CLEARED` for VRRP instances (reports, not states:
    the instance stays MASTER).
    """

    kind: EventKind
    name: str
    state: str
    priority: int = 0
    previous: str | None = None
    seq: int = 0
    timestamp: float = field(default_factory=time.time)
    router_id: str = ""
    #: The configuration object the event is about (VrrpInstance, SyncGroup, ...).
    subject: Any = None
    #: For real servers: the virtual server the event is about.
    virtual_server: VirtualServer | None = None
    real_server: RealServer | None = None
    detail: str = ""


class Notifier(ABC):
    """Receives every state event (notify scripts, FIFO, SMTP, ...).

    Built once per configuration with the whole :class:`Config`; events of
    one subject arrive in order.  ``notify`` must not block the event loop;
    the core runs it under a timeout.
    """

    #: Shown in log lines; the class name when empty.
    name: ClassVar[str] = ""
    #: Seconds the core waits for one notify() before logging a timeout.
    #: A plain attribute: an instance may set its own from its configuration
    #: (e.g. script_timeout), so it is not a ClassVar.
    timeout: float = 30.0
    #: The configuration this notifier was built for.
    config: Config

    def __init__(self, config: Config) -> None:
        self.config = config

    def wants(self, event: StateEvent) -> bool:
        """Cheap filter; notifiers not configured for an event return False."""
        return True

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Called once after construction, on the main loop, before the first
        event is delivered (under 10 s); e.g. open FIFOs, start readers."""

    @abstractmethod
    async def notify(self, event: StateEvent) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources on unconfigure."""


class Action(Notifier):
    """A notifier that changes the host (reload a service, rebind to a VIP)."""
