"""What a SIGHUP would change: the reload preview (``pykeepalived reload --dry-run``).

The running daemon computes it (it holds the truth: the configuration it
runs, every instance's live state, the real servers' health and the IPVS
table it keeps), against a new configuration parsed the way a reload
parses it; nothing is applied.  It mirrors what a reload does:

- VRRP (core/vrrp/manager.py ``reload``): an instance whose identity
  (``keeps_state``: interface, VRID, family, unicast peers, address
  ownership, authentication, VMAC) is unchanged keeps its state, takes a
  new priority, advert_int, state or preempt in place, and as MASTER
  swaps the VIPs and eVIPs that changed (as keepalived 2.2.7); a changed
  one is stopped (a MASTER sends priority 0 and drops its VIPs) and
  started again in BACKUP; a removed one stops; a new one starts in
  BACKUP (MASTER if it owns the address).
  static_ipaddress/routes/rules are diffed (``_static_reload``).
- Trackers: every tracker is stopped and the new configuration's started
  (core/shell/daemon.py ``reload``), so trackers in both are restarted.
- Checkers and IPVS: a new virtual-server manager inherits the health of
  the real servers both configurations have; its IPVS table is diffed
  against the one kept now with the backend's own :func:`plan`
  (core/lvs/ipvs/table.py), so the operations listed are those a reload
  would send (assuming no real server changes health meanwhile).
"""

from __future__ import annotations

from typing import Any

from pykeepalived.core.config import LoadResult
from pykeepalived.core.config.model import Config, VrrpInstance
from pykeepalived.core.lvs.ipvs.table import kernel_table, plan
from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.base import Checker
from pykeepalived.core.tracking import instance_refs
from pykeepalived.core.vrrp.instance import reload_changes
from pykeepalived.core.vrrp.manager import identity_changes

PRIO_OWNER = 255


def _addresses(vi: VrrpInstance) -> set[str]:
    return {str(v.address) for v in [*vi.virtual_ipaddress, *vi.virtual_ipaddress_excluded]}


def _words(items: list[Any]) -> set[str]:
    return {" ".join(i.words) for i in items}


def _group_of(config: Config, instance: str) -> str | None:
    for sg in config.vrrp_sync_groups:
        if instance in sg.group:
            return sg.name
    return None


def _trackers(config: Config) -> set[str]:
    return {
        f"{ref.kind} {ref.name}"
        for vi in config.vrrp_instances
        for ref in instance_refs(config, vi)
    }


def _checks(config: Config) -> set[str]:
    out: set[str] = set()
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            port = rs.port if rs.port is not None else vs.port
            for i, chk in enumerate(rs.checkers):
                out.add(f"{chk.kind} #{i + 1} of [{rs.address}]:{port} in {vs.label}")
    return out


def vrrp_preview(old: Config, new: Config, live: dict[str, str]) -> dict[str, Any]:
    """Instances, VIPs, routes and rules; ``live`` is every instance's state now."""
    old_vi = {vi.name: vi for vi in old.vrrp_instances}
    new_vi = {vi.name: vi for vi in new.vrrp_instances}
    out: dict[str, Any] = {
        "instances_added": [],
        "instances_removed": [],
        "instances_restarted": [],
        "instances_kept": [],
        "vips_added": [],
        "vips_removed": [],
        "routes_added": [],
        "routes_removed": [],
        "rules_added": [],
        "rules_removed": [],
        "notes": [],
    }
    for name, vi in old_vi.items():
        state = live.get(name, "not running")
        nv = new_vi.get(name)
        master = state == "MASTER"
        if nv is None:
            out["instances_removed"].append(
                {
                    "name": name,
                    "state": state,
                    "effect": "stops"
                    + (" (priority 0 advert, VIPs released)" if master else "")
                    + " -> STOP",
                }
            )
            if master:
                out["vips_removed"] += [f"{a} ({name})" for a in sorted(_addresses(vi))]
                out["routes_removed"] += [
                    f"{w} ({name})" for w in sorted(_words(vi.virtual_routes))
                ]
            continue
        changed = identity_changes(vi, nv)
        if changed:
            starts = "MASTER (address owner)" if nv.priority >= PRIO_OWNER else "BACKUP"
            out["instances_restarted"].append(
                {
                    "name": name,
                    "state": state,
                    "changed": changed,
                    "effect": ("MASTER -> STOP" if master else f"{state} -> STOP")
                    + f", then starts again in {starts}",
                }
            )
            if master:
                out["vips_removed"] += [f"{a} ({name})" for a in sorted(_addresses(vi))]
                out["routes_removed"] += [
                    f"{w} ({name})" for w in sorted(_words(vi.virtual_routes))
                ]
            continue
        kept: dict[str, Any] = {"name": name, "state": state, "effect": "keeps its state"}
        in_place = [f for f in reload_changes(vi, nv) if f != "virtual_ipaddress"]
        if _group_of(old, name) != _group_of(new, name):
            in_place.append("vrrp_sync_group")
        if _addresses(vi) != _addresses(nv):
            in_place.append("VIPs")
            if master:
                out["vips_added"] += [
                    f"{a} ({name})" for a in sorted(_addresses(nv) - _addresses(vi))
                ]
                out["vips_removed"] += [
                    f"{a} ({name})" for a in sorted(_addresses(vi) - _addresses(nv))
                ]
        for what in ("virtual_routes", "virtual_rules"):
            before, after = _words(getattr(vi, what)), _words(getattr(nv, what))
            if before == after:
                continue
            in_place.append(what)
            if master:  # a MASTER swaps them (Instance._reload_routes_and_rules)
                kind = what.split("_")[1]
                out[f"{kind}_added"] += [f"{w} ({name})" for w in sorted(after - before)]
                out[f"{kind}_removed"] += [f"{w} ({name})" for w in sorted(before - after)]
        if in_place:
            kept["changed"] = in_place
        out["instances_kept"].append(kept)
    for name, nv in new_vi.items():
        if name in old_vi:
            continue
        owner = nv.priority >= PRIO_OWNER
        out["instances_added"].append(
            {
                "name": name,
                "effect": "starts in " + ("MASTER (address owner)" if owner else "BACKUP"),
            }
        )
        if owner:
            out["vips_added"] += [f"{a} ({name})" for a in sorted(_addresses(nv))]
            out["routes_added"] += [f"{w} ({name})" for w in sorted(_words(nv.virtual_routes))]
    for restarted in out["instances_restarted"]:
        nv = new_vi[restarted["name"]]
        if nv.priority >= PRIO_OWNER:
            out["vips_added"] += [f"{a} ({nv.name})" for a in sorted(_addresses(nv))]
    # static_* (manager._static_reload): removed ones go, new ones come.
    old_static = {str(v.address) for v in old.static_ipaddress}
    new_static = {str(v.address) for v in new.static_ipaddress}
    out["vips_added"] += [f"{a} (static)" for a in sorted(new_static - old_static)]
    out["vips_removed"] += [f"{a} (static)" for a in sorted(old_static - new_static)]
    out["routes_added"] += [
        f"{w} (static)" for w in sorted(_words(new.static_routes) - _words(old.static_routes))
    ]
    out["routes_removed"] += [
        f"{w} (static)" for w in sorted(_words(old.static_routes) - _words(new.static_routes))
    ]
    out["rules_added"] += [
        f"{w} (static)" for w in sorted(_words(new.static_rules) - _words(old.static_rules))
    ]
    out["rules_removed"] += [
        f"{w} (static)" for w in sorted(_words(old.static_rules) - _words(new.static_rules))
    ]
    return out


def tracking_preview(old: Config, new: Config, vrrp_runs: bool) -> dict[str, Any]:
    if not vrrp_runs:
        return {"trackers_started": [], "trackers_stopped": [], "trackers_restarted": []}
    before, after = _trackers(old), _trackers(new)
    return {
        "trackers_started": sorted(after - before),
        "trackers_stopped": sorted(before - after),
        "trackers_restarted": sorted(before & after),
    }


def lvs_preview(
    new: Config,
    current: VirtualServerManager | None,
    checkers: dict[str, type[Checker]],
    lvs_runs: bool,
) -> dict[str, Any]:
    """Checkers and the IPVS operations a reload would send."""
    old_checks = _checks(current.config) if current is not None else set()
    new_checks = _checks(new) if lvs_runs else set()
    out: dict[str, Any] = {
        "checkers_started": sorted(new_checks - old_checks),
        "checkers_stopped": sorted(old_checks - new_checks),
        "checkers_restarted": len(old_checks & new_checks),
        "ipvs": [],
    }
    have = kernel_table(current.table()) if current is not None else {}
    want = {}
    if lvs_runs and new.virtual_servers:
        preview = VirtualServerManager(new, checkers)
        if current is not None:
            preview.inherit(current)
        for vs in preview.virtual_servers:
            vs.recompute_weight()
            vs.quorum_up = vs.weight_sum() >= vs.quorum + vs.hysteresis
        want = kernel_table(preview.table())
    out["ipvs"] = [str(op) for op in plan(want, have, set(have))]
    return out


def render(preview: dict[str, Any]) -> str:
    """The readable form of a preview."""
    lines = [f"Reload preview of {', '.join(preview.get('config_files', [])) or '?'}"]
    for d in preview.get("diagnostics", []):
        lines.append(f"  {d}")
    if not preview.get("ok", True):
        lines.append("The new configuration has errors: a SIGHUP would keep the running one.")
        return "\n".join(lines)
    v = preview.get("vrrp", {})

    def section(title: str, items: list[str]) -> None:
        if items:
            lines.append(title)
            lines.extend(f"  {i}" for i in items)

    section(
        "VRRP instances added:",
        [f"{i['name']}: {i['effect']}" for i in v.get("instances_added", [])],
    )
    section(
        "VRRP instances removed:",
        [f"{i['name']} ({i['state']}): {i['effect']}" for i in v.get("instances_removed", [])],
    )
    section(
        "VRRP instances restarted (they transition):",
        [
            f"{i['name']} ({i['state']}): {i['effect']}; changed: {', '.join(i['changed'])}"
            for i in v.get("instances_restarted", [])
        ],
    )
    section(
        "VRRP instances kept (no transition):",
        [
            f"{i['name']} ({i['state']})"
            + (f"; changed in place: {', '.join(i['changed'])}" if i.get("changed") else "")
            for i in v.get("instances_kept", [])
        ],
    )
    section("VIPs added:", v.get("vips_added", []))
    section("VIPs removed:", v.get("vips_removed", []))
    section("Routes added:", v.get("routes_added", []))
    section("Routes removed:", v.get("routes_removed", []))
    section("Rules added:", v.get("rules_added", []))
    section("Rules removed:", v.get("rules_removed", []))
    section("Notes:", v.get("notes", []))
    t = preview.get("tracking", {})
    section("Trackers started:", t.get("trackers_started", []))
    section("Trackers stopped:", t.get("trackers_stopped", []))
    section("Trackers restarted:", t.get("trackers_restarted", []))
    lv = preview.get("lvs", {})
    section("Checkers started:", lv.get("checkers_started", []))
    section("Checkers stopped:", lv.get("checkers_stopped", []))
    if lv.get("checkers_restarted"):
        lines.append(f"Checkers restarted (keeping their verdicts): {lv['checkers_restarted']}")
    section("IPVS operations:", lv.get("ipvs", []))
    changes = [
        v.get(k)
        for k in (
            "instances_added",
            "instances_removed",
            "instances_restarted",
            "vips_added",
            "vips_removed",
            "routes_added",
            "routes_removed",
            "rules_added",
            "rules_removed",
        )
    ] + [t.get("trackers_started"), t.get("trackers_stopped")]
    changes += [lv.get("checkers_started"), lv.get("checkers_stopped"), lv.get("ipvs")]
    if not any(changes):
        # a reload always restarts trackers and checkers (keeping the
        # checkers' verdicts): that is all it would do
        lines.append("Nothing would change (trackers and checkers would be restarted).")
    lines.append("Nothing was applied.")
    return "\n".join(lines)


def preview(
    old: Config,
    result: LoadResult,
    live: dict[str, str],
    current_lvs: VirtualServerManager | None,
    checkers: dict[str, type[Checker]],
    *,
    vrrp_runs: bool,
    lvs_runs: bool,
) -> dict[str, Any]:
    """The whole preview of ``result`` (the new configuration, as loaded)
    against the running ``old`` one."""
    new = result.config
    out: dict[str, Any] = {
        "config_files": list(new.files),
        "ok": result.ok,
        "diagnostics": [str(d) for d in result.diagnostics.items],
    }
    if not result.ok:
        return out
    out["vrrp"] = (
        vrrp_preview(old, new, live)
        if vrrp_runs
        else vrrp_preview(Config(), Config(), {})  # -C: no VRRP part
    )
    out["tracking"] = tracking_preview(old, new, vrrp_runs)
    out["lvs"] = lvs_preview(new, current_lvs, checkers, lvs_runs)
    return out
