"""keepalived's corrections of virtual servers before IPVS is programmed.

keepalived 2.2.7 checks every ``virtual_server`` once its configuration is
read (check_data.c ``validate_check_config``, run by ``keepalived -t`` too):
each problem is a configuration error (``-t`` exits 5) and is corrected as
the message says, so that the IPVS table keepalived builds differs from the
text.  The same corrections are made here, on the model, with keepalived's
wording (operators grep for it) and our FILE:LINE place; the manager and both
backends (IPVS, nftables) then build keepalived's table from the model.
"""

from __future__ import annotations

from pykeepalived.core.config import model as m
from pykeepalived.core.config.errors import Diagnostics
from pykeepalived.core.config.grammar import DEFAULT_PERSISTENCE_TIMEOUT

#: keepalived's IPVS_DEF_SCHED.
DEFAULT_SCHEDULER = "wlc"
#: keepalived keeps quorum and hysteresis unsigned: 0 - 1 wraps.
_UINT_MAX = 2**32 - 1


def vs_label(vs: m.VirtualServer) -> str:
    """keepalived's FMT_VS: a group is ``[NAME]:0`` (the group's virtual
    server has no port of its own), a fwmark ``FWM N``, an address
    ``[ADDR]:proto:PORT`` with ``none`` for no protocol."""
    if vs.group is not None:
        return f"[{vs.group}]:0"
    return vs.label


def rs_label(vs: m.VirtualServer, address: object, port: int | None) -> str:
    """keepalived's FMT_RS: the server's address and port with the virtual
    server's protocol at the time of the message."""
    return f"[{address}]:{(vs.protocol or 'none').lower()}:{port or 0}"


def _entry_label(entry: m.VirtualServerGroupEntry) -> str:
    """keepalived's format_vsge: ``ADDR,PORT`` or ``FIRST-LAST,PORT``."""
    if entry.fwmark is not None:
        return f"FWM {entry.fwmark}"
    if entry.last is not None and entry.last != entry.first:
        return f"{entry.first}-{entry.last},{entry.port or 0}"
    return f"{entry.first},{entry.port or 0}"


def check_virtual_servers(cfg: m.Config, diag: Diagnostics) -> None:
    """Correct every virtual server as keepalived 2.2.7 does; a virtual
    server without real servers is dropped."""
    # keepalived drops an empty group when reading it (grammar.py warns).
    cfg.virtual_server_groups[:] = [g for g in cfg.virtual_server_groups if g.entries]
    groups = {g.name: g for g in cfg.virtual_server_groups}
    # Read-time checks of keepalived (check_parser.c) come before the others.
    for vs in cfg.virtual_servers:
        _families(vs, diag)
    kept: list[m.VirtualServer] = []
    for vs in cfg.virtual_servers:
        group = groups.get(vs.group) if vs.group is not None else None
        if vs.group is not None and group is None:
            # keepalived drops it before these checks ("specified but not
            # configured"); semantics reports it.  Defaults only, silently.
            _virtual_server(vs, None, Diagnostics())
            kept.append(vs)
            continue
        if not vs.real_servers:
            # keepalived frees it, sorry server or not.
            diag.warning(vs.place, f"Virtual server {vs_label(vs)} has no real servers - ignoring")
            continue
        _virtual_server(vs, group, diag)
        kept.append(vs)
    cfg.virtual_servers[:] = kept


def _families(vs: m.VirtualServer, diag: Diagnostics) -> None:
    """keepalived 2.2.7 (check_parser.c rs_end_handler, vs_end_handler): a
    real server, then the sorry server, of another address family than the
    virtual server is skipped, unless tunnelled (the kernel takes a
    destination family of its own for TUN).  A virtual server without an
    address takes the family of its first such server."""
    family = vs.address.version if vs.address is not None else None
    kept: list[m.RealServer] = []
    for rs in vs.real_servers:
        if rs.lvs_method != "TUN":
            if family is None:
                family = rs.address.version
            elif family != rs.address.version:
                diag.warning(
                    rs.place,
                    f"Address family of virtual server and real server {rs.address}"
                    " don't match - skipping real server.",
                )
                continue
        kept.append(rs)
    vs.real_servers[:] = kept
    sorry = vs.sorry_server
    if (
        sorry is not None
        and vs.sorry_server_lvs_method != "TUN"
        and family is not None
        and family != sorry.address.version
    ):
        diag.warning(
            sorry.place,
            f"Address family of virtual server and sorry server {sorry.address}"
            " don't match - skipping sorry server.",
        )
        vs.sorry_server = None


def _virtual_server(
    vs: m.VirtualServer, group: m.VirtualServerGroup | None, diag: Diagnostics
) -> None:
    place = vs.place
    entries = group.entries if group is not None else []
    group_marks = [e for e in entries if e.fwmark is not None]
    group_addrs = [e for e in entries if e.fwmark is None]
    if vs.ha_suspend and (vs.fwmark is not None or group_marks):
        diag.warning(
            place,
            f"Virtual server {vs_label(vs)}: cannot use ha_suspend with fwmarks - clearing ha_suspend",
        )
        vs.ha_suspend = False
    # keepalived checks protocol, OPS and port only for services by address
    # (an unknown group counts as one: keepalived drops it later, at start).
    by_address = bool(group_addrs) if group is not None else vs.fwmark is None
    if by_address:
        if not vs.protocol:
            # The kernel takes protocol 0 as UDP, so keepalived says so.
            diag.warning(
                place, f"Virtual server {vs_label(vs)}: no protocol set - defaulting to UDP"
            )
            vs.protocol = "UDP"
        if vs.ops and vs.protocol != "UDP":
            diag.warning(
                place,
                f"Virtual server {vs_label(vs)}: one packet scheduling requires UDP - resetting",
            )
            vs.ops = False
        if vs.persistence_timeout is None and vs.group is None and not vs.port:
            diag.warning(
                place,
                f"Virtual server {vs_label(vs)}: zero port only valid for persistent services - setting",
            )
            vs.persistence_timeout = DEFAULT_PERSISTENCE_TIMEOUT
    if vs.persistence_timeout is None and any(not e.port for e in group_addrs):
        diag.warning(
            place,
            f"Virtual server {vs_label(vs)}: zero port only valid for persistent services - setting",
        )
        vs.persistence_timeout = DEFAULT_PERSISTENCE_TIMEOUT
    only_marks = (
        bool(group_marks) and not group_addrs if group is not None else vs.fwmark is not None
    )
    if vs.protocol and only_marks:
        diag.warning(
            place,
            f"Warning: Virtual server {vs_label(vs)}: protocol specified for fwmark"
            " - protocol will be ignored",
        )
        vs.protocol = ""
    if not vs.lb_algo:
        diag.warning(
            place,
            f"Virtual server {vs_label(vs)}: no scheduler set, setting default '{DEFAULT_SCHEDULER}'",
        )
        vs.lb_algo = DEFAULT_SCHEDULER
    weight_sum = _real_servers(vs, diag)
    sorry = vs.sorry_server
    if sorry is not None and not vs.sorry_server_lvs_method:
        _default_forwarding(vs, diag)
        vs.sorry_server_lvs_method = vs.lb_kind
    if vs.quorum > weight_sum:
        diag.warning(
            place,
            f"Warning - quorum {vs.quorum} for {vs_label(vs)} exceeds total weight of real servers"
            f" {weight_sum}, reducing quorum to {weight_sum}",
        )
        vs.quorum = weight_sum
    if vs.hysteresis >= vs.quorum:
        lower = (vs.quorum - 1) & _UINT_MAX
        diag.warning(
            place,
            f"Virtual server {vs_label(vs)}: hysteresis {vs.hysteresis} >= quorum {vs.quorum};"
            f" setting hysteresis to {lower}",
        )
        vs.hysteresis = lower
    if group is not None:
        _group_ports(vs, group_marks, group_addrs, diag)
    else:
        _ports(vs, diag)


def _default_forwarding(vs: m.VirtualServer, diag: Diagnostics) -> None:
    if not vs.lb_kind:
        diag.warning(
            vs.place,
            f"Virtual server {vs_label(vs)}: no forwarding method set, setting default NAT",
        )
        vs.lb_kind = "NAT"


def _real_servers(vs: m.VirtualServer, diag: Diagnostics) -> int:
    """Duplicates dropped, defaults from the virtual server filled in (as
    keepalived's real servers take them); returns the total weight."""
    weight_sum = 0
    kept: list[m.RealServer] = []
    seen: set[tuple[object, int]] = set()
    sorry = vs.sorry_server
    for rs in vs.real_servers:
        # Compared before any port correction, as keepalived's rs_iseq.
        key = (rs.address, rs.port or 0)
        if key in seen:
            diag.warning(
                rs.place,
                f"VS {vs_label(vs)}: real server {rs_label(vs, rs.address, rs.port)}"
                " is duplicated - removing second rs",
            )
            continue
        seen.add(key)
        kept.append(rs)
        if not rs.lvs_method:
            _default_forwarding(vs, diag)
            rs.lvs_method = vs.lb_kind
        if rs.inhibit_on_failure is None:
            rs.inhibit_on_failure = vs.inhibit_on_failure
        weight_sum += rs.weight
        matches_sorry = sorry is not None and (sorry.address, sorry.port or 0) == key
        if sorry is not None and matches_sorry and vs.sorry_server_inhibit != rs.inhibit_on_failure:
            verb = "sett" if rs.inhibit_on_failure else "clear"
            diag.warning(
                sorry.place,
                f"Virtual server {vs_label(vs)}: real server"
                f" {rs_label(vs, rs.address, rs.port)} matches sorry server, but inhibit"
                f" setting differs, {verb}ing on sorry server",
            )
            vs.sorry_server_inhibit = bool(rs.inhibit_on_failure)
    vs.real_servers[:] = kept
    return weight_sum


def _ports(vs: m.VirtualServer, diag: Diagnostics) -> None:
    """keepalived: unless NAT, a real (or sorry) server has the virtual
    server's port (none for a fwmark service); a NAT real server without a
    port gets the virtual server's.  Only the conflicting cases are logged."""
    for rs in vs.real_servers:
        if rs.lvs_method == "NAT":
            if vs.fwmark is None and not rs.port:
                rs.port = vs.port
            continue
        if vs.fwmark is not None:
            if rs.port:
                diag.warning(
                    rs.place,
                    f"WARNING - fwmark virtual server {vs_label(vs)}, real server"
                    f" {rs_label(vs, rs.address, rs.port)} has port specified - clearing",
                )
                rs.port = None
        elif not rs.port:
            rs.port = vs.port
        elif rs.port != vs.port:
            diag.warning(
                rs.place,
                f"WARNING - virtual server {vs_label(vs)} and real server"
                f" {rs_label(vs, rs.address, rs.port)} ports don't match - resetting",
            )
            rs.port = vs.port
    sorry = vs.sorry_server
    if sorry is None or vs.sorry_server_lvs_method == "NAT":
        return
    if vs.fwmark is not None:
        if sorry.port:
            diag.warning(
                sorry.place,
                f"WARNING - virtual server {vs_label(vs)}, sorry server has port specified"
                " - clearing",
            )
            sorry.port = None
    elif not sorry.port:
        sorry.port = vs.port
    elif sorry.port != vs.port:
        diag.warning(
            sorry.place,
            f"WARNING - virtual server {vs_label(vs)} and sorry server ports don't match"
            " - resetting",
        )
        sorry.port = vs.port


def _group_ports(
    vs: m.VirtualServer,
    marks: list[m.VirtualServerGroupEntry],
    addrs: list[m.VirtualServerGroupEntry],
    diag: Diagnostics,
) -> None:
    """For a group keepalived only warns: the ports stay as written."""
    sorry = vs.sorry_server
    sorry_port = sorry.port if sorry is not None and vs.sorry_server_lvs_method != "NAT" else None
    if marks:
        for rs in vs.real_servers:
            if rs.lvs_method != "NAT" and rs.port:
                diag.warning(
                    rs.place,
                    f"WARNING - fwmark virtual server {vs_label(vs)}, real server"
                    f" {rs_label(vs, rs.address, rs.port)} has port specified - port will be ignored",
                )
        if sorry is not None and sorry_port:
            diag.warning(
                sorry.place,
                f"WARNING - fwmark virtual server {vs_label(vs)}, sorry server has port specified"
                " - port will be ignored",
            )
    for entry in addrs:
        for rs in vs.real_servers:
            if rs.lvs_method != "NAT" and rs.port and rs.port != (entry.port or 0):
                diag.warning(
                    rs.place,
                    f"virtual server {vs_label(vs)}:[{_entry_label(entry)}] and real server"
                    f" {rs_label(vs, rs.address, rs.port)} ports don't match",
                )
        if sorry is not None and sorry_port and sorry_port != (entry.port or 0):
            diag.warning(
                sorry.place,
                f"WARNING - virtual server {vs_label(vs)}, sorry server has port specified"
                " - port will be ignored",
            )
