"""References from VRRP instances and sync groups to named trackers.

``vrrp_script NAME {...}``, ``vrrp_track_process NAME {...}`` and
``track_file NAME {...}`` are declared by plugins and land in
``Config.ext``; ``track_script``/``track_process``/``track_file`` blocks refer
to them by name.  Resolving those references is part of reading the
configuration (``-t`` reports a dangling one), so it lives here, in the
config layer, for semantics, the tracking engine and ``-t``'s script checks.
"""

from __future__ import annotations

from typing import Any

from pykeepalived.core.config.errors import Diagnostics
from pykeepalived.core.config.model import Config, SyncGroup, TrackRef, VrrpInstance

#: Where named tracker definitions live in ``Config.ext``, per family.
DEFINITION_KEYS: dict[str, str] = {
    "script": "vrrp_script",
    "process": "vrrp_track_process",
    "file": "track_file",
}
#: keepalived's words for each family in "(VI_1) track script X not found".
_FAMILY_WORDS = {"script": "track script", "process": "track process", "file": "track file"}


def definitions(config: Config, family: str, key: str | None = None) -> dict[str, Any]:
    """Named tracker definitions of ``family`` (``vrrp_script NAME {...}`` ...)."""
    key = key if key is not None else DEFINITION_KEYS.get(family, f"track_{family}")
    value = config.ext.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {getattr(v, "name", str(i)): v for i, v in enumerate(value)}


def check_track_references(config: Config, diag: Diagnostics) -> None:
    """Normalise named definitions to dicts and drop unresolvable references.

    Called once after parsing (from :mod:`.config.semantics`).  keepalived
    reports ``(VI_1) track script chk_x not found, ignoring...`` as a
    configuration error and carries on without that track: a WARNING here
    (``-t`` fails, the daemon runs).
    """
    for key in DEFINITION_KEYS.values():
        value = config.ext.get(key)
        if isinstance(value, list):
            named: dict[str, Any] = {}
            for conf in value:
                name = getattr(conf, "name", "")
                if name in named:
                    place = getattr(conf, "place", None)
                    if place is not None:
                        diag.warning(place, f"{key} {name} declared twice; the first is used")
                    continue
                named[name] = conf
            config.ext[key] = named
    owners: list[VrrpInstance | SyncGroup] = [*config.vrrp_instances, *config.vrrp_sync_groups]
    for owner in owners:
        kept: list[TrackRef] = []
        seen: set[tuple[str, str]] = set()
        for ref in owner.tracks:
            if ref.kind in DEFINITION_KEYS and ref.name not in definitions(config, ref.kind):
                diag.warning(
                    ref.place,
                    f"({owner.name}) {_FAMILY_WORDS[ref.kind]} {ref.name} not found, ignoring...",
                )
                continue
            if (ref.kind, ref.name) in seen:
                diag.warning(
                    ref.place, f"({owner.name}) duplicate track_{ref.kind} {ref.name} - ignoring"
                )
                continue
            seen.add((ref.kind, ref.name))
            kept.append(ref)
        owner.tracks[:] = kept
