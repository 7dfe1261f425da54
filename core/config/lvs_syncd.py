"""``lvs_sync_daemon`` (global_defs) and the deprecated vrrp_instance
``lvs_sync_daemon_interface``, read and validated as keepalived 2.2.7 does.

keepalived reports every problem as a config error and carries on (``-t``
fails, the daemon runs): a bad option value is ignored and the rest applies;
only a missing or too long interface name drops the whole keyword
(core/global_parser.c ``lvs_syncd_handler``).  The wording of each warning is
keepalived's.  Which instance drives the daemon and the default sync id are
decided after parsing (:func:`resolve`, keepalived's ``vrrp_complete_init``).
"""

from __future__ import annotations

import ipaddress

from pykeepalived.core.config import model as m
from pykeepalived.core.config.errors import Diagnostics
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import Context, Invalid, parse_int

#: include/uapi/linux/ip_vs.h IP_VS_IFNAME_MAXLEN (16, with the NUL).
IFNAME_MAXLEN = 16
#: keepalived's bound of maxlen: a UDP datagram without IP and UDP headers.
MAXLEN_MAX = 65535 - 20 - 8


def _number(text: str, lo: int, hi: int) -> tuple[int | None, str]:
    try:
        return parse_int(text, lo, hi), ""
    except Invalid as exc:
        return None, f" ({exc})"


def parse(node: Node, ctx: Context) -> m.LvsSyncDaemon | None:
    """``lvs_sync_daemon INTERFACE [VRRP_INSTANCE [SYNCID]] [inst NAME] [id N]
    [maxlen N] [port N] [ttl N] [group ADDR]``; None when keepalived ignores
    the whole keyword (the field then keeps an earlier value)."""
    values = ctx.values if ctx.values is not None else {}
    earlier = values.get("lvs_sync_daemon")
    if isinstance(earlier, m.LvsSyncDaemon):
        ctx.warn(
            node.place,
            f"lvs_sync_daemon has already been specified as {earlier.interface}"
            f" {earlier.instance or ''} - ignoring",
        )
        return earlier
    args = node.args
    if not args:
        ctx.warn(node.place, "lvs_sync_daemon requires interface")
        return None
    if len(args[0]) >= IFNAME_MAXLEN:
        ctx.warn(node.place, f"lvs_sync_daemon interface name '{args[0]}' too long - ignoring")
        return None
    syncd = m.LvsSyncDaemon(args[0], node.place)
    # keepalived walks the words from the instance's slot (index 2 of its
    # vector, 1 here); its old positional form INTERFACE INSTANCE SYNCID is
    # recognised only at those two slots, after the option words.
    i = 1
    while i < len(args):
        word = args[i]
        last = i == len(args) - 1
        value = args[i + 1] if not last else ""
        if word == "inst":
            if syncd.instance is not None:
                ctx.warn(
                    node.place,
                    "lvs_sync_daemon vrrp instance has already been specified as"
                    f" {syncd.instance} - ignoring",
                )
            elif not last:
                syncd.instance = value
            i += 2
            continue
        if word == "id":
            if last:
                ctx.warn(
                    node.place, "No value specified for lvs_sync_daemon id, defaulting to vrid"
                )
                i += 1
                continue
            n, why = _number(value, 0, 255)
            if n is None:
                ctx.warn(node.place, f"Invalid syncid ({value}) - defaulting to vrid{why}")
            else:
                syncd.syncid = n
            i += 2
            continue
        if word in ("maxlen", "port", "ttl"):
            if last:
                ctx.warn(node.place, f"No value specified for lvs_sync_daemon {word} - ignoring")
                i += 1
                continue
            hi = {"maxlen": MAXLEN_MAX, "port": 65535, "ttl": 255}[word]
            n, why = _number(value, 1, hi)
            if n is None:
                ctx.warn(node.place, f"Invalid lvs_sync_daemon {word} ({value}) - ignoring{why}")
            else:
                setattr(syncd, word, n)
            i += 2
            continue
        if word == "group":
            if last:
                ctx.warn(node.place, "No value specified for lvs_sync_daemon group - ignoring")
                i += 1
                continue
            try:
                group = ipaddress.ip_address(value)
            except ValueError:
                ctx.warn(node.place, f"Invalid lvs_sync_daemon group ({value}) - ignoring")
            else:
                if group.is_multicast:
                    syncd.group = group
                else:
                    ctx.warn(
                        node.place,
                        f"lvs_sync_daemon group address {value} is not multicast - ignoring",
                    )
            i += 2
            continue
        if i == 1:
            syncd.instance = word
        elif i == 2:
            n, why = _number(word, 0, 255)
            if n is None:
                ctx.warn(node.place, f"Invalid syncid ({word}) - defaulting to vrid{why}")
            else:
                ctx.warn(node.place, 'Please use keyword "id" before lvs_sync_daemon SYNCID')
                syncd.syncid = n
        else:
            ctx.warn(node.place, f"Unknown option {word} specified for lvs_sync_daemon")
        i += 1
    return syncd


def parse_instance_interface(node: Node, ctx: Context) -> m.LvsSyncDaemon:
    """vrrp_instance ``lvs_sync_daemon_interface IF``: the instance is filled
    in, and the deprecation reported, by :func:`resolve` (it knows the name)."""
    return m.LvsSyncDaemon(node.args[0], node.place, from_instance=True)


def resolve(cfg: m.Config, diag: Diagnostics) -> None:
    """keepalived 2.2.7's choice of the sync daemon's instance and id.

    * A vrrp_instance's ``lvs_sync_daemon_interface`` is deprecated (two
      config errors) and taken only if no lvs_sync_daemon came before it
      (keepalived reads them in file order; across files global_defs is
      taken as first).  It names its own instance and keeps sync id 0: the
      vrid default applies only to a named instance (``vrrp_complete_init``).
    * A named instance that does not exist clears the whole setting
      (logged, but ``keepalived -t`` passes).
    * No sync id given: the instance's virtual_router_id; without an
      instance, 0.
    """
    gd = cfg.global_defs
    chosen = gd.lvs_sync_daemon
    for vi in cfg.vrrp_instances:
        legacy = vi.lvs_sync_daemon_interface
        if legacy is None:
            continue
        diag.warning(
            legacy.place,
            f"({vi.name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated."
            " Please use global lvs_sync_daemon",
        )
        legacy.instance = vi.name
        if chosen is None:
            chosen = legacy
        elif chosen.from_instance or not _before(legacy, chosen):
            diag.warning(
                legacy.place,
                f"({vi.name}) lvs_sync_daemon_interface has already been specified as"
                f" {chosen.interface} - ignoring",
            )
        else:
            diag.warning(
                chosen.place,
                f"lvs_sync_daemon has already been specified as {legacy.interface}  - ignoring",
            )
            chosen = legacy
    gd.lvs_sync_daemon = chosen
    if chosen is None:
        return
    if chosen.from_instance:
        if chosen.syncid is None:
            chosen.syncid = 0
        return
    if chosen.instance is None:
        if chosen.syncid is None:
            chosen.syncid = 0
        return
    owner = cfg.instance(chosen.instance)
    if owner is None:
        # A notice: keepalived 2.2.7's -t passes (rc 0, silent); its VRRP
        # process logs this at start-up and runs no sync daemon.
        diag.notice(
            chosen.place,
            f"Unable to find vrrp instance {chosen.instance} for lvs_syncd"
            " - clearing lvs_syncd config",
        )
        gd.lvs_sync_daemon = None
        return
    if chosen.syncid is None:
        chosen.syncid = owner.virtual_router_id or 0


def _before(a: m.LvsSyncDaemon, b: m.LvsSyncDaemon) -> bool:
    return a.place.file == b.place.file and a.place.line < b.place.line
