"""The core blocks of keepalived.conf, declared with :mod:`.schema`.

Checker and tracker keywords are not here: plugins add them through the
``pykeepalived_register_keywords`` hook (see :class:`Grammar`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from pykeepalived.core.config import lvs_syncd
from pykeepalived.core.config import model as m
from pykeepalived.core.config.auth_hmac import auth_hmac_kw
from pykeepalived.core.config.errors import Place
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import (
    BlockSpec,
    Context,
    Converter,
    Invalid,
    ItemSpec,
    Kw,
    build_model,
    choice,
    construct,
    flag,
    integer,
    ip,
    ip_address,
    ip_interface,
    number,
    parse_block,
    parse_int,
    port,
    string,
    sub,
    words,
)

VRRP_SCOPES = {"site", "link", "host", "nowhere", "global"}
LVS_SCHEDULERS = (
    "rr",
    "wrr",
    "lc",
    "wlc",
    "lblc",
    "lblcr",
    "dh",
    "sh",
    "sed",
    "nq",
    "fo",
    "ovf",
    "mh",
    "twos",
)
LVS_METHODS = ("NAT", "DR", "TUN")

# keepalived keywords we recognise but do not implement: parsed, and a
# warning with the place says they are ignored (never silently dropped).
UNSUPPORTED: dict[str, dict[str, str]] = {
    "global_defs": {
        k: "no effect in pykeepalived"
        for k in (
            "enable_snmp_vrrp",
            "enable_snmp_checker",
            "enable_snmp_rfc",
            "enable_snmp_rfcv2",
            "enable_snmp_rfcv3",
            "snmp_socket",
            "enable_traps",
            "enable_dbus",
            "dbus_service_name",
            "vrrp_iptables",
            "vrrp_ipsets",
            "vrrp_nftables",
            "nftables_ifindex",
            "nftables_counters",
            "vrrp_no_swap",
            "checker_no_swap",
            "bfd_no_swap",
            "vrrp_rt_priority",
            "checker_rt_priority",
            "bfd_rt_priority",
            "vrrp_cpu_affinity",
            "checker_cpu_affinity",
            "bfd_cpu_affinity",
            "vrrp_priority",
            "checker_priority",
            "bfd_priority",
            "vrrp_rlimit_rttime",
            "checker_rlimit_rttime",
            "bfd_rlimit_rttime",
            "lvs_timeouts",
            "network_namespace",
            "net_namespace",
            "net_namespace_ipvs",
            "namespace_with_ipsets",
            "instance",
            "use_pid_dir",
            "linkbeat_use_polling",
            "child_wait_time",
            "config_save_dir",
            "tmp_config_directory",
            "process_names",
            "process_name",
            "vrrp_process_name",
            "checker_process_name",
            "bfd_process_name",
            "vrrp_netlink_cmd_rcv_bufs",
            "vrrp_netlink_cmd_rcv_bufs_force",
            "vrrp_netlink_monitor_rcv_bufs",
            "vrrp_netlink_monitor_rcv_bufs_force",
            "lvs_netlink_cmd_rcv_bufs",
            "lvs_netlink_cmd_rcv_bufs_force",
            "lvs_netlink_monitor_rcv_bufs",
            "lvs_netlink_monitor_rcv_bufs_force",
            "rs_init_notifies",
            "no_checker_emails",
            "vrrp_rx_bufs_policy",
            "vrrp_rx_bufs_multiplier",
            "umask",
            "random_seed",
            "reload_check_config",
            "reload_time_file",
            "reload_repeat",
            "reload_file",
            "data_use_instance",
            "startup_script",
            "startup_script_timeout",
            "shutdown_script",
            "shutdown_script_timeout",
            "vrrp_owner_ignore_max_auto_priority",
            "max_auto_priority",
            "min_auto_priority_delay",
            "dynamic_interfaces",
            "local_address_mutated",
            "vrrp_min_garp",
            "vrrp_track_process_block",
            "checker_log_all_failures",
            "log_unknown_vrids",
            "vrrp_garp_extra_if",
            "vrrp_ipvs_sync",
            "vrrp_fault_on_missing_interface",
            "fifo_write_vrrp_states_on_reload",
            "vrrp_startup_delay_ignored",
            "smtp_alert_checker_hosts",
            "disable_local_igmp",
            "nftables_ipvs",
            "nftables_ipvs_priority",
            "nftables_ipvs_start_fwmark",
            "process_monitor_rcv_bufs",
            "process_monitor_rcv_bufs_force",
            "vmac_prefix",
            "vmac_addr_prefix",
            "vrrp_notify_priority_changes",
            # keepalived 2.3/2.4
            "dbus_no_interface_name",
            "iproute_etc_dir",
            "iproute_usr_dir",
            "snmp_vs_stats_update_interval",
            "snmp_rs_stats_update_interval",
            "use_symlink_paths",
            "vrrp_owner_ignore_adverts",
        )
    },
    "vrrp_instance": {
        k: "no effect in pykeepalived"
        for k in (
            "mcast_src_ip_unicast",
            "track_bfd",
            "kernel_rx_buf_size",
            "unicast_fault_no_peer",
            "unicast_ttl",
            "notify_priority_changes",
            "vrrp_skip_check_adv_addr",
            "use_vmac_addr",
            "vmac_xmit_base_ipv6",
            "old_unicast_checksum",
            "version_check",
            "promote_secondaries",
            "track_src_ip",
            "garp_extra_if",
            "linkbeat_use_polling",
            "use_ipvlan",
            "vrf",
            # keepalived 2.3/2.4
            "timer_expired_backup",
            "thread_timer_expired",
            "owner_ignore_adverts",
        )
    },
    "virtual_server": {
        k: "no effect in pykeepalived"
        for k in (
            "lvs_flush_on_stop",
            "ip_family",
            "sh-port",
            "sh-fallback",
            "mh-port",
            "mh-fallback",
            "snmp_name",
        )
    },
    "real_server": {k: "no effect in pykeepalived" for k in ("snmp_name", "BFD_CHECK")},
    "vrrp_sync_group": {
        k: "no effect in pykeepalived" for k in ("notify_priority_changes", "track_bfd")
    },
    # Top-level blocks keepalived knows that pykeepalived does not implement.
    "top": {
        k: "not implemented by pykeepalived"
        for k in ("bfd_instance", "garp_group", "linkbeat_interfaces", "track_group")
    },
}


#: keepalived keywords parsed into the model that nothing applies yet.  The
#: value stays in the model (``-d`` shows it) and a notice with the place
#: says it has no effect, so a config never silently means less than it
#: does in keepalived.  Remove an entry when its keyword takes effect.
NOT_APPLIED: dict[str, dict[str, str]] = {
    "virtual_server": {
        "omega": "quorum_down and notify_down are not run at shutdown",
    },
}

#: virtual_ipaddress / static_ipaddress options parsed but not applied.
VIP_OPTIONS_NOT_APPLIED = ("peer", "home", "autojoin", "preferred_lft", "track_group")


def _not_applied_notice(ctx: Context, place: Place, what: str, why: str) -> None:
    ctx.diag.notice(place, f"'{what}' is not supported by pykeepalived ({why}); ignored")


def _mark_not_applied(g: Grammar) -> None:
    for block, kws in NOT_APPLIED.items():
        for name, why in kws.items():
            kw = g.block(block).lookup(name)
            assert kw is not None, f"{block} has no keyword {name}"
            kw.convert = _noticing(kw.convert, why)


def _noticing(convert: Converter, why: str) -> Converter:
    def conv(node: Node, ctx: Context) -> Any:
        value = convert(node, ctx)
        _not_applied_notice(ctx, node.place, node.keyword, why)
        return value

    return conv


@dataclass
class Grammar:
    """All block specs of one configuration load; plugins extend it."""

    blocks: dict[str, BlockSpec] = field(default_factory=dict)

    def block(self, name: str) -> BlockSpec:
        """The spec of block ``name`` ("top", "global_defs", "vrrp_instance",
        "vrrp_sync_group", "virtual_server", "real_server", ...)."""
        try:
            return self.blocks[name]
        except KeyError:
            raise KeyError(f"no block '{name}'; known: {', '.join(sorted(self.blocks))}") from None

    def add(self, block: str, kw: Kw) -> Kw:
        return self.block(block).add(kw)

    @property
    def top(self) -> BlockSpec:
        return self.blocks["top"]


# -- item parsers -----------------------------------------------------------------

_VIP_OPTIONS = {
    "dev": 1,
    "brd": 1,
    "broadcast": 1,
    "scope": 1,
    "label": 1,
    "peer": 1,
    "no_track": 0,
    "home": 0,
    "-nodad": 0,
    "nodad": 0,
    "noprefixroute": 0,
    "autojoin": 0,
    "preferred_lft": 1,
    "track_group": 1,
}


def _options(node: Node, spec: dict[str, int]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    args = node.args
    i = 0
    while i < len(args):
        word = args[i]
        if word not in spec:
            raise Invalid(f"unknown option '{word}'")
        n = spec[word]
        if len(args) - i - 1 < n:
            raise Invalid(f"option '{word}' needs a value")
        out[word] = args[i + 1 : i + 1 + n]
        i += 1 + n
    return out


def parse_vip(node: Node, ctx: Context) -> m.VirtualAddress:
    vip = m.VirtualAddress(ip_interface(node.keyword), node.place)
    opts = _options(node, _VIP_OPTIONS)
    if "dev" in opts:
        vip.dev = opts["dev"][0]
    for key in ("brd", "broadcast"):
        if key in opts:
            vip.brd = ip_address(opts[key][0])
    if "scope" in opts:
        scope = opts["scope"][0]
        if scope not in VRRP_SCOPES and not scope.isdigit():
            raise Invalid(f"scope '{scope}' is not one of {', '.join(sorted(VRRP_SCOPES))}")
        vip.scope = scope
    if "label" in opts:
        vip.label = opts["label"][0]
    if "peer" in opts:
        vip.peer = ip_interface(opts["peer"][0])
    if "preferred_lft" in opts:
        vip.preferred_lft = parse_int(opts["preferred_lft"][0], 0)
    if "track_group" in opts:
        vip.track_group = opts["track_group"][0]
    vip.no_track = "no_track" in opts
    vip.home = "home" in opts
    vip.nodad = "-nodad" in opts or "nodad" in opts
    vip.noprefixroute = "noprefixroute" in opts
    vip.autojoin = "autojoin" in opts
    for opt in VIP_OPTIONS_NOT_APPLIED:
        if opt in opts:
            _not_applied_notice(ctx, node.place, opt, "the address is added without it")
    return vip


_ROUTE_OPTIONS = {
    "src": 1,
    "via": 1,
    "gw": 1,
    "or": 1,
    "dev": 1,
    "scope": 1,
    "table": 1,
    "metric": 1,
    "no_track": 0,
    "blackhole": 0,
    "unreachable": 0,
    "prohibit": 0,
    "throw": 0,
    "proto": 1,
    "type": 1,
    "onlink": 0,
    "mtu": 1,
    "advmss": 1,
    "realms": 1,
    "pref": 1,
    "tos": 1,
    "dsfield": 1,
    "nexthop": 0,
    "weight": 1,
    "preference": 1,
    "initcwnd": 1,
    "initrwnd": 1,
    "features": 1,
    "quickack": 1,
    "congctl": 1,
    "rtt": 1,
    "rttvar": 1,
    "rto_min": 1,
    "ssthresh": 1,
    "cwnd": 1,
    "reordering": 1,
    "hoplimit": 1,
    "expires": 1,
    "fastopen_no_cookie": 1,
    "ttl-propagate": 1,
    "encap": 1,
}


def parse_route(node: Node, ctx: Context) -> m.Route:
    all_words = [node.keyword, *node.args]
    route = m.Route(all_words, node.place)
    args = list(all_words)
    # "src ADDR" may come first; the destination is the first non-option word.
    i = 0
    while i < len(args):
        word = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        if word in ("via", "gw") and val:
            route.via = ip_address(val)
        elif word == "src" and val:
            route.src = ip_address(val)
        elif word == "dev" and val:
            route.dev = val
        elif word == "table" and val:
            route.table = val
        elif word == "metric" and val:
            route.metric = parse_int(val, 0)
        elif word == "no_track":
            route.no_track = True
        elif word in _ROUTE_OPTIONS:
            pass
        elif route.dest is None:
            route.dest = word
            i += 1
            continue
        i += 1 + _ROUTE_OPTIONS.get(word, 0)
    if route.dest is None:
        raise Invalid("route has no destination")
    return route


def parse_rule(node: Node, ctx: Context) -> m.Rule:
    all_words = [node.keyword, *node.args]
    return m.Rule(all_words, node.place, no_track="no_track" in all_words)


def parse_unicast_peer(node: Node, ctx: Context) -> m.UnicastPeer:
    peer = m.UnicastPeer(ip_address(node.keyword), node.place)
    opts = _options(node, {"min_ttl": 1, "max_ttl": 1})
    if "min_ttl" in opts:
        peer.min_ttl = parse_int(opts["min_ttl"][0], 0, 255)
    if "max_ttl" in opts:
        peer.max_ttl = parse_int(opts["max_ttl"][0], 0, 255)
    if peer.min_ttl > peer.max_ttl:
        ctx.warn(
            node.place,
            f"unicast_peer {peer.address}: min_ttl {peer.min_ttl} > max_ttl {peer.max_ttl}"
            " - all packets will be discarded",
        )
    return peer


def parse_group_member(node: Node, ctx: Context) -> str:
    return node.keyword


def parse_vsg_entry(node: Node, ctx: Context) -> m.VirtualServerGroupEntry:
    entry = m.VirtualServerGroupEntry(node.place)
    if node.keyword == "fwmark":
        if not node.args:
            raise Invalid("fwmark needs a number")
        entry.fwmark = parse_int(node.args[0], 0, 2**32 - 1)
        return entry
    text = node.keyword
    if "/" in text:
        iface = ip_interface(text)
        entry.first = iface.network.network_address
        entry.prefix = iface.network.prefixlen
    elif "-" in text.rsplit(".", 1)[-1] or ("-" in text and ":" in text):
        addr, _, last = text.rpartition("-")
        entry.first = ip_address(addr)
        if entry.first.version == 4:
            entry.last = ip_address(".".join([*str(entry.first).split(".")[:3], last]))
        else:
            head = str(entry.first).rsplit(":", 1)[0]
            entry.last = ip_address(f"{head}:{last}")
        if int(entry.last) < int(entry.first):
            raise Invalid(f"range '{text}' ends before it starts")
    else:
        entry.first = ip_address(text)
    if node.args:
        entry.port = port(node.args[0])
    return entry


# -- keyword converters needing several words -----------------------------------


def _script_user(node: Node, ctx: Context) -> tuple[str, str | None]:
    return (node.args[0], node.args[1] if len(node.args) > 1 else None)


def _named(spec: BlockSpec) -> Any:
    def conv(node: Node, ctx: Context) -> Any:
        return build_model(spec, node, ctx, name=node.args[0])

    return conv


def _dump_path(node: Node, ctx: Context) -> str:
    """keepalived 2.3.3: ``<keyword> requires a non-empty path``."""
    if not node.args or not node.args[0]:
        raise Invalid("requires a non-empty path")
    return node.args[0]


# keepalived 2.2.7 reads the GARP settings as whole unsigned numbers
# (vrrp_parser.c, global_parser.c read_unsigned_strvec): "1.5" is an invalid
# number and the keyword is ignored; delays count microseconds in a 32-bit
# timer (UINT_MAX / TIMER_HZ seconds).
_GARP_DELAY = integer(0, 0xFFFFFFFF // 1_000_000)
_UINT = integer(0, 0xFFFFFFFF)
_INT = integer(0, 0x7FFFFFFF)


def _garp_repeat(node: Node, ctx: Context) -> int:
    """``garp_master_repeat``/``..._refresh_repeat``: keepalived 2.2.7 makes 0 a 1."""
    value: int = _UINT(node, ctx)
    if value == 0:
        ctx.warn(node.place, f"{node.keyword} must be greater than 0, setting to 1")
        return 1
    return value


def ms_decimal(node: Node, ctx: Context, *, minimum: float, maximum: float) -> float:
    """A number of seconds with up to 3 decimals, as keepalived 2.3+ reads
    millisecond values (``read_decimal_unsigned_strvec`` with shift 3):
    more decimals are a warning and the value is rounded half up to 1 ms."""
    text = node.args[0]
    value: float = number(minimum, maximum)(node, ctx)
    _, dot, decimals = text.partition(".")
    if dot and len(decimals) > 3:
        ctx.warn(node.place, f"number '{text}' has too many decimal places")
        value = math.floor(value * 1000 + 0.5) / 1000
    return value


def _delay_after_boot(node: Node, ctx: Context) -> float:
    """``vrrp_delay_after_boot SECS``: seconds after boot, not after start
    (semantics.py turns it into a vrrp_startup_delay with /proc/uptime).
    keepalived 2.4.3 reads it as a timer of at most UINT_MAX microseconds."""
    return ms_decimal(node, ctx, minimum=0.001, maximum=4294.967295)


def _lvs_flush_on_stop(node: Node, ctx: Context) -> list[str]:
    """``lvs_flush_on_stop [VS]``: nothing (flush all) or VS."""
    if node.args and node.args[0].upper() != "VS":
        raise Invalid(f"unknown argument '{node.args[0]}' (expected VS or nothing)")
    return list(node.args)


def _lvs_backend(node: Node, ctx: Context) -> str:
    """``lvs_backend auto|ipvs|nftables`` (pykeepalived): what serves the
    virtual servers; auto is IPVS where the kernel has it, else nftables."""
    word = node.args[0].lower()
    if word not in ("auto", "ipvs", "nftables"):
        raise Invalid(f"unknown backend '{node.args[0]}' (expected auto, ipvs or nftables)")
    return word


def _lvs_method_or(default: str | None, server: str = "virtual") -> Any:
    """Case-sensitive as in keepalived 2.2.7, which reports an unknown
    method with the wording below and leaves it unset (a warning: ``-t``
    fails, the daemon runs); an unset one is then the virtual server's, or
    NAT (core/config/lvs_checks.py)."""

    def conv(node: Node, ctx: Context) -> str | None:
        word = node.args[0]
        if word not in LVS_METHODS:
            ctx.warn(node.place, f"PARSER : unknown [{word}] routing method for {server} server.")
            return default
        return word

    return conv


_lvs_method = _lvs_method_or("")


def _protocol(node: Node, ctx: Context) -> str:
    # keepalived 2.2.7: any case; another word is a config error and leaves
    # it unset ("no protocol set - defaulting to UDP" follows, lvs_checks.py).
    word = node.args[0].upper()
    if word not in ("TCP", "UDP", "SCTP"):
        ctx.warn(node.place, f"Unknown protocol {node.args[0]} - ignoring")
        return ""
    return word


def _lb_algo(node: Node, ctx: Context) -> str:
    # Case-sensitive as in keepalived 2.2.7 ("Invalid lvs_scheduler 'RR'"),
    # which then keeps its default scheduler.
    word = node.args[0]
    if word not in LVS_SCHEDULERS:
        # keepalived leaves it unset: "no scheduler set" follows (lvs_checks.py).
        ctx.warn(node.place, f"Invalid lvs_scheduler '{word}' - ignoring")
        return ""
    return word


def _server_addr(node: Node, ctx: Context) -> tuple[Any, int | None]:
    return ip_address(node.args[0]), (port(node.args[1]) if len(node.args) > 1 else None)


def _global_tracking(node: Node, ctx: Context) -> bool:
    # keepalived 2.2.7 reports it as a config error (-t fails) and sets
    # sync_group_tracking_weight, whatever argument follows.
    ctx.warn(
        node.place,
        "global_tracking is deprecated. Use track_interface/script/file on the sync group",
    )
    return True


def _nftables_table(node: Node, ctx: Context) -> str:
    """keepalived 2.2.7 ``nftables [NAME]``: NAME defaults to "keepalived"."""
    if not node.args:
        return "keepalived"
    name = node.args[0]
    if len(name) >= 256:  # NFT_TABLE_MAXNAMELEN
        raise Invalid("nftables table name too long - ignoring")
    if not name.replace("_", "a").replace("-", "a").isalnum() or not name[0].isalpha():
        # what nft(8) takes unquoted (pykeepalived runs nft for the tables)
        raise Invalid(f"nftables table name '{name}' must be letters, digits, '_' or '-'")
    return name


def _flag_off(node: Node, ctx: Context) -> bool:
    return False


def _use_vmac(node: Node, ctx: Context) -> str | bool:
    """``use_vmac [NAME] [MAC]`` (either order, as keepalived: a word with
    a ':' is the MAC).  The MAC goes to ``ext["use_vmac_mac"]``; five octets
    mean the VRID is the sixth."""
    name: str | bool = True
    for word in node.args[:2]:
        if ":" in word:
            mac = _vmac_address(node, ctx, word)
            if mac is not None and ctx.values is not None:
                ctx.values["use_vmac_mac"] = mac
        elif name is not True:
            ctx.warn(node.place, "VMAC interface name already specified")
        elif not _dev_name_valid(word):
            ctx.warn(
                node.place,
                f"VMAC interface name '{word}' too long or invalid characters - ignoring",
            )
        else:
            name = word
    return name


def _dev_name_valid(name: str) -> bool:
    """The kernel's dev_valid_name(): 1..15 characters, no '/', ':' or space."""
    return (
        0 < len(name) < 16
        and name not in (".", "..")
        and not any(c in name for c in "/:")
        and not any(c.isspace() for c in name)
    )


def _vmac_address(node: Node, ctx: Context, word: str) -> str | None:
    """A use_vmac MAC address as keepalived checks it, normalised."""
    parts = word.rstrip(":").split(":")
    try:
        octets = [int(p, 16) for p in parts]
        ok = len(octets) in (5, 6) and all(0 < len(p) <= 2 for p in parts)
    except ValueError:
        ok = False
    if not ok:
        ctx.warn(node.place, f"VMAC invalid MAC address {word} - ignored")
        return None
    if octets[0] & 0x01:
        ctx.warn(node.place, f"VMAC MAC address is multicast {word} - ignoring")
        return None
    if octets[:4] == [0, 0, 0x5E, 0] and octets[4] in (1, 2):
        ctx.warn(
            node.place, f"VMAC MAC address not allowed to be RFC5798 address ({word}) - ignoring"
        )
        return None
    return ":".join(f"{o:02x}" for o in octets)


def _native_ipv6(node: Node, ctx: Context) -> bool:
    """keepalived: IPv6 (and VRRPv3) for the instance, unless something
    before it (a VIP, unicast or multicast address) already made it IPv4."""
    values = ctx.values or {}
    seen = [v.address for v in values.get("virtual_ipaddress", [])[:1]]
    seen += [p.address for p in values.get("unicast_peer", [])[:1]]
    seen += [values[k] for k in ("unicast_src_ip", "mcast_src_ip", "mcast_dst_ip") if k in values]
    if any(a.version == 4 for a in seen):
        ctx.warn(node.place, "Cannot specify native_ipv6 with IPv4 addresses")
        return False
    return True


def _version(node: Node, ctx: Context) -> int:
    v = parse_int(node.args[0], 2, 3)
    return v


def _instance_state(node: Node, ctx: Context) -> str:
    # keepalived compares case-sensitively: "state master" is a config error
    # (and the instance starts as BACKUP).
    return choice("MASTER", "BACKUP", upper=False)(node, ctx)  # type: ignore[no-any-return]


#: keepalived.conf(5): track_interface/track_script/track_bfd weights are
#: -253..253 (keepalived 2.2.7 turns +/-254 into +/-253 with a config error);
#: track_file and track_process allow -254..254.
TRACK_WEIGHT_LIMITS = {"file": 254, "process": 254}
DEFAULT_TRACK_WEIGHT_LIMIT = 253


def _track_refs(kind: str, node: Node, ctx: Context) -> list[m.TrackRef]:
    """``track_X { NAME [weight N [reverse|noreverse]] ... }``."""
    limit = TRACK_WEIGHT_LIMITS.get(kind, DEFAULT_TRACK_WEIGHT_LIMIT)
    refs: list[m.TrackRef] = []
    for child in node.children or []:
        ref = m.TrackRef(kind, child.keyword, child.place)
        args = child.args
        i = 0
        while i < len(args):
            if args[i] == "weight" and i + 1 < len(args):
                ref.weight = parse_int(args[i + 1], -limit, limit)
                i += 2
            elif args[i] == "reverse":
                ref.reverse = True
                i += 1
            elif args[i] == "noreverse":
                ref.reverse = False
                i += 1
            else:
                raise Invalid(
                    f"{child.keyword}: unexpected '{args[i]}' (expected weight N [reverse|noreverse])"
                )
        refs.append(ref)
    return refs


def track_block_kw(name: str, kind: str, owner: str = "core") -> Kw:
    """A ``track_*`` keyword of vrrp_instance / vrrp_sync_group.

    Every ``track_*`` block of an instance adds its references to ``tracks``.
    """

    def conv(node: Node, ctx: Context) -> list[m.TrackRef]:
        return _track_refs(kind, node, ctx)

    return Kw(name, conv, needs_block=True, field="tracks", extend=True, owner=owner)


def _authentication() -> BlockSpec:
    spec = BlockSpec("authentication", model=m.Authentication)
    spec.add(Kw("auth_type", choice("PASS", "AH", upper=False), 1, 1))
    spec.add(Kw("auth_pass", string, 1, 1))
    return spec


def items_kw(
    name: str, parse: Any, options: dict[str, int] | None = None, *, per_line: bool = False
) -> Kw:
    """A block of items.  ``per_line``: each line is one item whatever its
    words (routes and rules in ip(8) syntax); otherwise a word that is not
    one of ``options`` (or an option's value) starts a new item, which is
    how a flattened list is split."""
    spec = BlockSpec(
        name, items=ItemSpec(parse, None if per_line else (options if options is not None else {}))
    )

    def conv(node: Node, ctx: Context) -> Any:
        from pykeepalived.core.config.schema import parse_block

        return parse_block(node.children or [], spec, ctx).get("items", [])

    return Kw(name, conv, needs_block=True, block=spec)


def core_grammar() -> Grammar:
    g = Grammar()
    top = BlockSpec("top level")
    g.blocks["top"] = top

    # global_defs ------------------------------------------------------------
    gd = BlockSpec("global_defs", model=m.GlobalDefs)
    g.blocks["global_defs"] = gd
    gd.add(Kw("router_id", string, 1, 1))
    gd.add(Kw("default_interface", string, 1, 1))
    # Mail (smtp_*, notification_email*) and notify FIFO keywords are declared
    # by the plugins that act on them (plugins/notify/smtp.py, fifo.py); the
    # model keeps typed fields for them.
    gd.add(Kw("enable_script_security", flag, 0, 1))
    gd.add(Kw("script_user", _script_user, 1, 2))
    gd.add(Kw("vrrp_version", _version, 1, 1))
    gd.add(Kw("vrrp_mcast_group4", ip, 1, 1))
    gd.add(Kw("vrrp_mcast_group6", ip, 1, 1))
    gd.add(Kw("vrrp_garp_master_delay", _GARP_DELAY, 1, 1))
    gd.add(Kw("vrrp_garp_master_repeat", _garp_repeat, 1, 1))
    gd.add(Kw("vrrp_garp_master_refresh", _UINT, 1, 1))
    gd.add(Kw("vrrp_garp_master_refresh_repeat", _garp_repeat, 1, 1))
    gd.add(Kw("vrrp_garp_interval", number(0, 1), 1, 1))
    gd.add(Kw("vrrp_gna_interval", number(0, 1), 1, 1))
    gd.add(Kw("vrrp_garp_lower_prio_delay", _GARP_DELAY, 1, 1))
    gd.add(Kw("vrrp_garp_lower_prio_repeat", _INT, 1, 1))
    for k in (
        "vrrp_lower_prio_no_advert",
        "vrrp_higher_prio_send_advert",
        "vrrp_check_unicast_src",
        "vrrp_skip_check_adv_addr",
        "vrrp_strict",
    ):
        gd.add(Kw(k, flag, 0, 1))
    gd.add(Kw("vrrp_down_timer_adverts", integer(1, 100), 1, 1))
    gd.add(Kw("vrrp_split_brain_probe_interval", number(0, 3600), 1, 1))  # extension
    # keepalived 2.2.7: the no_accept drop rules' table and chain priority
    gd.add(Kw("nftables", _nftables_table, 0, 1))
    gd.add(Kw("nftables_priority", integer(-(2**31), 2**31 - 1), 1, 1))
    gd.add(Kw("vrrp_startup_delay", number(0, 3600), 1, 1))
    gd.add(Kw("vrrp_delay_after_boot", _delay_after_boot, 1, 1))  # keepalived 2.4
    gd.add(Kw("v3_checksum_as_v2", flag, 0, 1))  # keepalived 2.4: the instances' default
    gd.add(Kw("script_timeout", number(0.001, 86400), 1, 1))
    gd.add(Kw("lvs_flush", flag, 0, 1))
    gd.add(Kw("lvs_flush_on_stop", _lvs_flush_on_stop, 0, 1))
    gd.add(Kw("lvs_backend", _lvs_backend, 1, 1))  # pykeepalived extension (docs/ipvs.md)
    # keepalived 2.2.7 reads the words itself (config/lvs_syncd.py, core/lvs/syncd.py)
    gd.add(Kw("lvs_sync_daemon", lvs_syncd.parse, 0, None))
    # keepalived 2.3.3+: where SIGUSR1/SIGUSR2/the JSON signal write (dumps.py)
    for k in ("state_dump_file", "stats_dump_file", "json_dump_file"):
        gd.add(Kw(k, _dump_path, 1, 1))
    gd.add(Kw("json_version", integer(1, 2), 1, 1))
    _add_unsupported(gd, "global_defs")
    top.add(Kw("global_defs", _global_defs(gd), needs_block=True, block=gd))

    # static addresses / routes / rules ---------------------------------------
    top.add(items_kw("static_ipaddress", parse_vip, _VIP_OPTIONS))
    top.add(items_kw("static_routes", parse_route, per_line=True))
    top.add(items_kw("static_rules", parse_rule, per_line=True))

    # vrrp_instance --------------------------------------------------------------
    vi = BlockSpec("vrrp_instance", model=m.VrrpInstance)
    g.blocks["vrrp_instance"] = vi
    vi.add(Kw("state", _instance_state, 1, 1))
    vi.add(Kw("interface", string, 1, 1))
    vi.add(Kw("lvs_sync_daemon_interface", lvs_syncd.parse_instance_interface, 1, 1))
    vi.add(Kw("virtual_router_id", integer(1, 255), 1, 1))
    vi.add(Kw("priority", integer(1, 255), 1, 1))
    vi.add(Kw("advert_int", number(0.01, 255), 1, 1))
    vi.add(Kw("version", _version, 1, 1))
    vi.add(Kw("nopreempt", flag, 0, 1))
    vi.add(Kw("preempt", flag, 0, 1))
    vi.add(Kw("preempt_delay", number(0, 1000), 1, 1))
    auth = _authentication()
    vi.add(Kw("authentication", sub(auth), needs_block=True, block=auth))
    vi.add(auth_hmac_kw())  # keepalived 2.4
    vi.add(items_kw("virtual_ipaddress", parse_vip, _VIP_OPTIONS))
    vi.add(items_kw("virtual_ipaddress_excluded", parse_vip, _VIP_OPTIONS))
    vi.add(items_kw("virtual_routes", parse_route, per_line=True))
    vi.add(items_kw("virtual_rules", parse_rule, per_line=True))
    vi.add(Kw("unicast_src_ip", ip, 1, 1))
    vi.add(items_kw("unicast_peer", parse_unicast_peer, {"min_ttl": 1, "max_ttl": 1}))
    vi.add(Kw("mcast_src_ip", ip, 1, 1))
    vi.add(Kw("mcast_dst_ip", ip, 1, 1))
    vi.add(Kw("check_unicast_src", flag, 0, 1))
    vi.add(Kw("dont_track_primary", flag, 0, 1))
    vi.add(track_block_kw("track_interface", "interface"))
    vi.add(Kw("use_vmac", _use_vmac, 0, 2))
    vi.add(Kw("vmac_xmit_base", flag, 0, 1))
    vi.add(Kw("native_ipv6", _native_ipv6, 0, None))
    # notify_* and smtp_alert: declared by the notify_script and smtp_alert plugins.
    vi.add(Kw("garp_master_delay", _GARP_DELAY, 1, 1))
    vi.add(Kw("garp_master_repeat", _garp_repeat, 1, 1))
    vi.add(Kw("garp_master_refresh", _UINT, 1, 1))
    vi.add(Kw("garp_master_refresh_repeat", _garp_repeat, 1, 1))
    vi.add(Kw("garp_lower_prio_delay", _GARP_DELAY, 1, 1))
    vi.add(Kw("garp_lower_prio_repeat", _INT, 1, 1))
    for k in (
        "lower_prio_no_advert",
        "higher_prio_send_advert",
        "strict_mode",
        "skip_check_adv_addr",
        "accept",
        "v3_checksum_as_v2",
        "no_virtual_ipaddress",  # keepalived 2.2.8
    ):
        vi.add(Kw(k, flag, 0, 1))
    # pykeepalived extension (docs/config.md, core/vrrp/splitbrain.py); 0: no probes
    vi.add(Kw("split_brain_probe_interval", number(0, 3600), 1, 1))
    # keepalived: no_accept clears accept (the last of the two wins)
    vi.add(Kw("no_accept", _flag_off, 0, 0, field="accept"))
    vi.add(Kw("down_timer_adverts", integer(1, 100), 1, 1))
    vi.add(Kw("debug", integer(0, 4), 1, 1))
    _add_unsupported(vi, "vrrp_instance")
    top.add(
        Kw(
            "vrrp_instance",
            _named(vi),
            1,
            1,
            block=vi,
            needs_block=True,
            field="vrrp_instances",
            multiple=True,
        )
    )

    # vrrp_sync_group ---------------------------------------------------------
    sg = BlockSpec("vrrp_sync_group", model=m.SyncGroup)
    g.blocks["vrrp_sync_group"] = sg
    grp = items_kw("group", parse_group_member, None)
    sg.add(grp)
    sg.add(track_block_kw("track_interface", "interface"))
    sg.add(Kw("global_tracking", _global_tracking, 0, 1, field="sync_group_tracking_weight"))
    _add_unsupported(sg, "vrrp_sync_group")
    sg.add(Kw("sync_group_tracking_weight", flag, 0, 1))
    top.add(
        Kw(
            "vrrp_sync_group",
            _named(sg),
            1,
            1,
            block=sg,
            needs_block=True,
            field="vrrp_sync_groups",
            multiple=True,
        )
    )

    # LVS ------------------------------------------------------------------------
    rs = BlockSpec("real_server", model=m.RealServer)
    g.blocks["real_server"] = rs
    # keepalived 2.2.7: IPVS_WEIGHT_LIMIT is INT_MAX, not 65535.
    rs.add(Kw("weight", integer(0, 2**31 - 1), 1, 1))
    rs.add(Kw("inhibit_on_failure", flag, 0, 1))
    rs.add(Kw("lvs_method", _lvs_method_or(None, "real"), 1, 1))
    rs.add(Kw("uthreshold", integer(0, 2**31), 1, 1))
    rs.add(Kw("lthreshold", integer(0, 2**31), 1, 1))
    _common_check_kws(rs)
    _add_unsupported(rs, "real_server")

    vs = BlockSpec("virtual_server", model=m.VirtualServer)
    g.blocks["virtual_server"] = vs
    vs.add(Kw("delay_loop", number(0.001, 86400), 1, 1))
    vs.add(Kw("lb_algo", _lb_algo, 1, 1, aliases=("lvs_sched",)))
    vs.add(Kw("lb_kind", _lvs_method, 1, 1, aliases=("lvs_method",)))
    vs.add(Kw("persistence_timeout", _persistence_timeout, 0, 1))
    vs.add(Kw("persistence_engine", string, 1, 1))
    vs.add(Kw("persistence_granularity", string, 1, 1))
    vs.add(Kw("protocol", _protocol, 1, 1))
    vs.add(Kw("ops", flag, 0, 1))
    vs.add(Kw("ha_suspend", flag, 0, 1))
    vs.add(Kw("omega", flag, 0, 1))
    # keepalived 2.2.7 reads both as unsigned int (check_parser.c).
    vs.add(Kw("quorum", integer(1, 2**32 - 1), 1, 1))
    vs.add(Kw("hysteresis", integer(0, 2**32 - 1), 1, 1))
    vs.add(Kw("weight", integer(1, 2**31 - 1), 1, 1))
    vs.add(Kw("sorry_server", _sorry_server, 1, 2))
    vs.add(Kw("sorry_server_inhibit", flag, 0, 1))
    vs.add(Kw("sorry_server_lvs_method", _lvs_method_or(None, "sorry"), 1, 1))
    vs.add(Kw("inhibit_on_failure", flag, 0, 1))
    vs.add(Kw("lb_flags", words, 1, None, field="sched_flags"))
    for fl in ("sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2", "flag-3"):
        vs.add(Kw(fl, _keyword_itself, 0, 0, field="sched_flags", multiple=True))
    _common_check_kws(vs)
    vs.add(
        Kw(
            "real_server",
            _real_server(rs),
            1,
            2,
            block=rs,
            needs_block=None,
            field="real_servers",
            multiple=True,
        )
    )
    _add_unsupported(vs, "virtual_server")
    top.add(
        Kw(
            "virtual_server",
            _virtual_server(vs),
            1,
            2,
            block=vs,
            needs_block=True,
            field="virtual_servers",
            multiple=True,
        )
    )

    vsg = BlockSpec("virtual_server_group", items=ItemSpec(parse_vsg_entry, None))
    g.blocks["virtual_server_group"] = vsg

    def _vsg(node: Node, ctx: Context) -> m.VirtualServerGroup:
        from pykeepalived.core.config.schema import parse_block

        entries = parse_block(node.children or [], vsg, ctx).get("items", [])
        if not entries:
            # keepalived 2.2.7 check_parser.c: a config error; the empty group
            # is dropped with the configuration checks (lvs_checks.py).
            ctx.warn(node.place, f"virtual server group {node.args[0]} has no entries - removing")
        elif _mixed_families_and_bare_fwmark(node, entries):
            ctx.warn(
                node.place,
                f"virtual server group {node.args[0]} cannot have IPv4, IPv6"
                " and fwmark without family - removing",
            )
            entries = []
        return m.VirtualServerGroup(node.args[0], node.place, entries)

    _add_unsupported(top, "top")
    top.add(
        Kw(
            "virtual_server_group",
            _vsg,
            1,
            1,
            block=vsg,
            needs_block=True,
            field="virtual_server_groups",
            multiple=True,
        )
    )
    _mark_not_applied(g)
    return g


def _common_check_kws(spec: BlockSpec) -> None:
    """Keywords real_server and virtual_server share with checkers (defaults)."""
    spec.add(Kw("delay_loop", number(0.001, 86400), 1, 1)) if spec.lookup(
        "delay_loop"
    ) is None else None
    spec.add(Kw("alpha", flag, 0, 1))
    spec.add(Kw("retry", integer(0, 2**31), 1, 1, aliases=("nb_get_retry",)))
    spec.add(Kw("delay_before_retry", number(0, 86400), 1, 1))
    spec.add(Kw("warmup", number(0, 86400), 1, 1))
    spec.add(Kw("connect_timeout", number(0.001, 86400), 1, 1))
    spec.add(Kw("virtualhost", string, 1, 1))


#: keepalived.conf(5): "persistence_timeout [<INTEGER>]", default 6 minutes.
DEFAULT_PERSISTENCE_TIMEOUT = 360


def _persistence_timeout(node: Node, ctx: Context) -> int:
    if not node.args:
        return DEFAULT_PERSISTENCE_TIMEOUT
    # keepalived 2.2.7: at most LVS_MAX_TIMEOUT, 31 days.
    return parse_int(node.args[0], 1, 31 * 86400)


def _global_defs(spec: BlockSpec) -> Any:
    """Every global_defs block adds to the same settings, as in keepalived:
    a later block overrides only the keywords it sets."""

    def conv(node: Node, ctx: Context) -> m.GlobalDefs:
        previous = ctx.values.get("global_defs") if ctx.values is not None else None
        values = parse_block(node.children, spec, ctx)
        if not isinstance(previous, m.GlobalDefs):
            return construct(m.GlobalDefs, values, node.place)  # type: ignore[no-any-return]
        merged: dict[str, Any] = dict(previous.ext)
        merged.update({f.name: getattr(previous, f.name) for f in fields(previous)})
        del merged["ext"], merged["place"]
        merged.update(values)
        return construct(m.GlobalDefs, merged, previous.place)  # type: ignore[no-any-return]

    return conv


def _keyword_itself(node: Node, ctx: Context) -> str:
    return node.keyword


def _sorry_server(node: Node, ctx: Context) -> m.SorryServer:
    addr, p = _server_addr(node, ctx)
    return m.SorryServer(addr, p, node.place)


def _real_server(spec: BlockSpec) -> Any:
    def conv(node: Node, ctx: Context) -> m.RealServer:
        addr, p = _server_addr(node, ctx)
        return build_model(spec, node, ctx, address=addr, port=p)  # type: ignore[no-any-return]

    return conv


def _virtual_server(spec: BlockSpec) -> Any:
    def conv(node: Node, ctx: Context) -> m.VirtualServer:
        a = node.args
        extra: dict[str, Any] = {}
        if a[0] == "fwmark":
            if len(a) < 2:
                raise Invalid("fwmark needs a number")
            extra["fwmark"] = parse_int(a[1], 1, 2**32 - 1)
        elif a[0] == "group":
            if len(a) < 2:
                raise Invalid("group needs a name")
            extra["group"] = a[1]
        else:
            extra["address"] = ip_address(a[0])
            if len(a) < 2:
                raise Invalid("needs IP PORT, fwmark N or group NAME")
            extra["port"] = port(a[1])
        vs: m.VirtualServer = build_model(spec, node, ctx, **extra)
        _sorry_options_before_server(vs, node, ctx)
        _scheduler_flags(vs, node, ctx)
        _first_script_kept(vs, vs, node, spec, ctx, ("quorum_up", "quorum_down"))
        rs_spec = spec.lookup("real_server")
        for child in node.children or []:
            for rs in vs.real_servers:
                if child.keyword == "real_server" and rs.place == child.place and rs_spec:
                    names = ("notify_up", "notify_down")
                    _first_script_kept(vs, rs, child, rs_spec.block, ctx, names)
                    # keepalived 2.2.7: the virtual server's weight for those without one
                    if not any(c.keyword == "weight" for c in child.children or []):
                        rs.weight = vs.weight
        return vs

    return conv


def _mixed_families_and_bare_fwmark(node: Node, entries: list[m.VirtualServerGroupEntry]) -> bool:
    """keepalived 2.2.7 (check_parser.c vsg_handler) removes a group holding
    IPv4 and IPv6 (addresses, or ``fwmark N inet|inet6``) and a fwmark
    without a family."""
    families = {e.first.version for e in entries if e.first is not None}
    bare_fwmark = False
    for child in node.children or []:
        if child.keyword == "fwmark" and len(child.args) > 1:
            families.add(6 if child.args[1] == "inet6" else 4)
        elif child.keyword == "fwmark":
            bare_fwmark = True
    return bare_fwmark and families == {4, 6}


def _scheduler_flags(vs: m.VirtualServer, node: Node, ctx: Context) -> None:
    """keepalived 2.2.7 (check_parser.c lbflags_handler) takes sh-port and
    sh-fallback only after ``lb_algo sh``, mh-port and mh-fallback only after
    ``lb_algo mh``; with another scheduler (or none yet) it is a config error
    naming sh, and the flag is ignored (silently for the other one of sh/mh)."""
    sched = ""
    for child in node.children or []:
        if child.keyword in ("lb_algo", "lvs_sched") and child.args:
            sched = child.args[0]
        elif child.keyword in ("sh-port", "sh-fallback", "mh-port", "mh-fallback"):
            if sched in ("sh", "mh"):
                if child.keyword.startswith(sched + "-"):
                    continue
            else:
                ctx.warn(child.place, f"{child.keyword} only applies to sh scheduler - ignoring")
            if child.keyword in vs.sched_flags:
                vs.sched_flags.remove(child.keyword)


def _first_script_kept(
    vs: m.VirtualServer,
    obj: object,
    node: Node,
    spec: BlockSpec | None,
    ctx: Context,
    names: tuple[str, ...],
) -> None:
    """keepalived 2.2.7 keeps the first quorum_up/quorum_down (virtual
    server) and notify_up/notify_down (real server) script; a repeated one
    is a config error naming the virtual server's group ("(null)" without
    one, as keepalived prints it)."""
    if spec is None:
        return
    tag = f"({vs.group})" if vs.group is not None else "((null))"
    for name in names:
        kw = spec.lookup(name)
        found = [c for c in node.children or [] if c.keyword == name and c.args]
        if kw is None or len(found) < 2:
            continue
        for extra in found[1:]:
            ctx.warn(
                extra.place, f"{tag} {name} script already specified - ignoring {extra.args[0]}"
            )
        try:
            first = kw.convert(found[0], ctx)
        except Invalid:
            continue  # reported when the block was read
        setattr(obj, kw.field or name, first)


def _sorry_options_before_server(vs: m.VirtualServer, node: Node, ctx: Context) -> None:
    """keepalived 2.2.7 applies sorry_server_inhibit and
    sorry_server_lvs_method to the sorry server already read: before
    ``sorry_server`` (or without one) they are config errors and ignored."""
    seen_sorry = False
    early: set[str] = set()
    late: set[str] = set()
    for child in node.children or []:
        if child.keyword == "sorry_server":
            seen_sorry = True
        elif seen_sorry:
            late.add(child.keyword)
        elif child.keyword == "sorry_server_inhibit":
            ctx.warn(
                child.place, "Ignoring sorry_server inhibit used before or without sorry_server"
            )
            early.add(child.keyword)
        elif child.keyword == "sorry_server_lvs_method":
            ctx.warn(child.place, "sorry_server forwarding used without sorry_server")
            early.add(child.keyword)
    # A later one (after sorry_server) is the value kept.
    if "sorry_server_inhibit" in early - late:
        vs.sorry_server_inhibit = False
    if "sorry_server_lvs_method" in early - late:
        vs.sorry_server_lvs_method = None


def _add_unsupported(spec: BlockSpec, name: str) -> None:
    for k, why in UNSUPPORTED.get(name, {}).items():
        if spec.lookup(k) is None:
            spec.add(Kw(k, words, 0, None, needs_block=None, unsupported=why))
