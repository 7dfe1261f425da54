"""One VRRP instance on the event loop: the I/O around the pure state machine.

The state machine (:mod:`.fsm`) decides; this class sends adverts, arms the
single timer the machine asks for, adds and removes VIPs, sends GARP/NA
bursts and turns transitions into :class:`~pykeepalived.core.plugin.base.StateEvent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pykeepalived.core.config.model import GlobalDefs, VirtualAddress, VrrpInstance, resolved
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.vrrp import auth_hmac as hm
from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp import stats as st
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.vrrp.fsm import (
    AddVips,
    FsmParams,
    Log,
    ReceivedLowerPriority,
    RemoveVips,
    RxAdvert,
    SendAdvert,
    SendGratuitous,
    State,
    Transition,
    VrrpMachine,
    WantMaster,
)
from pykeepalived.core.vrrp.io import RawPacket, Receiver, RepeatSlot, Sender, shared_sender
from pykeepalived.core.vrrp.nft_accept import InstanceRules
from pykeepalived.core.vrrp.timers import EARLY, Timer, TimerQueue, timer_queue
from pykeepalived.core.vrrp.vmac import Vmac

log = logging.getLogger("pykeepalived.vrrp")

RATE_LIMIT_S = 60.0
#: A master's advert timers are aligned on this grid (at most a tenth of the
#: advert interval); see :meth:`Instance._arm`.
ADVERT_GRID = 0.01


def _reloadable_params(cfg: VrrpInstance) -> dict[str, Any]:
    """The state machine's parameters a reload may change in a running
    instance (Instance.update_config); the others make it restart."""
    return {
        "priority": cfg.priority,
        "advert_int": cfg.advert_int,
        "initial_state": State.MASTER if cfg.state == "MASTER" else State.BACKUP,
        "preempt": cfg.preempt,
        "preempt_delay": cfg.preempt_delay,
        "down_timer_adverts": resolved(cfg.down_timer_adverts, "down_timer_adverts"),
        "lower_prio_no_advert": bool(cfg.lower_prio_no_advert),
        "higher_prio_send_advert": bool(cfg.higher_prio_send_advert),
        "garp_lower_prio_repeat": resolved(cfg.garp_lower_prio_repeat, "garp_lower_prio_repeat"),
    }


def _auth(cfg: VrrpInstance) -> tuple[pk.AuthType, str]:
    """The authentication an instance uses: keepalived applies
    ``authentication`` to VRRPv2 over IPv4 only."""
    a = cfg.authentication
    if a is None or resolved(cfg.version, "version") != 2 or cfg.family != 4:
        return pk.AuthType.NONE, ""
    return (pk.AuthType.PASS if a.auth_type == "PASS" else pk.AuthType.AH), a.auth_pass


def _reloadable_expected(cfg: VrrpInstance) -> dict[str, Any]:
    """The parts of an instance's ``ExpectedConfig`` a reload may change in
    a running instance (Instance.update_config)."""
    auth_type, auth_pass = _auth(cfg)
    return {
        "auth_data": pk.auth_data_from_password(auth_pass)
        if auth_type == pk.AuthType.PASS
        else bytes(8),
        "advert_int_raw": pk.advert_int_to_raw(resolved(cfg.version, "version"), cfg.advert_int),
        "addresses": tuple(v.address.ip for v in cfg.virtual_ipaddress),
        "unicast_peers": tuple(p.address for p in cfg.unicast_peer),
        "unicast_ttl_ranges": tuple((p.min_ttl, p.max_ttl) for p in cfg.unicast_peer),
        "check_unicast_src": bool(cfg.check_unicast_src),
        "check_vip_addr": not cfg.skip_check_adv_addr,
    }


#: keepalived's keyword for each of the parameters above whose name differs
_KEYWORDS = {
    "initial_state": "state",
    "advert_int_raw": "advert_int",
    "auth_data": "auth_pass",
    "addresses": "virtual_ipaddress",
    "unicast_peers": "unicast_peer",
    "unicast_ttl_ranges": "unicast_peer",
    "check_vip_addr": "skip_check_adv_addr",
}


def reload_changes(old: VrrpInstance, new: VrrpInstance) -> list[str]:
    """The keywords of a kept instance that a reload changes in place, in
    the terms the reload preview prints (VIPs are listed by it apart)."""
    before = {**_reloadable_params(old), **_reloadable_expected(old)}
    after = {**_reloadable_params(new), **_reloadable_expected(new)}
    before["mcast_src_ip"], after["mcast_src_ip"] = old.mcast_src_ip, new.mcast_src_ip
    out: list[str] = []
    for key, value in before.items():
        name = _KEYWORDS.get(key, key)
        if value != after[key] and name not in out:
            out.append(name)
    return out


class Instance:
    """A configured ``vrrp_instance`` running on the loop."""

    def __init__(
        self,
        cfg: VrrpInstance,
        gd: GlobalDefs,
        netlink: Netlink,
        emit: Callable[[StateEvent], None],
        *,
        router_id: str = "",
        in_sync_group: bool = False,
        on_actions: Callable[[Instance, list[Any]], None] | None = None,
        vmac: Vmac | None = None,
    ) -> None:
        self.cfg = cfg
        self.gd = gd
        self.netlink = netlink
        self.emit = emit
        self.router_id = router_id
        self.name = cfg.name
        self.family = cfg.family
        self.ifname = cfg.interface or ""
        #: use_vmac: the VMAC interface (see vmac.py), None without.
        self.vmac = vmac
        #: no_accept/strict: the VIPs' nftables drop rules (the manager sets it)
        self.fw_rules: InstanceRules | None = None
        #: Where adverts are sent and received: the VMAC, unless
        #: vmac_xmit_base (or no VMAC): the configured interface.
        self.xmit_ifname = vmac.name if vmac is not None and not cfg.vmac_xmit_base else self.ifname
        self._hold: asyncio.TimerHandle | None = None
        self.on_actions = on_actions
        self.counters: Counter[str] = Counter()
        #: keepalived's statistics (names and counting points: vrrp/stats.py)
        self.stats: Counter[str] = Counter()
        self.seen_master_priority = 0
        self._last_log: dict[str, float] = {}
        self._timer: Timer | None = None
        self._timers: TimerQueue | None = None
        self._timer_when = 0.0
        self._rx: Receiver | None = None
        #: Exact repeats of the master's advert are only stamped by the
        #: receiver (see fsm "Repeated adverts" and io.RepeatSlot).
        self._repeat_slot: RepeatSlot | None = None
        self._garp_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sender: Sender | None = None
        self.last_transition: float = time.time()
        #: Why the last transition happened (fsm Transition.reason) and from where.
        self.last_reason = ""
        self.previous_state: str | None = None
        self.vips = [v for v in cfg.virtual_ipaddress]
        self.evips = [v for v in cfg.virtual_ipaddress_excluded]
        self._vip_devs = [self._vip_dev(v) for v in [*self.vips, *self.evips]]
        version = resolved(cfg.version, "version")
        vrid = resolved(cfg.virtual_router_id, "virtual_router_id")
        self.auth_type, self.auth_pass = _auth(cfg)
        self.src = self._source_address()
        self._src_packed = ipaddress.ip_address(self.src).packed if self.src else None
        self._tx_cache: dict[int, list[tuple[str, bytes]]] = {}
        #: AH: the advert and parsed addresses by priority (the datagram
        #: itself changes with every sequence number)
        self._ah_cache: dict[
            int,
            tuple[pk.Advert, bytes, ipaddress.IPv4Address, list[tuple[str, ipaddress.IPv4Address]]],
        ] = {}
        self._rx_ok: dict[bytes, tuple[tuple[bytes, int | None, bytes], RxAdvert]] = {}
        self.unicast = [str(p.address) for p in cfg.unicast_peer]
        # keepalived: mcast_dst_ip per instance, else vrrp_mcast_group4/6.
        self.mcast_dst = str(
            cfg.mcast_dst_ip
            or (
                (gd.vrrp_mcast_group6 or pk.VRRP_MCAST_V6)
                if self.family == 6
                else (gd.vrrp_mcast_group4 or pk.VRRP_MCAST_V4)
            )
        )
        self.ah_seq = 0
        self.ah_ident = 0
        self.ah_last_rx: dict[str, int] = {}
        self.expected = pk.ExpectedConfig(
            version=version,
            vrid=vrid,
            family=socket.AF_INET if self.family == 4 else socket.AF_INET6,
            auth_type=int(self.auth_type),
            unicast=bool(self.unicast),
            **_reloadable_expected(cfg),
        )
        self._advert_addresses = self.expected.addresses
        self._vips_packed = frozenset(a.packed for a in self._advert_addresses)
        #: keepalived 2.4 auth_hmac (None without the block)
        self.hmac_signer: hm.Signer | None = None
        self.hmac_verifier: hm.Verifier | None = None
        if cfg.auth_hmac is not None:
            self._setup_auth_hmac(cfg, version)
        self.fsm = VrrpMachine(
            FsmParams(
                name=cfg.name,
                vrid=vrid,
                version=version,
                primary_ip=self._src_packed or b"",
                in_sync_group=in_sync_group,
                **_reloadable_params(cfg),
            )
        )

    # -- set-up ---------------------------------------------------------------
    def _setup_auth_hmac(self, cfg: VrrpInstance, version: int) -> None:
        ah = cfg.auth_hmac
        assert ah is not None and ah.active_key is not None  # semantics saw to it
        conf = hm.AuthHmacConfig(
            keys={k.key_id: k.secret for k in ah.keys},
            active_key=ah.active_key,
            mode=hm.Mode(ah.mode),
            anti_replay=hm.AntiReplay(ah.anti_replay),
            time_window=ah.time_window or 0,
        )
        # keepalived derives the default window from its advert interval
        # as kept (VRRPv2: whole seconds), i.e. what goes on the wire.
        adv = self.expected.advert_int_raw
        advert_int = float(adv) if version == 2 else adv / 100
        args: dict[str, Any] = {
            "family": socket.AF_INET if self.family == 4 else socket.AF_INET6,
            "version": version,
            "vrid": cfg.virtual_router_id or 1,
            "advert_int": advert_int,
        }
        self.hmac_signer = hm.Signer(conf, **args)
        self.hmac_verifier = hm.Verifier(
            conf, unicast_peers=[p.address for p in cfg.unicast_peer], **args
        )

    def _open_sender(self) -> Sender:
        """The send socket for this instance's interface, family and source."""
        return shared_sender(
            self.xmit_ifname, self.family, self.src, hdrincl=self.auth_type == pk.AuthType.AH
        )

    def _set_source(self, src: str | None) -> None:
        """The address adverts are sent from, which also breaks priority ties."""
        self.src = src
        self._src_packed = ipaddress.ip_address(src).packed if src else None
        self.fsm.params = dataclasses.replace(self.fsm.params, primary_ip=self._src_packed or b"")

    def _source_address(self) -> str | None:
        if self.cfg.unicast_src_ip is not None:
            return str(self.cfg.unicast_src_ip)
        if self.cfg.mcast_src_ip is not None:
            return str(self.cfg.mcast_src_ip)
        # With a VMAC too, keepalived sends from the configured interface's
        # address (IPv6: its link-local address, which the VMAC also gets,
        # or the one vmac.py made up when the interface has none).
        src = self.netlink.primary_address(self.ifname, self.family)
        if src is None and self.vmac is not None and self.family == 6:
            src = self.netlink.primary_address(self.vmac.name, 6)
        return src

    def _vip_dev(self, vip: VirtualAddress) -> tuple[VirtualAddress, str]:
        """The address as given to the kernel, and its default interface.

        keepalived puts a VIP/eVIP on the VMAC when it names no interface or
        the instance's own and is of the instance's family; others stay on
        their interface (or the instance's, for an eVIP of the other family).
        """
        vmac = self.vmac
        if (
            vmac is not None
            and vip.dev in (None, self.ifname)
            and vip.address.version == self.family
        ):
            return (dataclasses.replace(vip, dev=None) if vip.dev else vip), vmac.name
        return vip, self.ifname

    @property
    def state(self) -> State:
        return self.fsm.state

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        not_before: float | None = None,
        release_stale: bool = False,
    ) -> None:
        """Open the sender and leave INIT.

        ``not_before`` (vrrp_startup_delay): keepalived enters BACKUP at
        once but counts the master-down timer from the end of the delay;
        an address owner, which would be MASTER at once, stays silent in
        INIT until then.  ``release_stale`` (the daemon's first start, an
        interface it did not create): entering BACKUP or FAULT removes the
        VIPs and eVIPs a killed MASTER may have left on the interface, as
        keepalived 2.2.7 does (it marks them set at first start so that its
        init to BACKUP/FAULT removes them); otherwise this host and the new
        MASTER both answer for them.
        """
        self._loop = loop
        self._timers = timer_queue(loop)
        if self.src is None:
            self._set_source(self._source_address())
        self._tx_cache.clear()
        self._ah_cache.clear()
        self.sender = self._open_sender()
        now = loop.time()
        if not_before is not None and not_before > now:
            params = self.fsm.params
            if (
                params.initial_state is State.MASTER
                and self.fsm.is_owner
                and not params.in_sync_group
            ):
                self._hold = loop.call_at(not_before, self._start_held)
                return
            now = not_before
        self.run(self.fsm.start(now))
        if release_stale and self.fsm.state in (State.BACKUP, State.FAULT):
            for vip, dev in self._vip_devs:
                self.netlink.del_address(vip, dev)  # absent: the kernel says so, quietly

    def _start_held(self) -> None:
        self._hold = None
        if self._loop is not None and self.fsm.state is State.INIT:
            self.run(self.fsm.start(self._loop.time()))

    def stop(self, reason: str = "shutdown") -> None:
        """Shutdown: priority 0 advert if MASTER, VIPs removed, STOP."""
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self._loop is not None and self.fsm.state is not State.STOP:
            self.run(self.fsm.stop(self._loop.time(), reason))
        self._cancel_timer()
        for task in (self._garp_task, self._refresh_task):
            if task is not None:
                task.cancel()
        if self.sender is not None:
            self.sender.close()
            self.sender = None

    # -- the action loop ---------------------------------------------------------
    def run(self, actions: list[Any]) -> None:
        """Carry out the state machine's actions, in order, then re-arm the timer."""
        if actions:
            # A lone action (a master's SendAdvert, every interval) has no
            # log line for a transition's reason to go to.
            if len(actions) > 1 and any(isinstance(a, Transition) for a in actions):
                actions = _with_reasons(actions)
            for action in actions:
                try:
                    self._do(action)
                except Exception:  # one failing effect must not stop the others
                    log.exception("(%s) failed to carry out %s", self.name, type(action).__name__)
            if self.on_actions is not None:
                self.on_actions(self, actions)
        self._arm()

    def _do(self, action: Any) -> None:
        if isinstance(action, SendAdvert):
            self.send_advert(action.priority)
        elif isinstance(action, Log):
            log.log(action.level, "%s", action.message)
        elif isinstance(action, AddVips):
            self._add_vips()
        elif isinstance(action, RemoveVips):
            self._remove_vips()
        elif isinstance(action, SendGratuitous):
            self._start_garp(action.lower_prio)
        elif isinstance(action, Transition):
            self._transition(action)
        elif isinstance(action, ReceivedLowerPriority):
            self._event("MASTER_RX_LOWER_PRI", detail=pk_ip(action.src))
        elif isinstance(action, WantMaster):
            pass  # the sync group coordinator reads it through on_actions

    def _arm(self) -> None:
        """Make the loop call :meth:`_on_timer` by the machine's deadline.

        A backup's master-down deadline moves later with every advert it
        accepts.  Re-scheduling the timer for each (cancel + ``call_at``)
        is a noticeable share of the receive path, and letting a stale
        timer fire early costs a loop wake-up, which is dearer still.  So a
        timer due no later than the deadline is kept while it is more than
        one advert interval away (the next advert will come first and
        look again); otherwise it is replaced.  A timer that does fire
        early finds the deadline not reached and re-arms for the rest.
        """
        if self.fsm.state is State.BACKUP and self.fsm.master_priority:
            # keepalived's master_priority: the last master's, kept when we
            # become master ourselves (the machine's is then our own)
            self.seen_master_priority = self.fsm.master_priority
        deadline = self.fsm.next_deadline
        timer = self._timer
        slot = self._repeat_slot
        if slot is not None and slot.live and self._rx is not None and deadline is not None:
            # The receiver's watchdog keeps the deadline (see io.RepeatSlot).
            if timer is not None:
                timer.cancel()
                self._timer = None
            slot.mdi = self.fsm.master_down_interval
            slot.hold = deadline
            self._rx.watch(slot.due)
            return
        loop = self._loop
        if timer is not None:
            if (
                deadline is not None
                and loop is not None
                and loop.time() + self.fsm.master_adver_int < self._timer_when <= deadline
            ):
                return
            timer.cancel()
            self._timer = None
        if deadline is not None and self._timers is not None:
            when = deadline
            if self.fsm.state is State.MASTER:
                # A master's adverts go out on a grid shared by all its
                # instances (the first one after becoming MASTER up to one
                # grid step late, every later one on time), so that they
                # leave in one burst per interval: one wake-up here, and
                # one per burst for the peers reading them.
                grid = min(ADVERT_GRID, self.fsm.params.advert_int / 10)
                when = math.ceil(deadline / grid - 1e-6) * grid
                if when < deadline - EARLY:
                    when = deadline
            self._timer_when = when
            self._timer = self._timers.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None and self._timers is not None
        # A backup whose master was heard since the timer was set (repeats
        # stamped by the receiver) only has its deadline moved: the
        # commonest case by far, kept to a property read and a re-arm.
        timers = self._timers
        now = timers.now()
        deadline = self.fsm.next_deadline
        if deadline is not None:
            if deadline > now + EARLY:
                self._timer_when = deadline
                self._timer = timers.call_at(deadline, self._on_timer)
                return
            # Reached; a grid-aligned advert timer may be a rounding error
            # short of the deadline it was computed from.
            now = max(now, deadline)
        rx = self._rx
        if self.fsm.state is State.BACKUP and rx is not None and rx.batching:
            # Adverts may wait in the socket while the receiver batches its
            # reads (see io.Receiver): read them before deciding that the
            # master is down.
            rx.drain()
            if self._timer is not None:
                return  # an advert re-armed the timer
        self.run(self.fsm.timer_expired(now))

    def attach_receiver(self, rx: Receiver | None) -> None:
        """The receiver that feeds this instance (None: detached)."""
        slot = self._repeat_slot
        if slot is not None and rx is None:
            self._drop_repeat()  # before detaching: the old receiver forgets it
            self._rx = None
            self._arm()  # the instance keeps its own deadline again
            return
        old, self._rx = self._rx, rx
        if slot is not None:
            if old is not None:
                old.drop_repeat(slot)
            if rx is not None and slot.live:
                rx.add_repeat(slot)

    # -- adverts ------------------------------------------------------------------
    def send_advert(self, priority: int) -> None:
        if self.sender is None:
            return
        if self.hmac_signer is not None and self.hmac_signer.active:
            if not self._send_signed(priority):
                return
        elif self.auth_type != pk.AuthType.AH:
            # Without AH an advert depends only on the priority and the
            # destination (pseudo-header checksum): encode it once.
            cached = self._tx_cache.get(priority)
            if cached is None:
                cached = self._tx_cache[priority] = [
                    (dst, self._encode(priority, dst)) for dst in self.unicast or [self.mcast_dst]
                ]
            for dst, data in cached:
                self.sender.send(data, dst)
        elif not self._send_ah(priority):
            return
        self.counters["adverts_sent"] += 1
        self.stats["advert_sent"] += 1
        if priority == 0:
            self.counters["pri_zero_sent"] += 1
            self.stats["pri_zero_sent"] += 1

    def _send_signed(self, priority: int) -> bool:
        """auth_hmac: every advert has a new sequence number, so nothing is
        cached; the copies to each unicast peer share one trailer (its HMAC
        does not cover the destination, nor the checksum that does)."""
        assert self.sender is not None and self.hmac_signer is not None
        if not self.src:
            return False
        copies = [(dst, self._encode(priority, dst)) for dst in self.unicast or [self.mcast_dst]]
        trailer = self.hmac_signer.sign(
            copies[0][1], src=ipaddress.ip_address(self.src), wall=time.time()
        )
        for dst, data in copies:
            self.sender.send(data + trailer, dst)
        return True

    def _send_ah(self, priority: int) -> bool:
        """AH: every advert has a new sequence number and ICV.  False when
        there is no IPv4 source address to sign with."""
        assert self.sender is not None
        self.ah_seq += 1
        self.ah_ident = self.ah_ident % 0xFFFF + 1
        cached = self._ah_cache.get(priority)
        if cached is None:
            src = ipaddress.ip_address(self.src) if self.src else None
            if not isinstance(src, ipaddress.IPv4Address):
                return False
            dsts: list[tuple[str, ipaddress.IPv4Address]] = []
            for dst in self.unicast or [self.mcast_dst]:
                dst_ip = ipaddress.ip_address(dst)
                assert isinstance(dst_ip, ipaddress.IPv4Address)
                dsts.append((dst, dst_ip))
            adv = self._make_advert(priority)
            cached = self._ah_cache[priority] = (adv, pk.encode_advert(adv), src, dsts)
        adv, vrrp, src, dsts = cached
        for dst, dst_ip in dsts:
            data = pk.build_ah_packet(
                adv,
                vrrp=vrrp,
                src=src,
                dst=dst_ip,
                key=self.auth_pass,
                seq=self.ah_seq,
                ident=self.ah_ident,
                unicast=bool(self.unicast),
            )
            self.sender.send(data, dst)
        return True

    def _make_advert(self, priority: int) -> pk.Advert:
        """The advert this instance sends with ``priority`` (keepalived's fields)."""
        return pk.make_advert(
            version=self.fsm.params.version,
            vrid=self.fsm.params.vrid,
            priority=priority,
            advert_int=self.cfg.advert_int,
            addresses=self._advert_addresses,
            auth_type=self.auth_type,
            auth_pass=self.auth_pass,
            family=socket.AF_INET if self.family == 4 else socket.AF_INET6,
        )

    def _encode(self, priority: int, dst: str) -> bytes:
        adv = self._make_advert(priority)
        if self.family == 6:
            return pk.encode_advert(adv)  # the kernel fills the checksum
        return pk.encode_advert(
            adv,
            src=ipaddress.ip_address(self.src) if self.src else None,
            dst=ipaddress.ip_address(dst),
            v3_checksum_as_v2=self.cfg.v3_checksum_as_v2,
        )

    def update_config(
        self, cfg: VrrpInstance, gd: GlobalDefs, *, in_sync_group: bool = False
    ) -> None:
        """A reload kept this instance: take the new objects, drop caches.

        What keepalived 2.2.7 changes in a running instance without a
        transition (vrrp.c clear_diff_vrrp / restore_vrrp_state) is applied
        here: priority, advert_int, state, preempt, and the VIPs and eVIPs,
        which a MASTER removes and adds by difference (GARPs for new ones),
        never dropping one that stays; it is in a sync group or not as the
        new configuration says."""
        old = self.cfg
        self.cfg = cfg
        self.gd = gd
        # auth_hmac keys may have been rotated: new keys, the same sequence
        # (receivers would take a restart from the clock too, but need not)
        last = self.hmac_signer.sequence.last if self.hmac_signer is not None else 0
        self.hmac_signer = self.hmac_verifier = None
        if cfg.auth_hmac is not None:
            self._setup_auth_hmac(cfg, cfg.version or 2)
            assert self.hmac_signer is not None
            self.hmac_signer.sequence.last = last
        self._tx_cache.clear()
        self._ah_cache.clear()
        self._rx_ok.clear()
        self._drop_repeat()
        src = self._source_address()
        if src != self.src:
            # mcast_src_ip (or the interface's address) changed: keepalived
            # 2.2.7 sends from the new one at once (its reloaded instance is
            # built anew and carries only the state over)
            log.info("(%s) adverts now sent from %s", self.name, src)
            self._set_source(src)
            if self.sender is not None:
                self.sender.close()
                self.sender = self._open_sender()
        actions = self._reconfigure(old, cfg, in_sync_group)
        if actions:
            self.run(actions)
        self._arm()

    def _reconfigure(self, old: VrrpInstance, cfg: VrrpInstance, in_sync_group: bool) -> list[Any]:
        p = self.fsm.params
        params = dataclasses.replace(p, in_sync_group=in_sync_group, **_reloadable_params(cfg))
        now = self._loop.time() if self._loop is not None else time.monotonic()
        actions = self.fsm.reconfigure(now, params) if params != p else []
        before = self._vip_devs
        self.vips = list(cfg.virtual_ipaddress)
        self.evips = list(cfg.virtual_ipaddress_excluded)
        self._vip_devs = [self._vip_dev(v) for v in [*self.vips, *self.evips]]
        # keepalived 2.2.7 carries the state over to the new instance, which
        # sends to and accepts the new unicast peers and password at once.
        self.unicast = [str(peer.address) for peer in cfg.unicast_peer]
        self.auth_pass = _auth(cfg)[1]
        self.expected = dataclasses.replace(self.expected, **_reloadable_expected(cfg))
        self._advert_addresses = self.expected.addresses
        self._vips_packed = frozenset(a.packed for a in self._advert_addresses)
        if self.fsm.state is State.MASTER:

            def key(vd: tuple[VirtualAddress, str]) -> tuple[str, str]:
                return str(vd[0].address), vd[0].dev or vd[1]

            now_keys = {key(vd) for vd in self._vip_devs}
            before_keys = {key(vd) for vd in before}
            for vip, dev in before:
                if key((vip, dev)) not in now_keys:
                    self.netlink.del_address(vip, dev)
            added = [vd for vd in self._vip_devs if key(vd) not in before_keys]
            for vip, dev in added:
                self.netlink.add_address(vip, dev)
            if added:
                self._start_garp(False)
            self._reload_routes_and_rules(old, cfg)
        return actions

    def _reload_routes_and_rules(self, old: VrrpInstance, cfg: VrrpInstance) -> None:
        """A MASTER's virtual_routes/rules across a reload, as keepalived 2.2.7:
        the ones no longer configured go, every route is applied again (a
        removed VIP may have taken some with it; ``replace`` is idempotent)
        and new rules are added."""
        now_routes = {" ".join(r.words) for r in cfg.virtual_routes}
        gone = [r for r in old.virtual_routes if " ".join(r.words) not in now_routes]
        if gone:
            self.netlink.routes("del", gone, self.ifname)
        if cfg.virtual_routes:
            self.netlink.routes("add", cfg.virtual_routes, self.ifname)
        now_rules = {" ".join(r.words) for r in cfg.virtual_rules}
        before_rules = {" ".join(r.words) for r in old.virtual_rules}
        gone_rules = [r for r in old.virtual_rules if " ".join(r.words) not in now_rules]
        if gone_rules:
            self.netlink.rules("del", gone_rules)
        new_rules = [r for r in cfg.virtual_rules if " ".join(r.words) not in before_rules]
        if new_rules:
            self.netlink.rules("add", new_rules)

    def on_packet(self, pkt: RawPacket) -> None:
        if pkt.src_raw == self._src_packed:
            return  # our own advert looped back
        self.counters["adverts_received"] += 1
        if self.hmac_verifier is not None:
            self._on_signed_packet(pkt, self.hmac_verifier)
            return
        if pkt.proto != pk.IPPROTO_AH:
            # A master repeats the same advert every interval; one that
            # passed every check before passes them again (the checks
            # depend only on the packet and our configuration).
            hit = self._rx_ok.get(pkt.src_raw)
            if hit is not None and hit[0] == (pkt.dst_raw, pkt.ttl, pkt.payload):
                st.count_accepted(self.stats, hit[1].priority)
                assert self._loop is not None
                now = self._loop.time()
                actions = self.fsm.advert_received(now, hit[1])
                if actions:
                    self.run(actions)
                else:
                    self._offer_repeat(pkt, hit[1], now)
                    self._arm()
                return
            early = pk.precheck(
                pkt.payload,
                socket.AF_INET if pkt.family == 4 else socket.AF_INET6,
                pkt.ttl,
                self.expected,
                src=pkt.src_raw,
                dst=pkt.dst_raw,
                v3_checksum_as_v2=self.cfg.v3_checksum_as_v2,
                vips=self._vips_packed,
            )
            if early is not None and self._dropped_early(early):
                return
        ah_ok: bool | None = None
        if pkt.proto == pk.IPPROTO_AH:
            try:
                dg = pk.verify_ah_packet(pkt.datagram, self.auth_pass, unicast=bool(self.unicast))
                assert dg.ah is not None
                last = self.ah_last_rx.get(str(pkt.src))
                # Anti-replay: a restarted peer starts again at 1, so a
                # sequence number going back to a small value is accepted.
                ah_ok = last is None or dg.ah.seq > last or dg.ah.seq < 16
                if ah_ok:
                    self.ah_last_rx[str(pkt.src)] = dg.ah.seq
                    # keepalived keeps one AH sequence counter per instance
                    # for sending and receiving and drops any advert whose
                    # number is not above it.  Continuing from the highest
                    # number heard keeps our adverts acceptable to a peer
                    # that has been running (and counting) longer than us.
                    self.ah_seq = max(self.ah_seq, dg.ah.seq)
            except pk.PacketError:
                ah_ok = False
        try:
            adv = pk.decode_advert(
                pkt.payload,
                src=pkt.src,
                dst=pkt.dst,
                family=socket.AF_INET if pkt.family == 4 else socket.AF_INET6,
                verify_checksum=False,
                v3_checksum_as_v2=self.cfg.v3_checksum_as_v2,
                require_advert_type=False,
            )
        except pk.PacketError as exc:
            error = exc.reason  # the text is built only if logged
            if exc.kind is pk.PacketErrorKind.BAD_VERSION:
                # keepalived: "wrong version" (vers_err), not a malformed packet
                st.count_rejection(self.stats, pk.Rejection.VERSION)
                self._reject(
                    pk.Rejection.VERSION.label, lambda: f"wrong version from {pkt.src}: {error}"
                )
                return
            st.count_decode_error(self.stats, exc)
            self._reject("malformed", lambda: f"malformed packet from {pkt.src}: {error}")
            return
        ctx = pk.RxContext(
            src=pkt.src,
            dst=pkt.dst,
            ttl=pkt.ttl,
            ah=pkt.proto == pk.IPPROTO_AH,
            ah_next_header=pk.IPPROTO_VRRP,
            ah_ok=ah_ok,
        )
        rejection = pk.validate(adv, self.expected, ctx)
        if rejection is not None:
            st.count_rejection(self.stats, rejection)
            self._reject(
                rejection.label, lambda: _rejection_text(rejection, pkt, adv, self.expected)
            )
            return
        assert self._loop is not None
        st.count_accepted(self.stats, adv.priority)
        rx = RxAdvert(adv.priority, pkt.src_raw, adv.advert_int)
        if pkt.proto != pk.IPPROTO_AH:
            if len(self._rx_ok) > 64:  # bounded: a peer per source address
                self._rx_ok.clear()
            self._rx_ok[pkt.src_raw] = ((pkt.dst_raw, pkt.ttl, pkt.payload), rx)
        now = self._loop.time()
        actions = self.fsm.advert_received(now, rx)
        if not actions:
            self._offer_repeat(pkt, rx, now)
        self.run(actions)

    def _on_signed_packet(self, pkt: RawPacket, verifier: hm.Verifier) -> None:
        """An advert for an auth_hmac instance: never a stamped repeat nor a
        cached acceptance, since an exact repeat is precisely a replay."""
        checked = hm.check_advert(
            pkt.payload,
            expected=self.expected,
            ctx=pk.RxContext(src=pkt.src, dst=pkt.dst, ttl=pkt.ttl, ah=pkt.proto == pk.IPPROTO_AH),
            verifier=verifier,
            wall=time.time(),
            v3_checksum_as_v2=self.cfg.v3_checksum_as_v2,
        )
        if checked.error is not None:
            self._reject("malformed", f"malformed packet from {pkt.src}: {checked.error}")
            return
        adv = checked.advert
        assert adv is not None
        auth = checked.auth
        if checked.rejection is pk.Rejection.AUTH_EXT and auth is not None and auth.reason:
            label = auth.reason.label
            if auth.reason is hm.Reason.NOT_A_PEER:
                label = pk.Rejection.UNICAST_SRC_NOT_PEER.label  # no auth_ext counter
            else:
                label = f"auth_ext_{label}"
            self._reject(label, _auth_ext_text(auth, pkt, verifier))
            return
        if checked.rejection is not None:
            st.count_rejection(self.stats, checked.rejection)
            self._reject(
                checked.rejection.label,
                _rejection_text(checked.rejection, pkt, adv, self.expected),
            )
            return
        if auth is not None and verifier.time_mode and abs(auth.skew) > verifier.window // 2:
            # keepalived warns before the clocks drift out of the window
            self._log_limited(
                "auth_ext_clock_skew",
                f"authentication clock skew {auth.skew} sec from {pkt.src} approaching "
                f"window {verifier.window} sec",
            )
        assert self._loop is not None
        st.count_accepted(self.stats, adv.priority)
        rx = RxAdvert(adv.priority, pkt.src_raw, adv.advert_int)
        self.run(self.fsm.advert_received(self._loop.time(), rx))

    def _offer_repeat(self, pkt: RawPacket, rx: RxAdvert, now: float) -> None:
        """Let the receiver stamp exact repeats of ``pkt`` if the machine agrees."""
        if pkt.key is None or self._rx is None:
            return
        slot = RepeatSlot(
            pkt.key, pkt.check, now, self._slot_expired, self.fsm.master_down_interval
        )
        if not self.fsm.offer_repeat(slot, rx):
            return
        slot.hold = self.fsm.next_deadline or now
        self._drop_repeat()
        self._repeat_slot = slot
        self._rx.add_repeat(slot)

    def _slot_expired(self, now: float) -> None:
        """The receiver's watchdog: no repeat of the master's advert for a
        Master_Down_Interval (the machine decides; see io.RepeatSlot)."""
        self.run(self.fsm.timer_expired(now))

    def _drop_repeat(self) -> None:
        """Forget the repeat slot (its hits are counted as received adverts)."""
        slot = self._repeat_slot
        if slot is None:
            return
        self.counters["adverts_received"] += slot.hits
        st.count_accepted(self.stats, self._repeat_priority(), slot.hits)
        slot.hits = 0
        slot.live = False
        if self._rx is not None:
            self._rx.drop_repeat(slot)
        self._repeat_slot = None

    def _dropped_early(self, why: pk.Rejection | pk.PacketErrorKind) -> bool:
        """Count a packet :func:`pk.precheck` refused exactly as the full
        path would, and say True; unless its rate-limited log line is due,
        then say False and let the full path count it and write the line
        (its text needs the decoded advert)."""
        if isinstance(why, pk.Rejection):
            label = why.label
        elif why is pk.PacketErrorKind.BAD_VERSION:
            label = pk.Rejection.VERSION.label
        else:
            label = "malformed"
        if time.monotonic() - self._last_log.get(label, -RATE_LIMIT_S) >= RATE_LIMIT_S:
            return False
        if isinstance(why, pk.Rejection):
            st.count_rejection(self.stats, why)
        elif why is pk.PacketErrorKind.BAD_VERSION:
            st.count_rejection(self.stats, pk.Rejection.VERSION)
        else:
            st.count_decode_kind(self.stats, why)
        self.counters[f"rx_drop_{label}"] += 1
        return True

    def _reject(self, reason: str, text: str | Callable[[], str]) -> None:
        self.counters[f"rx_drop_{reason}"] += 1
        self._log_limited(reason, text)

    def _log_limited(self, reason: str, text: str | Callable[[], str]) -> None:
        """Log ``text`` at most once per RATE_LIMIT_S and reason; a callable
        is only called then (a flood formats nothing)."""
        now = time.monotonic()
        if now - self._last_log.get(reason, -RATE_LIMIT_S) >= RATE_LIMIT_S:
            self._last_log[reason] = now
            log.warning("(%s) %s", self.name, text if isinstance(text, str) else text())

    # -- effects --------------------------------------------------------------------
    def _add_vips(self) -> None:
        if self.fw_rules is not None:
            self.fw_rules.add()  # keepalived: the drop rule before the VIPs
        for vip, dev in self._vip_devs:
            self.netlink.add_address(vip, dev)
        if self.cfg.virtual_routes:
            self.netlink.routes("add", self.cfg.virtual_routes, self.ifname)
        if self.cfg.virtual_rules:
            self.netlink.rules("add", self.cfg.virtual_rules)

    def _remove_vips(self) -> None:
        if self.cfg.virtual_rules:
            self.netlink.rules("del", self.cfg.virtual_rules)
        if self.cfg.virtual_routes:
            self.netlink.routes("del", self.cfg.virtual_routes, self.ifname)
        for vip, dev in self._vip_devs:
            self.netlink.del_address(vip, dev)
        if self.fw_rules is not None:
            self.fw_rules.remove()  # keepalived: after the VIPs

    def gratuitous_addresses(self) -> list[tuple[str, str]]:
        """(interface, address) pairs: GARP/NA go out where the address is,
        a VMAC's from the virtual MAC (vmac_xmit_base too, as keepalived)."""
        return [(v.dev or dev, str(v.address.ip)) for v, dev in self._vip_devs]

    def _start_garp(self, lower_prio: bool) -> None:
        if self._garp_task is not None:
            self._garp_task.cancel()
        if lower_prio:
            delay = resolved(self.cfg.garp_lower_prio_delay, "garp_lower_prio_delay")
            repeat = resolved(self.cfg.garp_lower_prio_repeat, "garp_lower_prio_repeat")
            # keepalived 2.2.7 vrrp.c (vrrp_state_master_rx): one set at once, a second
            # one garp_lower_prio_delay later (vrrp_lower_prio_gratuitous_arp_thread),
            # as on becoming master; seen on the wire in tests/test_vrrp_garp.py.
            self._garp_task = asyncio.ensure_future(self._garp_burst(repeat, delay))
            self._garp_task.set_name(f"garp-lower-prio:{self.name}")
            return
        repeat = resolved(self.cfg.garp_master_repeat, "garp_master_repeat")
        delay = resolved(self.cfg.garp_master_delay, "garp_master_delay")
        self._garp_task = asyncio.ensure_future(self._garp_burst(repeat, delay))
        self._garp_task.set_name(f"garp:{self.name}")
        refresh = resolved(self.cfg.garp_master_refresh, "garp_master_refresh")
        if refresh > 0 and (self._refresh_task is None or self._refresh_task.done()):
            self._refresh_task = asyncio.ensure_future(self._garp_refresh(refresh))
            self._refresh_task.set_name(f"garp-refresh:{self.name}")

    async def _garp_burst(self, repeat: int, delay: float) -> None:
        """keepalived: ``repeat`` GARPs now (on becoming master, or on a lower-priority
        advert as master), then again after ``delay`` seconds (0: no second set)."""
        for wait in [0.0, delay] if delay > 0 else [0.0]:
            if wait:
                await asyncio.sleep(wait)
            if self.fsm.state is not State.MASTER:
                return
            await self._send_gratuitous(repeat)

    async def _garp_refresh(self, every: float) -> None:
        while self.fsm.state is State.MASTER:
            await asyncio.sleep(every)
            if self.fsm.state is not State.MASTER:
                return
            await self._send_gratuitous(
                resolved(self.cfg.garp_master_refresh_repeat, "garp_master_refresh_repeat")
            )

    async def _send_gratuitous(self, repeat: int) -> None:
        interval = self.gd.vrrp_gna_interval if self.family == 6 else self.gd.vrrp_garp_interval
        by_dev: dict[str, list[str]] = {}
        for dev, addr in self.gratuitous_addresses():
            by_dev.setdefault(dev, []).append(addr)
        for i in range(max(repeat, 0)):
            for dev, addrs in by_dev.items():
                mac = self.netlink.mac(dev)
                if mac is not None:
                    self.counters["gratuitous_sent"] += self.netlink.gratuitous(dev, mac, addrs)
            if i + 1 < repeat:
                await asyncio.sleep(interval)

    # -- events -----------------------------------------------------------------------
    def _transition(self, t: Transition) -> None:
        self.last_transition = time.time()
        self.last_reason = t.reason
        self.previous_state = t.old.value
        self.counters[f"became_{t.new.value.lower()}"] += 1
        if t.new is State.MASTER:
            self.stats["become_master"] += 1
        elif t.old is State.MASTER:
            self.stats["release_master"] += 1
        if t.new in (State.MASTER, State.BACKUP, State.FAULT, State.STOP):
            self._event(t.new.value, previous=t.old.value, detail=t.reason)

    def _event(self, state: str, previous: str | None = None, detail: str = "") -> None:
        with contextlib.suppress(Exception):
            self.emit(
                StateEvent(
                    kind=EventKind.INSTANCE,
                    name=self.name,
                    state=state,
                    priority=self.fsm.effective_priority,
                    previous=previous,
                    router_id=self.router_id,
                    subject=self.cfg,
                    detail=detail,
                )
            )

    def _master_seen(self) -> str | None:
        """The master as this instance sees it: ourselves when MASTER, the
        source of the last accepted advert when BACKUP."""
        if self.fsm.state is State.MASTER:
            return self.src or None
        if self.fsm.state is State.BACKUP and self.fsm.master_src is not None:
            return pk_ip(self.fsm.master_src)
        return None

    def status(self) -> dict[str, Any]:
        slot = self._repeat_slot
        if slot is not None:
            self.counters["adverts_received"] += slot.hits
            st.count_accepted(self.stats, self._repeat_priority(), slot.hits)
            slot.hits = 0
        return {
            "name": self.name,
            "state": self.fsm.state.value,
            "interface": self.ifname,
            "vmac": self.vmac.name if self.vmac is not None else None,
            "vrid": self.cfg.virtual_router_id,
            "version": self.cfg.version,
            "priority": self.cfg.priority,
            "effective_priority": self.fsm.effective_priority,
            "advert_int": self.cfg.advert_int,
            "source": self.src,
            "vips": [str(v.address) for v in self.vips],
            "last_transition": self.last_transition,
            "last_transition_reason": self.last_reason,
            "previous_state": self.previous_state,
            "master": self._master_seen(),
            "master_priority": self.fsm.master_priority,
            "counters": dict(self.counters),
            **self._auth_hmac_status(),
            # the interface's receiver, shared by the instances on it
            "receiver_drops": dict(self._rx.drops) if self._rx is not None else {},
            **self._dump_status(),
        }

    def _repeat_priority(self) -> int:
        # stamped repeats are exact copies of the master's accepted advert
        return self.fsm.master_priority or 0

    def clear_stats(self) -> None:
        """keepalived's STATS_CLEAR signal (after the stats were read)."""
        self.stats.clear()

    def _dump_status(self) -> dict[str, Any]:
        """What keepalived's state dumps show and the configuration does not
        (core/shell/dumps.py renders them)."""
        fsm = self.fsm
        wantstate = fsm.state.value
        if fsm.wants_master and fsm.state is State.BACKUP:
            wantstate = State.MASTER.value
        deadline = fsm.next_deadline
        read_timeout = None
        if deadline is not None and self._loop is not None:
            read_timeout = time.time() + (deadline - self._loop.time())
        return {
            "stats": st.as_dict(self.stats),
            "read_timeout": read_timeout,
            "wantstate": wantstate,
            "base_priority": fsm.base_priority,
            "master_priority": self.seen_master_priority,
            "master_src": pk_ip(fsm.master_src) if fsm.master_src else None,
            "master_adver_int": fsm.master_adver_int,
            "master_down_interval": fsm.master_down_interval,
            "in_fault": fsm.faulted,
        }

    def _auth_hmac_status(self) -> dict[str, Any]:
        verifier = self.hmac_verifier
        if verifier is None:
            return {}
        conf = verifier.config
        return {
            "auth_hmac": {
                "mode": conf.mode.value,
                "active_key": conf.active_key,
                "keys": sorted(conf.keys),
                "anti_replay": conf.anti_replay.value,
                "time_window": verifier.window,
                # keepalived's JSON names (vrrp_json.c)
                "counters": verifier.counters.as_json(),
            }
        }


def _with_reasons(actions: list[Any]) -> list[Any]:
    """The "(name) Entering X STATE" log line gets its transition's reason as
    a tail, "(VI_1) Entering MASTER STATE (master down timer expired)", so
    log watchers matching keepalived's words still match; a line that
    already ends with it ("... (init)") is kept as is."""
    reasons = {a.new.value: a.reason for a in actions if isinstance(a, Transition)}
    out: list[Any] = []
    for action in actions:
        if isinstance(action, Log) and action.message.endswith(" STATE"):
            state = action.message.rsplit(" ", 2)[-2]
            reason = reasons.get(state)
            if reason:
                action = Log(action.level, f"{action.message} ({reason})")
        out.append(action)
    return out


@functools.lru_cache(maxsize=256)
def pk_ip(packed: bytes) -> str:
    try:
        return str(ipaddress.ip_address(packed))
    except ValueError:
        return packed.hex()


def _auth_ext_text(verdict: hm.Verdict, pkt: RawPacket, verifier: hm.Verifier) -> str:
    """keepalived 2.4.3's log line for a rejected trailer."""
    r = verdict.reason
    if r is hm.Reason.MISSING:
        return f"missing authentication trailer from {pkt.src}"
    if r is hm.Reason.NOT_A_PEER:
        return f"unicast source address {pkt.src} not a unicast peer"
    if r is hm.Reason.UNKNOWN_KEY:
        return f"unknown authentication key id from {pkt.src}"
    if r is hm.Reason.INVALID_HMAC:
        return f"invalid authentication HMAC from {pkt.src}"
    if r is hm.Reason.STALE:
        return (
            f"stale authentication trailer from {pkt.src}, clock skew {verdict.skew} sec "
            f"exceeds window {verifier.window} sec"
        )
    if r is hm.Reason.REPLAY:
        return f"replayed authentication trailer from {pkt.src}"
    return f"malformed authentication trailer from {pkt.src}"


def _rejection_text(
    r: pk.Rejection, pkt: RawPacket, adv: pk.Advert, expected: pk.ExpectedConfig
) -> str:
    if r is pk.Rejection.AUTH_FAILURE or r is pk.Rejection.AUTH_TYPE_MISMATCH:
        return f"bad authentication in advert from {pkt.src} ({r.label}) - discarding"
    if r is pk.Rejection.TTL:
        return f"invalid TTL/HL. Received {pkt.ttl} and expect {pk.VRRP_TTL}"
    if r is pk.Rejection.UNICAST_TTL_RANGE:
        lo, hi = expected.ttl_range(pkt.src)
        return f"TTL/HL {pkt.ttl} not in range {lo} - {hi}"
    if r is pk.Rejection.ADVERT_INT_MISMATCH:
        return (
            f"advertisement interval mismatch mine={adv.advert_int_raw} from {pkt.src} - discarding"
        )
    if r is pk.Rejection.VERSION:
        return f"wrong version. Received {adv.version} from {pkt.src}"
    return f"advert from {pkt.src} rejected: {r.label}"
