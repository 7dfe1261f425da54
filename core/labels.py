"""keepalived's names of LVS objects and the lookups behind event labels.

Shared by the FIFO, SMTP and notify-script plugins (through
:mod:`pykeepalived.api`) and the core's log lines, so every place prints
``[192.0.2.21]:tcp:80`` the way keepalived's FMT_RS/FMT_VS do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pykeepalived.core.plugin.base import EventKind, StateEvent

if TYPE_CHECKING:
    from pykeepalived.core.config.model import Config


def format_vs(vs: Any) -> str:
    """keepalived's FMT_VS: ``[192.0.2.100]:tcp:80``, ``FWM 7``, ``[GROUP]:0``."""
    if vs is None:
        return "?"
    if getattr(vs, "group", None) is not None:
        return f"[{vs.group}]:{vs.port or 0}"
    if getattr(vs, "fwmark", None) is not None:
        return f"FWM {vs.fwmark}"
    return f"[{vs.address}]:{str(vs.protocol).lower()}:{vs.port or 0}"


def format_rs(rs: Any, vs: Any) -> str:
    """keepalived's FMT_RS: the real server as ``[ip]:proto:port`` in the VS's protocol."""
    if rs is None:
        return "?"
    proto = str(getattr(vs, "protocol", "TCP") or "TCP").lower()
    return f"[{rs.address}]:{proto}:{rs.port or 0}"


def lvs_subject_name(rs: Any, vs: Any) -> str:
    """The ``name`` the daemon gives REAL_SERVER events: ``RS VS`` as keepalived prints them."""
    return f"{format_rs(rs, vs)} {format_vs(vs)}"


def subject_of(config: Config, ev: StateEvent) -> Any:
    """The configuration object an event is about (``ev.subject`` or a lookup by name)."""
    if ev.kind is EventKind.REAL_SERVER:
        if ev.real_server is not None:
            return ev.real_server
        if ev.subject is not None:
            return ev.subject
        for vs in config.virtual_servers:
            for rs in vs.real_servers:
                if lvs_subject_name(rs, vs) == ev.name:
                    return rs
        return None
    if ev.subject is not None:
        return ev.subject
    if ev.kind is EventKind.INSTANCE:
        return config.instance(ev.name)
    if ev.kind is EventKind.GROUP:
        return next((g for g in config.vrrp_sync_groups if g.name == ev.name), None)
    if ev.kind is EventKind.VIRTUAL_SERVER:
        if ev.virtual_server is not None:
            return ev.virtual_server
        return next((v for v in config.virtual_servers if format_vs(v) == ev.name), None)
    return None


def virtual_server_of(config: Config, ev: StateEvent) -> Any:
    """The virtual server of a REAL_SERVER or VIRTUAL_SERVER event."""
    if ev.virtual_server is not None:
        return ev.virtual_server
    if ev.kind is EventKind.VIRTUAL_SERVER:
        return subject_of(config, ev)
    rs = subject_of(config, ev)
    for vs in config.virtual_servers:
        if any(r is rs for r in vs.real_servers):
            return vs
    return None
