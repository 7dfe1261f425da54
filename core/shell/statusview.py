"""The status document, read for people and for monitoring (pure functions).

The daemon builds the document (core/shell/daemon.py ``Daemon.status``) and
serves it on the status socket; ``pykeepalived status`` renders it with
:func:`render_table`, systemd's ``STATUS=`` line is :func:`summary_line`, and
:func:`health` is the exit code monitoring reads.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

#: ``pykeepalived status`` exit codes.
HEALTH_OK = 0
HEALTH_PROBLEM = 1
HEALTH_UNREACHABLE = 2

_STATE_ORDER = ("MASTER", "BACKUP", "FAULT", "INIT", "STOP")


def _real_servers(status: dict[str, Any]) -> tuple[int, int]:
    reals = [r for vs in status.get("virtual_servers", []) for r in vs.get("real_servers", [])]
    return sum(1 for r in reals if r.get("alive")), len(reals)


def summary_line(status: dict[str, Any]) -> str:
    """One line: "3 instances: 2 MASTER 1 BACKUP; 2 virtual servers, 5/6 real servers up"."""
    instances = status.get("vrrp_instances", [])
    parts: list[str] = []
    if instances or not status.get("virtual_servers"):
        states = Counter(str(i.get("state")) for i in instances)
        ordered = sorted(
            states, key=lambda s: _STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER)
        )
        noun = "instance" if len(instances) == 1 else "instances"
        words = " ".join(f"{states[s]} {s}" for s in ordered)
        parts.append(f"{len(instances)} {noun}" + (f": {words}" if words else ""))
    vss = status.get("virtual_servers", [])
    if vss:
        up, total = _real_servers(status)
        noun = "virtual server" if len(vss) == 1 else "virtual servers"
        parts.append(f"{len(vss)} {noun}, {up}/{total} real servers up")
    return "; ".join(parts)


def problems(status: dict[str, Any]) -> list[str]:
    """What is not as wanted: an instance in FAULT (or not running), a
    tracker down, a virtual server without quorum, a real server down."""
    out: list[str] = []
    for inst in status.get("vrrp_instances", []):
        if inst.get("state") not in ("MASTER", "BACKUP"):
            why = inst.get("last_transition_reason") or ""
            out.append(
                f"instance {inst.get('name')} is {inst.get('state')}" + (f" ({why})" if why else "")
            )
    for trk in status.get("trackers", []):
        if not trk.get("up") and not trk.get("pending"):
            out.append(f"tracker {trk.get('kind')} {trk.get('name')} is down")
    for vs in status.get("virtual_servers", []):
        if not vs.get("quorum_up", True):
            out.append(f"virtual server {vs.get('virtual_server')} has lost its quorum")
        for rs in vs.get("real_servers", []):
            if not rs.get("alive"):
                out.append(
                    f"real server {rs.get('real_server')} of {vs.get('virtual_server')} is down"
                )
    return out


def health(status: dict[str, Any]) -> int:
    return HEALTH_PROBLEM if problems(status) else HEALTH_OK


def _ago(when: Any, now: float) -> str:
    if not isinstance(when, int | float) or when <= 0:
        return "-"
    secs = max(0, int(now - when))
    if secs < 120:
        return f"{secs}s ago"
    if secs < 7200:
        return f"{secs // 60}m ago"
    return f"{secs // 3600}h ago"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def render_table(status: dict[str, Any], now: float | None = None) -> str:
    """The readable form of ``pykeepalived status``."""
    now = time.time() if now is None else now
    uptime = _ago(now - float(status.get("uptime", 0)), now).removesuffix(" ago")
    out = [
        f"pykeepalived pid {status.get('pid')}, up {uptime}"
        f", config {', '.join(status.get('config_files', [])) or '-'}",
        summary_line(status),
    ]
    instances = status.get("vrrp_instances", [])
    if instances:
        rows = []
        for i in instances:
            prio = f"{i.get('priority')}"
            if i.get("effective_priority") != i.get("priority"):
                prio += f"/{i.get('effective_priority')}"
            rows.append(
                [
                    str(i.get("name")),
                    str(i.get("state")),
                    prio,
                    str(i.get("interface")),
                    ",".join(i.get("vips", [])) or "-",
                    str(i.get("master") or "-"),
                    _ago(i.get("last_transition"), now),
                    str(i.get("last_transition_reason") or "-"),
                ]
            )
        out += ["", "VRRP instances"]
        out += _table(["NAME", "STATE", "PRIO", "IFACE", "VIPS", "MASTER", "SINCE", "WHY"], rows)
    trackers = status.get("trackers", [])
    if trackers:
        rows = [
            [
                f"{t.get('kind')} {t.get('name')}",
                "pending" if t.get("pending") else ("up" if t.get("up") else "DOWN"),
                str(t.get("value") or "-"),
                ",".join(t.get("instances", [])) or "-",
                str(t.get("reason") or "-"),
            ]
            for t in trackers
        ]
        out += ["", "Trackers"]
        out += _table(["TRACKER", "STATE", "VALUE", "INSTANCES", "REASON"], rows)
    vss = status.get("virtual_servers", [])
    if vss:
        rows = []
        for vs in vss:
            quorum = "up" if vs.get("quorum_up", True) else "LOST"
            extra = " (sorry server)" if vs.get("sorry_server_active") else ""
            rows.append([str(vs.get("virtual_server")), f"quorum {quorum}{extra}", "", ""])
            for rs in vs.get("real_servers", []):
                rows.append(
                    [
                        f"  -> {rs.get('real_server')}",
                        "up" if rs.get("alive") else "DOWN",
                        str(rs.get("weight")),
                        "",
                    ]
                )
        out += ["", "Virtual servers"]
        out += _table(["SERVICE", "STATE", "WEIGHT", ""], rows)
    found = problems(status)
    out += ["", "Problems:" if found else "All as wanted."]
    out += [f"  {p}" for p in found]
    return "\n".join(out)
