"""Typed model of keepalived.conf.

Defaults are keepalived's (keepalived.conf(5) and its behaviour).  Fields
added by plugins (trackers, checkers, notifiers) land in ``ext`` keyed by
the keyword, or in the list fields named by the plugin's keyword
declaration (``checkers`` of a real server, ``tracks`` of an instance).
Value-dependent semantics are decided once, in :mod:`.semantics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pykeepalived.core.config.errors import UNKNOWN_PLACE, Place
from pykeepalived.core.config.schema import IPAddress, IPInterface, Script

# -- global_defs --------------------------------------------------------------


T = TypeVar("T")


@dataclass(slots=True)
class LvsSyncDaemon:
    """``lvs_sync_daemon INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N]
    [ttl N] [group ADDR]`` (global_defs), or the deprecated vrrp_instance
    ``lvs_sync_daemon_interface INTERFACE``: the kernel's IPVS connection sync
    daemon (core/lvs/syncd.py).  None values are the kernel's defaults."""

    interface: str
    place: Place = UNKNOWN_PLACE
    #: The VRRP instance whose state picks master or backup; None: both run
    #: (keepalived 2.2.7's checker process does that without an instance).
    instance: str | None = None
    #: None until semantics.py: the instance's virtual_router_id, else 0.
    syncid: int | None = None
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: IPAddress | None = None
    #: Given as vrrp_instance ``lvs_sync_daemon_interface`` (deprecated).
    from_instance: bool = False


@dataclass(slots=True)
class GlobalDefs:
    place: Place = UNKNOWN_PLACE
    router_id: str | None = None
    #: Interface of static addresses/routes without ``dev`` (keepalived.conf(5)).
    default_interface: str = "eth0"
    #: Do not send emails about FAULT states.
    no_email_faults: bool = False
    notification_email: list[str] = field(default_factory=list)
    notification_email_from: str | None = None
    #: (host, port); port 25 unless given.
    smtp_server: tuple[str, int] | None = None
    smtp_helo_name: str | None = None
    smtp_connect_timeout: float = 30.0
    smtp_alert: bool | None = None
    smtp_alert_vrrp: bool | None = None
    smtp_alert_checker: bool | None = None
    # pykeepalived extensions (documented in docs/): STARTTLS and AUTH.
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    enable_script_security: bool = False
    script_user: tuple[str, str | None] | None = None
    vrrp_version: int = 2
    vrrp_mcast_group4: IPAddress | None = None
    vrrp_mcast_group6: IPAddress | None = None
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    vrrp_garp_lower_prio_delay: float | None = None
    vrrp_garp_lower_prio_repeat: int | None = None
    vrrp_lower_prio_no_advert: bool = False
    vrrp_higher_prio_send_advert: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_strict: bool = False
    vrrp_down_timer_adverts: int = 3
    vrrp_startup_delay: float = 0.0
    #: keepalived 2.4: seconds after boot (semantics.py makes it a startup delay)
    vrrp_delay_after_boot: float | None = None
    #: keepalived 2.4: the default of every instance's v3_checksum_as_v2
    v3_checksum_as_v2: bool = False
    vrrp_notify_fifo: Script | None = None
    vrrp_notify_fifo_script: Script | None = None
    notify_fifo: Script | None = None
    notify_fifo_script: Script | None = None
    lvs_notify_fifo: Script | None = None
    lvs_notify_fifo_script: Script | None = None
    #: Flush the kernel's IPVS table at start-up.
    lvs_flush: bool = False
    #: None: remove our services one by one at stop; []: flush everything;
    #: ["VS"]: remove our virtual servers without their real servers first.
    lvs_flush_on_stop: list[str] | None = None
    #: pykeepalived: "auto" (IPVS if the kernel has it, else nftables), "ipvs", "nftables".
    lvs_backend: str = "auto"
    lvs_sync_daemon: LvsSyncDaemon | None = None
    #: keepalived 2.3.3+ dump file paths (None: $TMPDIR/keepalived.*) and
    #: the JSON dump's layout (1: a list, 2: {"vrrp": [...]}); shell/dumps.py
    state_dump_file: str | None = None
    stats_dump_file: str | None = None
    json_dump_file: str | None = None
    json_version: int = 1
    script_timeout: float | None = None
    ext: dict[str, Any] = field(default_factory=dict)


# -- addresses, routes, rules ------------------------------------------------


@dataclass(slots=True)
class VirtualAddress:
    """One line of virtual_ipaddress / static_ipaddress."""

    address: IPInterface
    place: Place = UNKNOWN_PLACE
    dev: str | None = None
    brd: IPAddress | None = None
    scope: str | None = None
    label: str | None = None
    peer: IPInterface | None = None
    no_track: bool = False
    home: bool = False
    nodad: bool = False
    noprefixroute: bool = False
    autojoin: bool = False
    preferred_lft: int | None = None
    track_group: str | None = None

    @property
    def prefix_given(self) -> bool:
        return True


@dataclass(slots=True)
class Route:
    """One line of virtual_routes / static_routes, kept as ip-route words."""

    words: list[str]
    place: Place = UNKNOWN_PLACE
    dest: str | None = None
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    table: str | None = None
    metric: int | None = None
    no_track: bool = False


@dataclass(slots=True)
class Rule:
    """One line of virtual_rules / static_rules, kept as ip-rule words."""

    words: list[str]
    place: Place = UNKNOWN_PLACE
    no_track: bool = False


# -- VRRP -----------------------------------------------------------------------


@dataclass(slots=True)
class Authentication:
    place: Place = UNKNOWN_PLACE
    auth_type: str = "NONE"  # PASS or AH
    auth_pass: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"Authentication(auth_type={self.auth_type!r}, auth_pass='***')"


@dataclass(slots=True)
class AuthHmacKey:
    """``key ID VALUE`` of an ``auth_hmac`` block (the value decoded)."""

    key_id: int
    secret: bytes  # masked in dumps (dump.SECRET_FIELDS)
    place: Place = UNKNOWN_PLACE

    def __repr__(self) -> str:  # never show the secret
        return f"AuthHmacKey(key_id={self.key_id}, secret=<{len(self.secret)} bytes>)"


@dataclass(slots=True)
class AuthHmac:
    """keepalived 2.4's ``auth_hmac`` block (an HMAC-SHA256 advert trailer).

    ``active_key`` None: not given (keepalived then disables the block);
    ``time_window`` None: derived from advert_int by the engine."""

    place: Place = UNKNOWN_PLACE
    keys: list[AuthHmacKey] = field(default_factory=list)
    active_key: int | None = None
    anti_replay: str = "time"  # or monotonic
    time_window: int | None = None
    mode: str = "enforce"  # permissive, receive-only


@dataclass(slots=True)
class UnicastPeer:
    address: IPAddress
    place: Place = UNKNOWN_PLACE
    min_ttl: int = 0
    max_ttl: int = 255


@dataclass(slots=True)
class TrackRef:
    """A reference from an instance or sync group to a tracker.

    ``kind`` is the tracker's keyword family (``script``, ``process``,
    ``interface``, ``file``, ...), ``name`` the tracked object, ``weight``
    the per-reference override (None: the tracker's own weight).
    """

    kind: str
    name: str
    place: Place = UNKNOWN_PLACE
    weight: int | None = None
    reverse: bool = False


@dataclass(slots=True)
class VrrpInstance:
    name: str
    place: Place = UNKNOWN_PLACE
    #: As configured; "" (not given) becomes MASTER for an address owner
    #: (priority 255) and BACKUP otherwise, as keepalived decides.
    state: str = ""
    interface: str | None = None
    virtual_router_id: int | None = None
    priority: int = 100
    advert_int: float = 1.0
    version: int | None = None
    nopreempt: bool = False
    preempt: bool = True
    preempt_delay: float = 0.0
    authentication: Authentication | None = None
    auth_hmac: AuthHmac | None = None
    virtual_ipaddress: list[VirtualAddress] = field(default_factory=list)
    virtual_ipaddress_excluded: list[VirtualAddress] = field(default_factory=list)
    virtual_routes: list[Route] = field(default_factory=list)
    virtual_rules: list[Rule] = field(default_factory=list)
    unicast_src_ip: IPAddress | None = None
    unicast_peer: list[UnicastPeer] = field(default_factory=list)
    mcast_src_ip: IPAddress | None = None
    #: Multicast group of this instance's adverts (default: vrrp_mcast_group4/6).
    mcast_dst_ip: IPAddress | None = None
    check_unicast_src: bool | None = None
    dont_track_primary: bool = False
    tracks: list[TrackRef] = field(default_factory=list)
    use_vmac: str | bool = False
    #: Deprecated ``lvs_sync_daemon_interface IF`` (semantics.py moves it to
    #: global_defs lvs_sync_daemon, as keepalived 2.2.7 does).
    lvs_sync_daemon_interface: LvsSyncDaemon | None = None
    vmac_xmit_base: bool = False
    native_ipv6: bool = False
    smtp_alert: bool | None = None
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify_deleted: Script | None = None
    notify_master_rx_lower_pri: Script | None = None
    notify: Script | None = None
    garp_master_delay: float | None = None
    garp_master_repeat: int | None = None
    garp_master_refresh: float | None = None
    garp_master_refresh_repeat: int | None = None
    garp_lower_prio_delay: float | None = None
    garp_lower_prio_repeat: int | None = None
    lower_prio_no_advert: bool | None = None
    higher_prio_send_advert: bool | None = None
    down_timer_adverts: int | None = None
    strict_mode: bool | None = None
    skip_check_adv_addr: bool | None = None
    accept: bool | None = None
    v3_checksum_as_v2: bool = False
    #: keepalived 2.2.8: no VIPs on purpose (no "No VIP specified" complaint)
    no_virtual_ipaddress: bool = False
    debug: int = 0
    ext: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> int:
        """4 or 6: the family of the first VIP (keepalived's rule); without
        VIPs IPv4, or IPv6 with ``native_ipv6``."""
        for vip in self.virtual_ipaddress:
            return vip.address.version
        return 6 if self.native_ipv6 else 4


@dataclass(slots=True)
class SyncGroup:
    name: str
    place: Place = UNKNOWN_PLACE
    group: list[str] = field(default_factory=list)
    tracks: list[TrackRef] = field(default_factory=list)
    smtp_alert: bool | None = None
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify_deleted: Script | None = None
    notify: Script | None = None
    sync_group_tracking_weight: bool = False
    ext: dict[str, Any] = field(default_factory=dict)


# -- LVS ------------------------------------------------------------------------


@dataclass(slots=True)
class CheckerConf:
    """A health checker block inside real_server, parsed by its plugin."""

    kind: str
    place: Place = UNKNOWN_PLACE
    options: Any = None


@dataclass(slots=True)
class RealServer:
    address: IPAddress
    port: int | None
    place: Place = UNKNOWN_PLACE
    weight: int = 1
    inhibit_on_failure: bool | None = None
    notify_up: Script | None = None
    notify_down: Script | None = None
    smtp_alert: bool | None = None
    lvs_method: str | None = None
    uthreshold: int | None = None
    lthreshold: int | None = None
    delay_loop: float | None = None
    alpha: bool | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    connect_timeout: float | None = None
    virtualhost: str | None = None
    checkers: list[CheckerConf] = field(default_factory=list)
    ext: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SorryServer:
    address: IPAddress
    port: int | None
    place: Place = UNKNOWN_PLACE


@dataclass(slots=True)
class VirtualServer:
    """virtual_server IP PORT | fwmark N | group NAME."""

    place: Place = UNKNOWN_PLACE
    address: IPAddress | None = None
    port: int | None = None
    fwmark: int | None = None
    group: str | None = None
    delay_loop: float = 60.0
    #: "" until semantics: keepalived reports a missing scheduler and uses wlc.
    lb_algo: str = ""
    #: "" until semantics: keepalived reports a missing forwarding method and uses NAT.
    lb_kind: str = ""
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    persistence_engine: str | None = None
    #: "" until semantics: keepalived programs UDP when none is set.
    protocol: str = ""
    ops: bool = False
    ha_suspend: bool = False
    alpha: bool = False
    omega: bool = False
    quorum: int = 1
    hysteresis: int = 0
    #: keepalived's virtual_server ``weight``: of real servers without their own.
    weight: int = 1
    quorum_up: Script | None = None
    quorum_down: Script | None = None
    sorry_server: SorryServer | None = None
    sorry_server_inhibit: bool = False
    sorry_server_lvs_method: str | None = None
    inhibit_on_failure: bool = False
    virtualhost: str | None = None
    smtp_alert: bool | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    connect_timeout: float | None = None
    sched_flags: list[str] = field(default_factory=list)
    tunnel: list[str] = field(default_factory=list)
    real_servers: list[RealServer] = field(default_factory=list)
    ext: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """keepalived's way of naming a virtual server in log lines."""
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        if self.group is not None:
            return f"group {self.group}"
        return f"[{self.address}]:{(self.protocol or 'none').lower()}:{self.port}"


@dataclass(slots=True)
class VirtualServerGroupEntry:
    place: Place = UNKNOWN_PLACE
    first: IPAddress | None = None
    last: IPAddress | None = None
    prefix: int | None = None
    port: int | None = None
    fwmark: int | None = None


@dataclass(slots=True)
class VirtualServerGroup:
    name: str
    place: Place = UNKNOWN_PLACE
    entries: list[VirtualServerGroupEntry] = field(default_factory=list)


# -- the whole file --------------------------------------------------------------


@dataclass(slots=True)
class Config:
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    static_ipaddress: list[VirtualAddress] = field(default_factory=list)
    static_routes: list[Route] = field(default_factory=list)
    static_rules: list[Rule] = field(default_factory=list)
    vrrp_instances: list[VrrpInstance] = field(default_factory=list)
    vrrp_sync_groups: list[SyncGroup] = field(default_factory=list)
    virtual_servers: list[VirtualServer] = field(default_factory=list)
    virtual_server_groups: list[VirtualServerGroup] = field(default_factory=list)
    #: Top-level blocks declared by plugins, by keyword then name.
    ext: dict[str, Any] = field(default_factory=dict)
    config_id: str = ""
    files: list[str] = field(default_factory=list)

    def instance(self, name: str) -> VrrpInstance | None:
        return next((i for i in self.vrrp_instances if i.name == name), None)


def resolved(value: T | None, what: str) -> T:
    """A field that :func:`pykeepalived.core.config.semantics.apply` always fills.

    The parsed model keeps None for "not given" (so global_defs can supply
    it); after semantics it never is.  Engines read such fields through this,
    so that semantics stays the only place that knows the defaults."""
    if value is None:
        raise ValueError(f"{what} was not resolved by config semantics")
    return value
