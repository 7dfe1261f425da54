"""Rules that depend on several values, decided once after parsing.

Each rule follows keepalived's behaviour (keepalived.conf(5) and what
``keepalived -t`` reports); where keepalived drops an instance the error
carries its place.
"""

from __future__ import annotations

import math

from pykeepalived.core.config import lvs_syncd
from pykeepalived.core.config import model as m
from pykeepalived.core.config.errors import Diagnostics
from pykeepalived.core.config.lvs_checks import check_virtual_servers
from pykeepalived.core.config.trackrefs import check_track_references


def apply(cfg: m.Config, diag: Diagnostics) -> None:
    gd = cfg.global_defs
    delay_after_boot(gd, diag)
    seen_vrids: dict[tuple[str | None, int, int, int], m.VrrpInstance] = {}
    names: set[str] = set()
    vmac_names: dict[str, str] = {}
    for vi in cfg.vrrp_instances:
        _instance(vi, gd, diag)
        if isinstance(vi.use_vmac, str):
            # keepalived's use_vmac handler: a name is one instance's only.
            user = vmac_names.setdefault(vi.use_vmac, vi.name)
            if user != vi.name:
                diag.warning(
                    vi.place,
                    f"({vi.name}) VRRP instance {user} is already using {vi.use_vmac}"
                    " - ignoring name",
                )
                vi.use_vmac = True
        if vi.name in names:
            diag.error(vi.place, f"({vi.name}) vrrp_instance declared twice")
        names.add(vi.name)
        if vi.virtual_router_id is not None and vi.interface is not None and not vi.unicast_peer:
            key = (vi.interface, vi.family, vi.virtual_router_id, vi.version or 2)
            other = seen_vrids.get(key)
            if other is not None:
                diag.error(
                    vi.place,
                    f"({vi.name}) virtual_router_id {vi.virtual_router_id} on {vi.interface} "
                    f"is already used by {other.name} at {other.place}",
                )
            seen_vrids[key] = vi
    for sg in cfg.vrrp_sync_groups:
        for member in sg.group:
            if member not in names:
                diag.error(sg.place, f"vrrp_sync_group {sg.name}: unknown vrrp_instance '{member}'")
        if not sg.group:
            diag.notice(sg.place, f"vrrp_sync_group {sg.name} has no members")
        elif len(sg.group) == 1:
            # keepalived 2.2.7 -t exits 5 on this one.
            diag.warning(
                sg.place,
                f"Sync group {sg.name} has only 1 virtual router(s) - this probably isn't what you want",
            )
        if not sg.sync_group_tracking_weight:
            for member in sg.group:
                member_vi = cfg.instance(member)
                if member_vi is not None:
                    _sync_group_weights(cfg, member_vi, diag)
    # Named trackers (vrrp_script, ...) come from plugins; resolve references once.
    check_track_references(cfg, diag)
    groups = {g.name for g in cfg.virtual_server_groups}
    for vs in cfg.virtual_servers:
        if vs.group is not None and vs.group not in groups:
            diag.error(vs.place, f"virtual_server group '{vs.group}' is not defined")
    # keepalived 2.2.7 validate_check_config: each a config error, corrected.
    check_virtual_servers(cfg, diag)
    lvs_syncd.resolve(cfg, diag)


def _instance(vi: m.VrrpInstance, gd: m.GlobalDefs, diag: Diagnostics) -> None:
    tag = f"({vi.name})"
    if not vi.state:
        # keepalived: an address owner without a configured state starts as
        # MASTER; with an explicit "state BACKUP" it waits like any backup.
        vi.state = "MASTER" if vi.priority == 255 else "BACKUP"
    if vi.virtual_router_id is None:
        diag.error(vi.place, f"{tag} the virtual router id must be set")
    if vi.interface is None and not vi.unicast_peer:
        diag.error(vi.place, f"{tag} interface must be set")
    elif vi.interface is None:
        # keepalived 2.2.7 -t reports "(VI) Unknown interface!" (exit 5) and
        # runs without this instance; so does the daemon (manager.py).
        diag.warning(vi.place, f"{tag} interface must be set; instance not started")
    if vi.native_ipv6:
        _native_ipv6(vi, diag)
    if vi.version is None:
        vi.version = gd.vrrp_version
    if vi.nopreempt:
        vi.preempt = False
    if vi.state == "MASTER" and not vi.preempt:
        # keepalived.conf(5): "For this to work, the initial state must not be MASTER."
        diag.notice(vi.place, f"{tag} warning - nopreempt will not work with initial state MASTER")
        vi.preempt = True
    if vi.state == "MASTER" and vi.preempt_delay:
        diag.notice(
            vi.place, f"{tag} warning - preempt_delay will not work with initial state MASTER"
        )
        vi.preempt_delay = 0.0
    if vi.version == 2:
        if vi.advert_int < 1 or vi.advert_int != math.floor(vi.advert_int):
            rounded = max(1.0, float(round(vi.advert_int)))
            diag.warning(
                vi.place,
                f"{tag} VRRPv2 advert_int must be whole seconds; {vi.advert_int:g} becomes {rounded:g}",
            )
            vi.advert_int = rounded
    else:
        if vi.advert_int > 40.95:
            diag.warning(
                vi.place,
                f"{tag} VRRPv3 advert_int {vi.advert_int:g} is more than 40.95; using 40.95",
            )
            vi.advert_int = 40.95
        vi.advert_int = round(vi.advert_int * 100) / 100
        if vi.authentication is not None:
            diag.warning(vi.place, f"{tag} authentication is not supported with VRRPv3; ignored")
            vi.authentication = None
    if vi.authentication is not None:
        auth = vi.authentication
        if len(auth.auth_pass) > 8:
            diag.notice(
                auth.place,
                f"{tag} auth_pass is longer than 8 characters; only the first 8 are used",
            )
            auth.auth_pass = auth.auth_pass[:8]
        if auth.auth_type == "NONE":
            diag.error(auth.place, f"{tag} authentication block without auth_type")
    if vi.priority == 255:
        for ref in vi.tracks:
            if ref.weight not in (None, 0):
                diag.notice(
                    ref.place,
                    f"{tag} address owner (priority 255) cannot use tracking weights; "
                    f"{ref.kind} {ref.name} weight {ref.weight} treated as 0",
                )
                ref.weight = 0
    if not vi.virtual_ipaddress and not vi.no_virtual_ipaddress:
        diag.notice(vi.place, f"{tag} no virtual_ipaddress configured")
    families = {v.address.version for v in vi.virtual_ipaddress}
    if len(families) > 1:
        diag.error(
            vi.place, f"{tag} virtual_ipaddress mixes IPv4 and IPv6; use virtual_ipaddress_excluded"
        )
    if vi.family == 6 and vi.version == 2:
        diag.warning(vi.place, f"{tag} VRRPv2 does not support IPv6; using version 3")
        vi.version = 3
    for peer in vi.unicast_peer:
        if peer.address.version != vi.family:
            diag.error(
                peer.place,
                f"{tag} unicast_peer {peer.address} is not of the instance's address family",
            )
    _strict_and_accept(vi, gd, diag)
    # pykeepalived extension: the split-brain probes' interval (0: none)
    vi.ext.setdefault(
        "split_brain_probe_interval", gd.ext.get("vrrp_split_brain_probe_interval", 0.0)
    )
    for attr, glob in (
        ("garp_master_delay", gd.vrrp_garp_master_delay),
        ("garp_master_repeat", gd.vrrp_garp_master_repeat),
        ("garp_master_refresh", gd.vrrp_garp_master_refresh),
        ("garp_master_refresh_repeat", gd.vrrp_garp_master_refresh_repeat),
        ("lower_prio_no_advert", gd.vrrp_lower_prio_no_advert),
        ("higher_prio_send_advert", gd.vrrp_higher_prio_send_advert),
        ("down_timer_adverts", gd.vrrp_down_timer_adverts),
        ("check_unicast_src", gd.vrrp_check_unicast_src),
        ("skip_check_adv_addr", gd.vrrp_skip_check_adv_addr),
        ("strict_mode", gd.vrrp_strict),
    ):
        if getattr(vi, attr) is None:
            setattr(vi, attr, glob)
    # keepalived 2.2.7 (vrrp.c): the global lower-priority GARP settings default
    # to the global garp_master ones; an instance takes the global value, or 0
    # in strict mode, where configured ones are reset with a config error.
    lower: tuple[tuple[str, float | None, float], ...] = (
        ("garp_lower_prio_repeat", gd.vrrp_garp_lower_prio_repeat, gd.vrrp_garp_master_repeat),
        ("garp_lower_prio_delay", gd.vrrp_garp_lower_prio_delay, gd.vrrp_garp_master_delay),
    )
    for name, global_value, master_value in lower:
        own = getattr(vi, name)
        if own is None:
            default = global_value if global_value is not None else master_value
            setattr(vi, name, 0 if vi.strict_mode else default)
        elif vi.strict_mode and own:
            what = "repeat garps" if name.endswith("repeat") else "repeat garp delay"
            diag.warning(vi.place, f"{tag} Strict mode requires no {what}. resetting")
            setattr(vi, name, 0)
    if vi.smtp_alert is None:
        vi.smtp_alert = gd.smtp_alert_vrrp if gd.smtp_alert_vrrp is not None else gd.smtp_alert
    if vi.auth_hmac is not None:
        _auth_hmac(vi, tag, diag)
    if vi.strict_mode and vi.authentication is not None:
        diag.error(vi.place, f"{tag} authentication is not allowed with strict mode")
    _vmac(vi, diag)
    _since_keepalived_23(vi, gd, tag, diag)


def _since_keepalived_23(vi: m.VrrpInstance, gd: m.GlobalDefs, tag: str, diag: Diagnostics) -> None:
    """Instance rules keepalived 2.2.8 to 2.4 added (docs/config.md)."""
    if vi.no_virtual_ipaddress and vi.strict_mode:
        # keepalived 2.4.3 vrrp.c: a config warning, then the VIP rules apply
        diag.warning(
            vi.place,
            f"{tag} no_virtual_ipaddress and strict mode incompatible, "
            "clearing no_virtual_ipaddress",
        )
        vi.no_virtual_ipaddress = False
        if not vi.virtual_ipaddress:
            diag.notice(vi.place, f"{tag} no virtual_ipaddress configured")
    # keepalived 2.4: the global v3_checksum_as_v2 is every instance's default
    vi.v3_checksum_as_v2 = vi.v3_checksum_as_v2 or gd.v3_checksum_as_v2
    # keepalived 2.3.3+ (vrrp_data.c): a repeated unicast_peer is a config
    # error and dropped; the first one (with its options) stays (2.2.7 kept
    # both).
    seen: set[object] = set()
    peers: list[m.UnicastPeer] = []
    for peer in vi.unicast_peer:
        if peer.address in seen:
            diag.warning(peer.place, f"{tag} {peer.address} - duplicate unicast_peer")
            continue
        seen.add(peer.address)
        peers.append(peer)
    vi.unicast_peer = peers


def delay_after_boot(gd: m.GlobalDefs, diag: Diagnostics, uptime: float | None = None) -> None:
    """keepalived 2.4 ``vrrp_delay_after_boot``: the VRRP startup delay is
    what is left of SECS since boot (``/proc/uptime``); with
    ``vrrp_startup_delay`` too, the longer of the two."""
    secs = gd.vrrp_delay_after_boot
    if secs is None:
        return
    if uptime is None:
        try:
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            diag.warning(
                gd.place, "Unable to read /proc/uptime for vrrp_delay_after_boot - ignoring"
            )
            return
    left = round(secs - uptime, 3)
    if left > gd.vrrp_startup_delay:
        gd.vrrp_startup_delay = left


def _strict_and_accept(vi: m.VrrpInstance, gd: m.GlobalDefs, diag: Diagnostics) -> None:
    """keepalived 2.2.7 (vrrp.c vrrp_complete_instance): what strict mode
    (``vrrp_strict``, ``strict_mode``) resets, each a config error that
    keepalived corrects as it says, and accept mode's default: off in strict
    mode, on otherwise, always on for the address owner; accept with VRRPv2
    in strict mode is reset (RFC 3768 has no Accept_Mode).  Instances left
    without accept mode get nftables drop rules for their VIPs
    (core/vrrp/nft_accept.py)."""
    tag = f"({vi.name})"
    strict = vi.strict_mode if vi.strict_mode is not None else gd.vrrp_strict
    owner = vi.priority == 255
    if strict:
        if (vi.state == "MASTER") != owner:
            diag.warning(vi.place, f"{tag} State MASTER must match being address owner")
            vi.state = "MASTER" if owner else "BACKUP"
        if vi.preempt_delay:
            diag.warning(
                vi.place, f"{tag} preempt_delay is incompatible with strict mode - resetting"
            )
            vi.preempt_delay = 0.0
        if vi.down_timer_adverts not in (None, 3):
            diag.warning(
                vi.place, f"{tag} down_timer_adverts is incompatible with strict mode - resetting"
            )
            vi.down_timer_adverts = 3
        if vi.lower_prio_no_advert is False:
            diag.warning(
                vi.place, f"{tag} Strict mode requires no lower priority advert. resetting"
            )
        vi.lower_prio_no_advert = True
        if vi.higher_prio_send_advert:
            diag.warning(
                vi.place,
                f"{tag} strict mode requires higher_prio_send_advert to be clear. resetting",
            )
        vi.higher_prio_send_advert = False
        if vi.ext.pop("use_vmac_mac", None) is not None:
            diag.warning(vi.place, f"{tag}: cannot specify MAC address with strict mode - clearing")
        first = vi.virtual_ipaddress[0].address if vi.virtual_ipaddress else None
        if (
            first is not None
            and first.version == 6
            and not vi.unicast_peer
            and not first.ip.is_link_local
        ):
            diag.warning(vi.place, f"{tag} the first IPv6 VIP address must be link local")
    if vi.accept is None:
        vi.accept = owner or not strict
    if vi.accept and not owner and strict and vi.version == 2:
        diag.warning(
            vi.place,
            f"{tag} warning - accept mode for VRRP version 2 does not comply with RFC3768"
            " - resetting",
        )
        vi.accept = False


def _native_ipv6(vi: m.VrrpInstance, diag: Diagnostics) -> None:
    """keepalived's native_ipv6 makes the instance IPv6 and VRRPv3; IPv4
    addresses after it are dropped (the grammar refused native_ipv6 after
    IPv4 ones)."""
    tag = f"({vi.name})"
    for vip in [v for v in vi.virtual_ipaddress if v.address.version == 4]:
        diag.warning(
            vip.place, f"{tag}: address family must match VRRP instance [{vip.address}] - ignoring"
        )
        vi.virtual_ipaddress.remove(vip)
    if vi.version is None:
        vi.version = 3


def _vmac(vi: m.VrrpInstance, diag: Diagnostics) -> None:
    """use_vmac / vmac_xmit_base rules of keepalived 2.2.7 (vrrp_parser.c
    vrrp_end_handler, vrrp.c vrrp_complete_instance), each a config error
    that keepalived corrects as it says."""
    tag = f"({vi.name})"
    if vi.use_vmac and vi.unicast_peer:
        if vi.interface is None:
            diag.warning(
                vi.place,
                f"{tag}: Cannot use VMAC/ipvlan with unicast and no interface - clearing use_vmac",
            )
            vi.use_vmac = False
        elif not vi.vmac_xmit_base:
            diag.warning(vi.place, f"{tag} unicast with use_vmac requires vmac_xmit_base - setting")
            vi.vmac_xmit_base = True
    if vi.use_vmac and vi.vmac_xmit_base and vi.strict_mode:
        diag.warning(vi.place, f"{tag} xmit_base is incompatible with strict mode - resetting")
        vi.vmac_xmit_base = False
    if vi.vmac_xmit_base and not vi.use_vmac:
        diag.warning(vi.place, f"{tag} vmac_xmit_base is only valid with a vmac")
        vi.vmac_xmit_base = False


#: Top-level keywords whose named blocks hold a tracker's own weight.
TRACKER_BLOCKS = {"script": ("vrrp_script",), "file": ("vrrp_track_file", "track_file")}


def _tracker_weight(cfg: m.Config, kind: str, name: str) -> int:
    """The weight a tracker block declares, whatever shape its plugin stores."""
    for keyword in TRACKER_BLOCKS.get(kind, ()):
        found = cfg.ext.get(keyword)
        items = (
            found.values() if isinstance(found, dict) else found if isinstance(found, list) else []
        )
        for item in items:
            if getattr(item, "name", None) == name:
                return int(getattr(item, "weight", 0) or 0)
    return 0


def _sync_group_weights(cfg: m.Config, vi: m.VrrpInstance, diag: Diagnostics) -> None:
    """keepalived.conf(5), vrrp_sync_group: tracking weights of member
    instances are set to zero unless ``sync_group_tracking_weight`` is set.
    keepalived 2.2.7 reports it as a config error for scripts, files and
    interfaces (not processes)."""
    tag = f"({vi.name})"
    for ref in vi.tracks:
        if ref.kind not in ("script", "file", "interface"):
            continue
        weight = ref.weight if ref.weight is not None else _tracker_weight(cfg, ref.kind, ref.name)
        if not weight:
            continue
        if ref.kind == "script":
            msg = f"{tag} ignoring tracked script {ref.name} with weights due to SYNC group"
        elif ref.kind == "file":
            msg = f"{tag} ignoring tracked file {ref.name} with weight {weight} due to SYNC group"
        else:
            msg = f"{tag} ignoring {ref.name} tracked interface weight due to SYNC group"
        diag.warning(ref.place, msg)
        # The weights are applied (dropped) by the tracking engine
        # (tracking.instance_refs): keepalived drops weighted scripts and files
        # with a weight other than 1 altogether.  Zeroing them here made them
        # weight-0 trackers that could FAULT the instance, which keepalived does
        # not do; and -t still checks their scripts, as keepalived's does.


def _auth_hmac(vi: m.VrrpInstance, tag: str, diag: Diagnostics) -> None:
    """keepalived 2.4.3 (vrrp.c, vrrp_complete_instance): auth_hmac replaces
    the legacy authentication, needs its active key among its keys (else the
    whole block is dropped) and strict mode forces mode enforce."""
    ah = vi.auth_hmac
    assert ah is not None
    if vi.authentication is not None:
        diag.warning(
            ah.place,
            f"{tag} auth_hmac cannot be combined with authentication, dropping legacy auth",
        )
        vi.authentication = None
    if all(k.key_id != ah.active_key for k in ah.keys):
        diag.warning(
            ah.place,
            f"{tag} auth_hmac active_key {ah.active_key or 0} is not defined, disabling extension",
        )
        vi.auth_hmac = None
        return
    if vi.strict_mode and ah.mode != "enforce":
        diag.warning(ah.place, f"{tag} strict mode requires auth_hmac mode enforce")
        ah.mode = "enforce"
