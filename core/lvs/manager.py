"""Virtual servers: real-server health, weights, quorum, and the IPVS table.

The manager here is pure bookkeeping plus one push: it receives checker
results, decides which real servers are in service with which weight, and
hands the whole *desired* table to an IPVS backend.  The backend (see
:mod:`pykeepalived.core.lvs.ipvs`) makes the kernel match it.

Desired-table contract (stable; the IPVS backend is written against it):

* :class:`IpvsService` is one kernel virtual service (keyed by
  :attr:`IpvsService.key`), :class:`IpvsDest` one real server of it (keyed by
  :attr:`IpvsDest.key`).
* ``backend.apply(services)`` receives the complete list of services that
  pykeepalived wants; services it does not list and that it created before
  must be removed, destinations likewise.  It may return an awaitable (the
  manager awaits it).  It is called after every change, and with ``[]`` on
  shutdown (keepalived removes its virtual servers when it stops).
* A destination with ``weight == 0`` stays in the table (keepalived's
  inhibit_on_failure, and a real server configured with weight 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import ipaddress
import itertools
import logging
import random
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from pykeepalived.core.config.model import Config, RealServer, VirtualServer, VirtualServerGroup
from pykeepalived.core.config.schema import IPAddress
from pykeepalived.core.lvs.checking import CheckScheduler, cancel_all, resolve
from pykeepalived.core.plugin.base import Checker, CheckResult, EventKind, StateEvent

log = logging.getLogger("pykeepalived.lvs")


class Forward(enum.StrEnum):
    """IPVS packet-forwarding method (keepalived's lb_kind / lvs_method)."""

    NAT = "NAT"  # masquerading
    DR = "DR"  # direct routing (gatewaying)
    TUN = "TUN"  # IP-in-IP tunnelling


@dataclass
class IpvsDest:
    """One real server of a virtual service."""

    address: IPAddress
    port: int
    weight: int = 1
    forward: Forward = Forward.NAT
    #: Upper/lower connection thresholds; 0 means no limit (ipvsadm -x / -y).
    uthreshold: int = 0
    lthreshold: int = 0

    @property
    def key(self) -> tuple[IPAddress, int]:
        return (self.address, self.port)

    @property
    def family(self) -> int:
        return self.address.version


@dataclass
class IpvsService:
    """One IPVS virtual service: ``address:port/protocol`` or ``fwmark``.

    ``address``/``port`` are None for a fwmark service; ``family`` (4 or 6)
    then tells the kernel table to use (keepalived takes it from the real
    servers).  ``flags`` are scheduler flags in keepalived's words
    (``sh-port``, ``sh-fallback``, ``mh-port``, ``mh-fallback``, ``flag-1``..).
    ``persistence_timeout`` None: not persistent.  ``persistence_granularity``
    is the netmask (IPv4 dotted or IPv6 prefix length as text) or None.
    """

    protocol: str  # "TCP", "UDP" or "SCTP"
    address: IPAddress | None
    port: int | None
    fwmark: int | None = None
    scheduler: str = "wlc"
    flags: list[str] = field(default_factory=list)
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    ops: bool = False
    destinations: list[IpvsDest] = field(default_factory=list)
    family: int = 4

    @property
    def key(self) -> tuple[str, IPAddress | None, int | None, int | None, int]:
        return (self.protocol, self.address, self.port, self.fwmark, self.family)

    @property
    def label(self) -> str:
        """keepalived's way of naming a service in log lines."""
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        return f"[{self.address}]:{self.protocol.lower()}:{self.port}"


class IpvsBackend(Protocol):
    """What the virtual-server manager pushes the desired table to."""

    def apply(self, services: list[IpvsService]) -> object:
        """Make the kernel table match ``services``; may return an awaitable."""
        ...


class NullBackend:
    """No IPVS here: checks still run and events still fire."""

    def __init__(self) -> None:
        self._told = False
        self.services: list[IpvsService] = []

    def apply(self, services: list[IpvsService]) -> None:
        if not self._told:
            log.warning("IPVS is not available in this kernel; checking only")
            self._told = True
        self.services = list(services)


# -- state ------------------------------------------------------------------------------

#: IPVS weights are 0..65535 (keepalived's real_weight clamps to this range).
IPVS_WEIGHT_MAX = 65535
#: Minimum seconds between two pushes of the table to the backend.
PUSH_INTERVAL = 0.05
#: Expanding a virtual_server_group range or prefix stops here.
MAX_GROUP_ADDRESSES = 65536

Emit = Callable[[StateEvent], None]
CheckKey = tuple[int, int, int]  # (virtual server, real server, checker) indexes


def fmt_server(address: IPAddress | None, protocol: str, port: int | None) -> str:
    """keepalived's FMT_RS: ``[192.0.2.21]:tcp:80``."""
    # A fwmark service has no protocol: keepalived prints "none".
    return f"[{address}]:{(protocol or 'none').lower()}:{port if port is not None else 0}"


@dataclass(eq=False)
class RealServerState:
    conf: RealServer
    label: str
    port: int
    forward: Forward
    inhibit: bool
    #: Checker index -> up; a real server is alive when none is down.
    checkers: dict[int, bool] = field(default_factory=dict)
    #: Checker index -> weight change asked for (MISC_CHECK misc_dynamic, FILE_CHECK).
    deltas: dict[int, int] = field(default_factory=dict)
    alpha: dict[int, bool] = field(default_factory=dict)
    alive: bool = True

    @property
    def failed(self) -> int:
        return sum(1 for up in self.checkers.values() if not up)

    @property
    def weight(self) -> int:
        return max(0, min(IPVS_WEIGHT_MAX, self.conf.weight + sum(self.deltas.values())))


@dataclass(eq=False)
class VirtualServerState:
    conf: VirtualServer
    label: str
    services: list[IpvsService]
    reals: list[RealServerState]
    quorum: int
    hysteresis: int
    quorum_up: bool = True
    sorry_active: bool = False
    suspended: bool = False

    #: Sum of the weights of live real servers, kept up to date by the
    #: manager (a VS may have thousands of real servers; results arrive
    #: thousands a second).
    live_weight: int = 0

    def recompute_weight(self) -> None:
        self.live_weight = sum(r.weight for r in self.reals if r.alive)

    def weight_sum(self) -> int:
        return self.live_weight


class VirtualServerManager:
    """Virtual servers of one configuration: health, weights, quorum, IPVS.

    Built from a :class:`Config` and the registry's checker classes; the
    daemon calls :meth:`start`, :meth:`stop` and :meth:`set_vrrp_master`.
    State changes are emitted, in order, as :class:`StateEvent` through
    ``emit``; the desired table goes to ``backend.apply`` after each change
    (coalesced: a burst of changes is one push).
    """

    def __init__(
        self,
        config: Config,
        checkers: Mapping[str, type[Checker]],
        *,
        backend: IpvsBackend | None = None,
        emit: Emit | None = None,
        rng: random.Random | None = None,
        apply_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.backend: IpvsBackend = backend if backend is not None else NullBackend()
        self._emit = emit or (lambda event: None)
        self._seq = itertools.count(1)
        self.scheduler = CheckScheduler(self._checker_changed, rng=rng)
        self.apply_timeout = apply_timeout
        self.virtual_servers: list[VirtualServerState] = []
        self._dirty = asyncio.Event()
        self._pushed = 0
        self._wanted = 0
        self._pusher: asyncio.Task[None] | None = None
        #: The table push in progress (shielded from the pusher's cancellation).
        self._inflight: asyncio.Task[None] | None = None
        self._master = False
        groups = {g.name: g for g in config.virtual_server_groups}
        for vs in config.virtual_servers:
            state = self._build_vs(vs, groups)
            if state is None:
                continue
            self.virtual_servers.append(state)
            self._build_checks(len(self.virtual_servers) - 1, state, checkers)

    # -- building ----------------------------------------------------------------------

    def _build_vs(
        self, vs: VirtualServer, groups: Mapping[str, VirtualServerGroup]
    ) -> VirtualServerState | None:
        label = vs.label
        reals: list[RealServerState] = []
        seen: set[tuple[IPAddress, int]] = set()
        for rs in vs.real_servers:
            port = rs.port if rs.port is not None else (vs.port or 0)
            if vs.fwmark is not None or (vs.group is not None and rs.port is None):
                port = rs.port or 0
            if (rs.address, port) in seen:
                log.warning(
                    "VS %s: real server %s is duplicated - removing second rs",
                    label,
                    fmt_server(rs.address, vs.protocol, port),
                )
                continue
            seen.add((rs.address, port))
            inhibit = (
                rs.inhibit_on_failure
                if rs.inhibit_on_failure is not None
                else vs.inhibit_on_failure
            )
            reals.append(
                RealServerState(
                    rs,
                    fmt_server(rs.address, vs.protocol, port),
                    port,
                    Forward(rs.lvs_method or vs.lb_kind),
                    bool(inhibit),
                )
            )
        services = list(self._expand(vs, groups, reals))
        if vs.group is not None and not services:
            log.warning(
                "Virtual server group %s specified but not configured - ignoring virtual server %s",
                vs.group,
                label,
            )
            return None
        # Quorum above the total weight and hysteresis >= quorum were
        # corrected with the configuration (core/config/lvs_checks.py), as
        # keepalived 2.2.7 does; correcting again would undo its unsigned
        # 0 - 1 for a pool of weight 0.
        quorum, hysteresis = vs.quorum, vs.hysteresis
        return VirtualServerState(
            vs, label, services, reals, quorum, hysteresis, suspended=vs.ha_suspend
        )

    def _expand(
        self,
        vs: VirtualServer,
        groups: Mapping[str, VirtualServerGroup],
        reals: list[RealServerState],
    ) -> Iterator[IpvsService]:
        """The kernel services of one virtual server (a group becomes many)."""
        rs_family = reals[0].conf.address.version if reals else 4

        def service(address: IPAddress | None, port: int | None, fwmark: int | None) -> IpvsService:
            family = address.version if address is not None else rs_family
            return IpvsService(
                protocol=vs.protocol,
                address=address,
                port=port if fwmark is None else None,
                fwmark=fwmark,
                scheduler=vs.lb_algo,
                flags=list(vs.sched_flags),
                persistence_timeout=vs.persistence_timeout,
                persistence_granularity=vs.persistence_granularity,
                ops=vs.ops,
                family=family,
            )

        if vs.group is None:
            yield service(vs.address, vs.port, vs.fwmark)
            return
        group = groups.get(vs.group)
        if group is None:
            return
        for entry in group.entries:
            if entry.fwmark is not None:
                yield service(None, None, entry.fwmark)
                continue
            if entry.first is None:
                continue
            if entry.prefix is not None:
                net = ipaddress.ip_network(f"{entry.first}/{entry.prefix}", strict=False)
                addresses: Iterator[IPAddress] = iter(net)
            else:
                last = entry.last if entry.last is not None else entry.first
                addresses = (
                    ipaddress.ip_address(n) for n in range(int(entry.first), int(last) + 1)
                )
            for address in itertools.islice(addresses, MAX_GROUP_ADDRESSES):
                yield service(address, entry.port if entry.port is not None else vs.port, None)

    def _build_checks(
        self, vi: int, state: VirtualServerState, classes: Mapping[str, type[Checker]]
    ) -> None:
        for ri, real in enumerate(state.reals):
            for ci, conf in enumerate(real.conf.checkers):
                cls = classes.get(conf.kind)
                if cls is None:
                    log.error(
                        "%s: no checker plugin provides %s - ignoring it", conf.place, conf.kind
                    )
                    continue
                resolved, target = resolve(conf, real.conf, state.conf, cls)
                try:
                    checker = cls(resolved, target)
                except Exception as exc:  # a plugin's constructor: report, carry on
                    log.error(
                        "%s: %s cannot be set up: %s - ignoring it", conf.place, conf.kind, exc
                    )
                    continue
                checker.real_server_weight = real.conf.weight
                try:
                    checker.configure(self.config)
                except Exception as exc:
                    log.error(
                        "%s: %s cannot be set up: %s - ignoring it", conf.place, conf.kind, exc
                    )
                    continue
                alpha = bool(getattr(resolved.options, "alpha", False))
                real.checkers[ci] = not alpha
                real.alpha[ci] = alpha
                self.scheduler.add((vi, ri, ci), checker)
            # keepalived (init_service_rs): in alpha mode a real server is not
            # added to the pool until its checks succeed.
            real.alive = real.failed == 0

    # -- lifecycle ------------------------------------------------------------------------

    def inherit(self, old: VirtualServerManager) -> int:
        """Reload: real servers that exist in both configurations keep their
        health (keepalived keeps a checked server's state across SIGHUP),
        so a server that was down is not put back in service by a reload.
        Returns how many real servers were carried over."""
        before = {(vs.label, real.label): real for vs in old.virtual_servers for real in vs.reals}
        carried = 0
        for vi, vs in enumerate(self.virtual_servers):
            for ri, real in enumerate(vs.reals):
                prev = before.get((vs.label, real.label))
                if prev is None:
                    continue
                real.alive = prev.alive
                if set(prev.checkers) == set(real.checkers):
                    real.checkers = dict(prev.checkers)
                    real.deltas = dict(prev.deltas)
                    # the new checks start from the verdicts they inherit
                    for ci, up in real.checkers.items():
                        run = self.scheduler.run_for((vi, ri, ci))
                        if run is not None:
                            run.is_up, run.has_run = up, True
                carried += 1
        return carried

    async def start(self) -> None:
        for vs in self.virtual_servers:
            vs.recompute_weight()
            vs.quorum_up = vs.weight_sum() >= vs.quorum + vs.hysteresis
            if vs.quorum_up:
                # keepalived starts each virtual server with quorum DOWN, so a
                # pool that is big enough "gains" quorum at start-up: the same
                # line, and quorum_up runs (measured against 2.2.7 in the VM).
                threshold = vs.quorum + vs.hysteresis
                line = f"Gained quorum {vs.quorum}+{vs.hysteresis}={threshold} <= {vs.weight_sum()}"
                log.info("%s for VS %s", line, vs.label)
                self._vs_event(vs, "UP", "DOWN", line)
            if not vs.quorum_up and vs.conf.sorry_server is not None:
                threshold = vs.quorum - vs.hysteresis
                log.info(
                    "Starting with quorum down %d-%d=%d > %d for VS %s",
                    vs.quorum,
                    vs.hysteresis,
                    threshold,
                    vs.weight_sum(),
                    vs.label,
                )
                self._sorry(vs, True)
                self._vs_event(vs, "DOWN", None, "Starting with quorum down")
        self._sync_suspension()
        self._pusher = asyncio.get_running_loop().create_task(
            self._push_loop(), name="lvs ipvs push"
        )
        self._changed()
        self.scheduler.start()

    async def stop(self, *, remove_services: bool = True) -> None:
        """Stop checking.  ``remove_services=False`` (reload) leaves the IPVS
        table as it is, so the next manager's table is applied as a diff and
        live connections survive."""
        await self.scheduler.stop()
        if self._pusher is not None:
            await cancel_all({self._pusher})
            self._pusher = None
        # A push handed to the kernel finishes: cancelled half-way, its netlink
        # operations could land after the shutdown's own, leaving services
        # behind (seen in the ipvs VM test on a slow machine).
        if self._inflight is not None and not self._inflight.done():
            with contextlib.suppress(Exception):
                await self._inflight
        self._inflight = None
        if not remove_services:
            return
        for vs in self.virtual_servers:
            for real in vs.reals:
                log.info("Shutting down service %s from VS %s", real.label, vs.label)
        await self._apply([])

    def set_vrrp_master(self, master: bool) -> None:
        """ha_suspend: checks of those virtual servers run only while MASTER."""
        self._master = master
        self._sync_suspension()

    def _sync_suspension(self) -> None:
        for vi, vs in enumerate(self.virtual_servers):
            if not vs.conf.ha_suspend:
                continue
            vs.suspended = not self._master
            keys: list[Hashable] = [
                (vi, ri, ci) for ri, r in enumerate(vs.reals) for ci in r.checkers
            ]
            if vs.suspended:
                self.scheduler.suspend(keys)
            else:
                self.scheduler.resume(keys)

    # -- the desired table ------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        """Live state of every virtual server, for the status socket."""
        return [
            {
                "virtual_server": vs.label,
                "quorum": vs.quorum,
                "hysteresis": vs.hysteresis,
                "quorum_up": vs.quorum_up,
                "sorry_server_active": vs.sorry_active,
                "suspended": vs.suspended,
                "weight_sum": vs.weight_sum(),
                "real_servers": [
                    {"real_server": r.label, "alive": r.alive, "weight": r.weight} for r in vs.reals
                ],
            }
            for vs in self.virtual_servers
        ]

    def table(self) -> list[IpvsService]:
        out: list[IpvsService] = []
        for vs in self.virtual_servers:
            dests = self._dests(vs)
            for svc in vs.services:
                if vs.conf.group is not None:
                    out.append(_with_dests(svc, _entry_ports(svc, dests)))
                else:
                    out.append(_with_dests(svc, dests))
        return out

    def _dests(self, vs: VirtualServerState) -> list[IpvsDest]:
        dests: dict[tuple[IPAddress, int], IpvsDest] = {}
        for real in vs.reals:
            if real.alive and not vs.sorry_active:
                weight = real.weight
            elif real.inhibit:
                weight = 0
            else:
                continue
            dest = IpvsDest(
                real.conf.address,
                real.port,
                weight,
                real.forward,
                real.conf.uthreshold or 0,
                real.conf.lthreshold or 0,
            )
            dests.setdefault(dest.key, dest)
        sorry = vs.conf.sorry_server
        if sorry is not None and (vs.sorry_active or vs.conf.sorry_server_inhibit):
            port = sorry.port if sorry.port is not None else (vs.conf.port or 0)
            forward = Forward(vs.conf.sorry_server_lvs_method or vs.conf.lb_kind)
            dest = IpvsDest(sorry.address, port, 1 if vs.sorry_active else 0, forward)
            if vs.sorry_active:
                dests[dest.key] = dest
            else:
                dests.setdefault(dest.key, dest)
        return list(dests.values())

    def _changed(self) -> None:
        self._wanted += 1
        self._dirty.set()

    async def settled(self) -> None:
        """Wait until the table pushed to the backend reflects every change so far."""
        while self._pushed < self._wanted:
            await asyncio.sleep(0.005)

    async def _push_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wanted = self._wanted
            self._inflight = asyncio.get_running_loop().create_task(
                self._apply(self.table()), name="lvs ipvs apply"
            )
            await asyncio.shield(self._inflight)
            self._pushed = wanted
            # One push per PUSH_INTERVAL at most: a storm of results (startup
            # of thousands of checks) becomes a few table pushes.
            await asyncio.sleep(PUSH_INTERVAL)

    async def _apply(self, services: list[IpvsService]) -> None:
        try:
            result = self.backend.apply(services)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, self.apply_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the kernel said no: log, keep checking
            log.error("IPVS update failed: %s: %s", type(exc).__name__, exc)

    # -- checker results (the pure part) ---------------------------------------------------------

    def _checker_changed(
        self, keys: list[Hashable], up: bool, result: CheckResult, first: bool
    ) -> None:
        for key in keys:
            assert isinstance(key, tuple)
            vi, ri, ci = key
            self.checker_result(int(vi), int(ri), int(ci), up, result, first)

    def checker_result(
        self, vi: int, ri: int, ci: int, up: bool, result: CheckResult, first: bool = False
    ) -> None:
        """Apply one checker's verdict to its real server (keepalived's
        update_svr_checker_state / perform_svr_state / update_quorum_state)."""
        vs = self.virtual_servers[vi]
        real = vs.reals[ri]
        was_up = real.checkers.get(ci, True)
        old_weight = real.weight
        before = (real.alive, old_weight, vs.sorry_active, vs.quorum_up)
        vs.live_weight -= old_weight if real.alive else 0
        if up and result.weight is not None:
            real.deltas[ci] = result.weight - real.conf.weight
        new_weight = real.weight
        if new_weight != old_weight:
            log.info(
                "Changing weight from %d to %d for %sactive service %s of VS %s",
                old_weight,
                new_weight,
                "" if real.alive else "in",
                real.label,
                vs.label,
            )
        real.checkers[ci] = up
        alive = real.failed == 0
        if alive != real.alive:
            self._set_alive(vs, real, alive)
        elif first and was_up == up and (real.alpha.get(ci) or not up):
            # keepalived notifies the first verdict of an alpha checker even
            # when it does not change the real server's state.
            self._rs_event(vs, real)
        vs.live_weight += real.weight if real.alive else 0
        self._update_quorum(vs)
        if (real.alive, real.weight, vs.sorry_active, vs.quorum_up) != before:
            self._changed()

    def _set_alive(self, vs: VirtualServerState, real: RealServerState, alive: bool) -> None:
        if alive:
            verb, prep = ("Enabling", "of") if real.inhibit else ("Adding", "to")
        else:
            verb, prep = ("Disabling", "of") if real.inhibit else ("Removing", "from")
        log.info("%s service %s %s VS %s", verb, real.label, prep, vs.label)
        real.alive = alive
        self._rs_event(vs, real, previous="DOWN" if alive else "UP")

    def _update_quorum(self, vs: VirtualServerState) -> None:
        weight_sum = vs.weight_sum()
        if not vs.quorum_up:
            threshold = vs.quorum + vs.hysteresis
            if weight_sum >= threshold:
                vs.quorum_up = True
                line = f"Gained quorum {vs.quorum}+{vs.hysteresis}={threshold} <= {weight_sum}"
                log.info("%s for VS %s", line, vs.label)
                if vs.sorry_active:
                    self._sorry(vs, False)
                self._vs_event(vs, "UP", "DOWN", line)
        else:
            threshold = vs.quorum - vs.hysteresis
            if not weight_sum or weight_sum < threshold:
                vs.quorum_up = False
                line = f"Lost quorum {vs.quorum}-{vs.hysteresis}={threshold} > {weight_sum}"
                log.info("%s for VS %s", line, vs.label)
                if vs.conf.sorry_server is not None and not vs.sorry_active:
                    self._sorry(vs, True)
                self._vs_event(vs, "DOWN", "UP", line)

    def _sorry(self, vs: VirtualServerState, active: bool) -> None:
        sorry = vs.conf.sorry_server
        assert sorry is not None
        port = sorry.port if sorry.port is not None else vs.conf.port
        label = fmt_server(sorry.address, vs.conf.protocol, port)
        inhibit = vs.conf.sorry_server_inhibit
        if active:
            log.info(
                "%s sorry server %s to VS %s", "Enabling" if inhibit else "Adding", label, vs.label
            )
            log.info("Removing alive servers from the pool for VS %s", vs.label)
        else:
            log.info(
                "%s sorry server %s from VS %s",
                "Disabling" if inhibit else "Removing",
                label,
                vs.label,
            )
            log.info("Adding alive servers to the pool for VS %s", vs.label)
        vs.sorry_active = active

    # -- events --------------------------------------------------------------------------------

    def _rs_event(
        self, vs: VirtualServerState, real: RealServerState, previous: str | None = None
    ) -> None:
        state = "UP" if real.alive else "DOWN"
        self._send(
            StateEvent(
                EventKind.REAL_SERVER,
                real.label,
                state,
                previous=previous,
                seq=next(self._seq),
                subject=real.conf,
                virtual_server=vs.conf,
                real_server=real.conf,
                detail=vs.label,
            )
        )

    def _vs_event(
        self, vs: VirtualServerState, state: str, previous: str | None, detail: str
    ) -> None:
        self._send(
            StateEvent(
                EventKind.VIRTUAL_SERVER,
                vs.label,
                state,
                previous=previous,
                seq=next(self._seq),
                subject=vs.conf,
                virtual_server=vs.conf,
                detail=detail,
            )
        )

    def _send(self, event: StateEvent) -> None:
        try:
            self._emit(event)
        except Exception:  # the consumer's bug must not stop health checking
            log.exception("event handler failed for %s %s", event.name, event.state)


def _entry_ports(svc: IpvsService, dests: list[IpvsDest]) -> list[IpvsDest]:
    """keepalived 2.2.7 (ipvswrapper.c, a group's entries): a real or sorry
    server that is not NAT is programmed with each entry's port (0 for a
    fwmark entry), whatever port it was given; NAT ones keep their own."""
    port = (svc.port or 0) if svc.fwmark is None else 0
    return [d if d.forward is Forward.NAT else replace(d, port=port) for d in dests]


def _with_dests(svc: IpvsService, dests: list[IpvsDest]) -> IpvsService:
    out = IpvsService(
        svc.protocol,
        svc.address,
        svc.port,
        svc.fwmark,
        svc.scheduler,
        list(svc.flags),
        svc.persistence_timeout,
        svc.persistence_granularity,
        svc.ops,
        [d for d in dests if d.family == svc.family] if svc.fwmark is None else list(dests),
        svc.family,
    )
    return out


__all__ = [
    "Forward",
    "IpvsBackend",
    "IpvsDest",
    "IpvsService",
    "NullBackend",
    "RealServerState",
    "VirtualServerManager",
    "VirtualServerState",
    "fmt_server",
]
