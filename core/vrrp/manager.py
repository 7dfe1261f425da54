"""All VRRP instances of a configuration: sockets, sync groups, trackers, reload.

Sync groups follow keepalived: a member whose master-down timer expires
only becomes MASTER when every member wants to (or the group already is
MASTER); a member leaving MASTER pulls the others to BACKUP; a member in
FAULT holds the others in FAULT.

``vrrp_startup_delay`` follows keepalived 2.2.7 (vrrp_daemon.c,
vrrp_scheduler.c): "Delaying startup for N seconds" is logged, instances
enter BACKUP (init) at once, but no master-down timer may expire before the
delay is over plus the instance's own timer, so nobody sends an advert or
becomes MASTER during the delay; an address owner stays silent until the
delay ends, then becomes MASTER.  A reload does not delay again (instances
added while the first delay still runs wait for its end).  Unlike
keepalived, adverts that arrive during the delay are not read (keepalived
reads them, but they cannot move a timer before the end of the delay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pykeepalived.core.config.model import Config, SyncGroup, VrrpInstance, resolved
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.vrrp.fsm import State, Transition, WantMaster
from pykeepalived.core.vrrp.instance import Instance
from pykeepalived.core.vrrp.io import Handler, Receiver
from pykeepalived.core.vrrp.nft_accept import AcceptFirewall, InstanceRules
from pykeepalived.core.vrrp.splitbrain import Prober, SplitBrain, split_brain_actions, watch
from pykeepalived.core.vrrp.vmac import EXT_MAC, VmacManager

log = logging.getLogger("pykeepalived.vrrp")

#: Seconds stop() waits for queued route/rule removals; inside the daemon's
#: 10 s shutdown budget (core/shell/daemon.py SHUTDOWN_TIMEOUT).
ROUTES_DRAIN_TIMEOUT = 8.0


class VrrpManager:
    def __init__(self, netlink: Netlink, emit: Callable[[StateEvent], None]) -> None:
        self.netlink = netlink
        self.emit = emit
        self.instances: dict[str, Instance] = {}
        self.receivers: dict[tuple[str, int], Receiver] = {}
        self.group_of: dict[str, list[str]] = {}
        self.group_name: dict[str, SyncGroup] = {}
        self.group_state: dict[str, str] = {}
        self._dirty_groups: set[str] = set()
        self.config: Config | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncing = False
        self.vmacs = VmacManager(netlink)
        #: no_accept/strict instances' drop rules (nft_accept.py)
        self.firewall = AcceptFirewall(netlink.ifindex)
        #: split-brain watches by instance name, probe sockets by interface
        self.split_brains: dict[str, SplitBrain] = {}
        self.probers: dict[str, Prober] = {}
        #: Loop time at which vrrp_startup_delay ends (0: no delay).
        self._delay_until = 0.0
        self._delay_handle: asyncio.TimerHandle | None = None
        #: Receiver registrations waiting for the end of the startup delay.
        self._held: list[tuple[Receiver, int, Handler]] = []

    # -- lifecycle --------------------------------------------------------------
    def start(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.config = config
        delay = config.global_defs.vrrp_startup_delay
        if delay > 0:
            log.info("Delaying startup for %g seconds", delay)
            self._delay_until = loop.time() + delay
            self._delay_handle = loop.call_at(self._delay_until, self._delay_over)
        self._set_groups(config)
        self._static(config, "add")
        # also when no instance needs it: a crashed run's rules must go
        self.firewall.configure(config.global_defs.ext)
        self.firewall.start(_firewall_families(config.vrrp_instances))
        for cfg in config.vrrp_instances:
            self._add(cfg, first_start=True)

    def _now(self) -> float:
        """The time the state machines see: during vrrp_startup_delay, its
        end (keepalived computes every backup timer from there meanwhile)."""
        assert self._loop is not None
        return max(self._loop.time(), self._delay_until)

    def _delay_over(self) -> None:
        """vrrp_startup_delay has ended: the instances start reading adverts."""
        self._delay_handle = None
        held, self._held = self._held, []
        for rx, vrid, handler in held:
            rx.add(vrid, handler)

    def _static_reload(self, old: Config, new: Config) -> None:
        """Reload: remove the static entries the new config no longer has,
        then add the new config's (adding is idempotent), so entries kept by
        both never disappear."""
        old_dev = old.global_defs.default_interface
        new_dev = new.global_defs.default_interface

        def addr_key(v: Any, dev: str) -> tuple[str, str]:
            return (str(v.address), v.dev or dev)

        kept = {addr_key(v, new_dev) for v in new.static_ipaddress}
        for vip in old.static_ipaddress:
            if addr_key(vip, old_dev) not in kept:
                self.netlink.del_address(vip, old_dev)
        new_routes = {tuple(r.words) for r in new.static_routes}
        gone_routes = [r for r in old.static_routes if tuple(r.words) not in new_routes]
        if gone_routes:
            self.netlink.routes("del", gone_routes, old_dev)
        new_rules = {tuple(r.words) for r in new.static_rules}
        gone_rules = [r for r in old.static_rules if tuple(r.words) not in new_rules]
        if gone_rules:
            self.netlink.rules("del", gone_rules)
        # Addresses and routes ("ip route replace") are idempotent; the kernel
        # keeps duplicate rules, so only rules the old config lacked are added.
        old_rules = {tuple(r.words) for r in old.static_rules}
        for vip in new.static_ipaddress:
            self.netlink.add_address(vip, new_dev)
        if new.static_routes:
            self.netlink.routes("add", new.static_routes, new_dev)
        added = [r for r in new.static_rules if tuple(r.words) not in old_rules]
        if added:
            self.netlink.rules("add", added)

    def _static(self, config: Config, action: str) -> None:
        """static_ipaddress / static_routes / static_rules: keepalived adds
        them at start-up and removes them when it stops (they never move
        with VRRP state).  An address without ``dev`` goes on
        global_defs' default_interface."""
        dev = config.global_defs.default_interface
        if action == "add":
            for vip in config.static_ipaddress:
                self.netlink.add_address(vip, dev)
            if config.static_routes:
                self.netlink.routes("add", config.static_routes, dev)
            if config.static_rules:
                self.netlink.rules("add", config.static_rules)
        else:
            if config.static_rules:
                self.netlink.rules("del", config.static_rules)
            if config.static_routes:
                self.netlink.routes("del", config.static_routes, dev)
            for vip in config.static_ipaddress:
                self.netlink.del_address(vip, dev)

    def _set_groups(self, config: Config) -> None:
        self.group_of = {}
        self.group_name = {}
        for sg in config.vrrp_sync_groups:
            for member in sg.group:
                self.group_of[member] = list(sg.group)
                self.group_name[member] = sg
        names = {sg.name for sg in config.vrrp_sync_groups}
        self.group_state = {k: v for k, v in self.group_state.items() if k in names}

    def _add(self, cfg: VrrpInstance, *, first_start: bool = False) -> Instance | None:
        assert self._loop is not None and self.config is not None
        if cfg.interface is None or self.netlink.ifindex(cfg.interface) is None:
            log.error(
                "(%s) interface %s does not exist; instance not started", cfg.name, cfg.interface
            )
            return None
        vmac = None
        if cfg.use_vmac:
            vmac = self.vmacs.create(cfg)
            if vmac is None:
                log.error("(%s) no VMAC interface; instance not started", cfg.name)
                return None
        inst = Instance(
            cfg,
            self.config.global_defs,
            self.netlink,
            self.emit,
            router_id=self.config.global_defs.router_id or _hostname(),
            in_sync_group=cfg.name in self.group_of,
            on_actions=self._after_actions,
            vmac=vmac,
        )
        self._set_fw_rules(inst)
        self._watch_split_brain(inst)
        vrid = resolved(cfg.virtual_router_id, "virtual_router_id")
        try:
            rx = self._receiver(inst.xmit_ifname, cfg.family, inst.mcast_dst, inst.auth_type == 2)
        except OSError as exc:
            log.error("(%s) cannot open VRRP socket on %s: %s", cfg.name, inst.xmit_ifname, exc)
            self._release_vmac(inst)
            return None
        held = self._loop.time() < self._delay_until
        if held:
            self._held.append((rx, vrid, inst.on_packet))
        else:
            rx.add(vrid, inst.on_packet)
        self.instances[cfg.name] = inst
        try:
            inst.start(
                self._loop,
                not_before=self._delay_until if held else None,
                # keepalived: on an interface it did not create (not a new VMAC)
                release_stale=first_start and vmac is None,
            )
        except OSError as exc:
            log.error("(%s) cannot start: %s", cfg.name, exc)
            self._detach(inst)
            del self.instances[cfg.name]
            self._release_vmac(inst)
            return None
        return inst

    def _release_vmac(self, inst: Instance) -> None:
        if inst.vmac is not None:
            self.vmacs.remove(inst.vmac, inst.name)

    def _receiver(self, ifname: str, family: int, group: str, ah: bool) -> Receiver:
        assert self._loop is not None
        key = (ifname, family)
        rx = self.receivers.get(key)
        if rx is None or (ah and len(rx.socks) == 1 and family == 4):
            old_groups = rx.groups if rx is not None else set()
            if rx is not None:
                handlers = rx.handlers
                rx.close()
            else:
                handlers = {}
            groups = old_groups | {group}
            rx = Receiver(ifname, family, groups, with_ah=ah)
            rx.handlers = handlers
            rx.start(self._loop)
            self.receivers[key] = rx
        rx.join(group)
        return rx

    def stop(self) -> None:
        if self._delay_handle is not None:
            self._delay_handle.cancel()
            self._delay_handle = None
        self._held.clear()
        for inst in list(self.instances.values()):
            inst.stop()
        if self.config is not None:
            self._static(self.config, "del")
        # Routes and rules are applied by a thread of their own: wait for the
        # removals just queued (before VMACs go away, so they run as they
        # would have), or the process could exit with them still queued.
        self.netlink.flush(ROUTES_DRAIN_TIMEOUT)
        for rx in self.receivers.values():
            rx.close()
        self.receivers.clear()
        for inst in list(self.instances.values()):
            self._release_vmac(inst)
        self.instances.clear()
        self.vmacs.close()
        self.firewall.close()
        for sb in self.split_brains.values():
            sb.close()
        self.split_brains.clear()
        for prober in self.probers.values():
            prober.close()
        self.probers.clear()

    def reload(self, config: Config) -> None:
        """Apply a new configuration: unchanged instances keep their state."""
        assert self._loop is not None
        old = self.instances
        new_cfgs = {c.name: c for c in config.vrrp_instances}
        if self.config is not None:
            self._static_reload(self.config, config)
        self.config = config
        self._set_groups(config)
        self.firewall.ensure(_firewall_families(config.vrrp_instances))
        for name, inst in list(old.items()):
            cfg = new_cfgs.get(name)
            if cfg is None or not keeps_state(inst.cfg, cfg):
                log.info("(%s) removed or changed by reload", name)
                inst.stop("reload: removed" if cfg is None else "reload: configuration changed")
                self._detach(inst)
                del self.instances[name]
                self._release_vmac(inst)
                sb = self.split_brains.pop(name, None)
                if sb is not None:
                    sb.close()
                if cfg is None:
                    inst._event("DELETED")
            else:
                # joining or leaving a sync group changes who promotes it
                inst.update_config(cfg, config.global_defs, in_sync_group=name in self.group_of)
                self._reload_fw_rules(inst)
                self._reload_split_brain(inst)
        for name, cfg in new_cfgs.items():
            if name not in self.instances:
                self._add(cfg)

    def _watch_split_brain(self, inst: Instance) -> None:
        old = self.split_brains.pop(inst.name, None)
        if old is not None:
            old.close()
        self.split_brains[inst.name] = watch(inst, self.emit, self._prober, self.netlink.mac)

    def _reload_split_brain(self, inst: Instance) -> None:
        """A kept instance takes a changed probe interval, VIPs or unicast
        peers (its watch starts again, without evidence: a MASTER's next
        rounds find it again)."""
        sb = self.split_brains.get(inst.name)
        if sb is None:
            return
        fresh = watch(inst, self.emit, self._prober, self.netlink.mac)
        if (sb.interval, sb.vips, sb.peers) == (fresh.interval, fresh.vips, fresh.peers):
            return  # nothing started yet: the fresh watch is just dropped
        if sb.detected and self._loop is not None:
            sb.state_changed(False, self._loop)  # reported as cleared
        sb.close()
        self.split_brains[inst.name] = fresh
        if inst.state is State.MASTER and self._loop is not None:
            fresh.state_changed(True, self._loop)

    def _prober(self, dev: str) -> Prober:
        prober = self.probers.get(dev)
        if prober is None:
            assert self._loop is not None
            prober = self.probers[dev] = Prober(dev, self._loop)
        return prober

    def _set_fw_rules(self, inst: Instance) -> None:
        if _needs_firewall(inst.cfg):
            addresses = [(addr, dev) for dev, addr in inst.gratuitous_addresses()]
            inst.fw_rules = InstanceRules(self.firewall, inst.name, addresses)

    def _reload_fw_rules(self, inst: Instance) -> None:
        """keepalived (vrrp.c, reload): accept mode switched on or off for a
        kept instance takes or gives its drop rules at once."""
        had = inst.fw_rules
        if (had is not None) == _needs_firewall(inst.cfg):
            return
        if had is not None:
            had.remove()
            inst.fw_rules = None
            return
        self._set_fw_rules(inst)
        if inst.state is State.MASTER and inst.fw_rules is not None:
            inst.fw_rules.add()

    def _detach(self, inst: Instance) -> None:
        key = (inst.xmit_ifname, inst.family)
        self._held = [h for h in self._held if h[2] != inst.on_packet]
        rx = self.receivers.get(key)
        if rx is not None:
            rx.remove(inst.fsm.params.vrid, inst.on_packet)
            if not rx.handlers and not any(h[0] is rx for h in self._held):
                # Nobody reads here any more; a VMAC may be deleted and made
                # again under the same name, which needs a new socket.
                rx.close()
                del self.receivers[key]

    # -- trackers -----------------------------------------------------------------
    def apply_tracking(self, name: str, priority: int, fault: bool, reason: str = "") -> None:
        """Trackers' verdict; ``reason`` (which trackers fault the instance)
        becomes the FAULT transition's reason."""
        inst = self.instances.get(name)
        if inst is None or self._loop is None:
            return
        now = self._now()
        actions = inst.fsm.set_fault(now, fault, reason) if fault != inst.fsm.own_fault else []
        actions += inst.fsm.set_priority(now, priority)
        if actions:
            inst.run(actions)

    # -- sync groups -----------------------------------------------------------------
    def _after_actions(self, inst: Instance, actions: list[Any]) -> None:
        sb = self.split_brains.get(inst.name)
        if sb is not None and self._loop is not None:
            split_brain_actions(sb, actions, self._loop)
        if inst.name in self.group_name and any(isinstance(a, Transition) for a in actions):
            self._dirty_groups.add(self.group_name[inst.name].name)
        if self._syncing or inst.name not in self.group_of or self._loop is None:
            return
        members = [self.instances[m] for m in self.group_of[inst.name] if m in self.instances]
        others = [m for m in members if m is not inst]
        now = self._now()
        self._syncing = True
        try:
            for action in actions:
                if isinstance(action, WantMaster):
                    if all(m.fsm.wants_master or m.fsm.state is State.MASTER for m in members):
                        for m in members:
                            m.run(m.fsm.force_master(now, "all members want MASTER"))
                elif isinstance(action, Transition):
                    if action.new is State.FAULT:
                        for m in others:
                            m.run(m.fsm.set_group_fault(now, True))
                    elif action.old is State.FAULT:
                        if not any(m.fsm.own_fault for m in members):
                            for m in others:
                                m.run(m.fsm.set_group_fault(now, False))
                    elif action.old is State.MASTER and action.new is State.BACKUP:
                        for m in others:
                            m.run(m.fsm.force_backup(now, f"{inst.name} left MASTER"))
                    elif action.new is State.MASTER:
                        for m in others:
                            if m.fsm.state is State.BACKUP:
                                m.run(m.fsm.force_master(now, f"{inst.name} became MASTER"))
        finally:
            self._syncing = False
        self._emit_group_states()

    def _emit_group_states(self) -> None:
        """A sync group's own state changes when all its members agree
        (FAULT as soon as one member is in FAULT): then a GROUP event goes to
        the notifiers (notify_master/backup/fault/stop of vrrp_sync_group)."""
        dirty, self._dirty_groups = self._dirty_groups, set()
        groups = {sg.name: sg for sg in self.group_name.values()}
        for name in sorted(dirty):
            sg = groups.get(name)
            if sg is None:
                continue
            members = [self.instances[m] for m in sg.group if m in self.instances]
            state = _group_state({m.fsm.state for m in members})
            if state is None or self.group_state.get(name) == state:
                continue
            previous = self.group_state.get(name)
            self.group_state[name] = state
            log.info("VRRP_Group(%s) Syncing instances to %s state", name, state)
            priority = max((m.fsm.effective_priority for m in members), default=0)
            self.emit(
                StateEvent(
                    kind=EventKind.GROUP,
                    name=name,
                    state=state,
                    priority=priority,
                    previous=previous,
                    subject=sg,
                )
            )

    def status(self, *, clear_stats: bool = False) -> list[dict[str, Any]]:
        """Every instance's status; ``clear_stats`` then zeroes keepalived's
        statistics (its STATS_CLEAR signal: print, then clear, in one go)."""
        out = [i.status() for i in self.instances.values()]
        for st in out:
            sb = self.split_brains.get(st["name"])
            if sb is not None:
                st["split_brain"] = sb.status()
        if clear_stats:
            for inst in self.instances.values():
                inst.clear_stats()
        return out


def _needs_firewall(cfg: VrrpInstance) -> bool:
    """keepalived: drop rules unless accept mode or the address owner
    (semantics resolved ``accept``; None only for models built by hand)."""
    return cfg.accept is False and cfg.priority != 255


def _firewall_families(cfgs: list[VrrpInstance]) -> set[int]:
    return {
        v.address.version
        for c in cfgs
        if _needs_firewall(c)
        for v in [*c.virtual_ipaddress, *c.virtual_ipaddress_excluded]
    }


def _group_state(states: set[State]) -> str | None:
    """The group's state from its members', or None while they disagree."""
    if not states:
        return None
    if State.FAULT in states:
        return "FAULT"
    if states == {State.MASTER}:
        return "MASTER"
    if states == {State.STOP}:
        return "STOP"
    if states <= {State.BACKUP, State.INIT}:
        return "BACKUP"
    return None


def keeps_state(old: VrrpInstance, new: VrrpInstance) -> bool:
    """Whether a reload keeps a running instance (state, VIPs, timers) or
    stops it and starts it again; ``pykeepalived reload --dry-run`` asks too."""
    return _identity(old) == _identity(new)


#: Names of what _identity compares, in its order (for the reload preview).
IDENTITY_FIELDS = (
    "interface",
    "virtual_router_id",
    "version",
    "family",
    "address owner (priority 255)",
    "unicast or multicast",
    "unicast_src_ip",
    "auth_type",
    "use_vmac",
    "vmac_xmit_base",
    "vmac MAC",
)


def identity_changes(old: VrrpInstance, new: VrrpInstance) -> list[str]:
    """Which of the identity's parts differ (empty: the instance keeps its state)."""
    return [
        n for n, a, b in zip(IDENTITY_FIELDS, _identity(old), _identity(new), strict=True) if a != b
    ]


def _identity(cfg: VrrpInstance) -> tuple[Any, ...]:
    """What must not change for an instance to keep its state across reload.

    keepalived 2.2.7 matches a reloaded instance by VRID, family, interface,
    unicast or multicast and (unicast) its source address (vrrp.c
    vrrp_exist), and carries its state over; priority, advert_int, state,
    preempt, the VIPs, the unicast peers and auth_pass change in place
    (Instance.update_config). An address owner starts MASTER at once, so
    becoming or ceasing to be one restarts; the authentication type (AH
    sends another protocol) and VMAC settings change the sockets and
    interfaces an instance was started with, so they restart it too.
    """
    return (
        cfg.interface,
        cfg.virtual_router_id,
        cfg.version,
        cfg.family,
        cfg.priority >= 255,
        bool(cfg.unicast_peer),
        str(cfg.unicast_src_ip),
        cfg.authentication.auth_type if cfg.authentication else None,
        cfg.use_vmac,
        cfg.vmac_xmit_base,
        cfg.ext.get(EXT_MAC),
    )


def _hostname() -> str:
    import socket

    return socket.gethostname()
