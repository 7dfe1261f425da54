"""keepalived's notify scripts (notifier ``script``).

What runs, as keepalived does (keepalived.conf(5), vrrp_instance and
vrrp_sync_group "notify scripts"; real_server notify_up/notify_down;
virtual_server quorum_up/quorum_down):

* the state's own script (``notify_master``, ``notify_backup``,
  ``notify_fault``, ``notify_stop``, ``notify_deleted``,
  ``notify_master_rx_lower_pri``) with exactly its configured arguments;
* then the generic ``notify`` script with four more arguments:
  ``INSTANCE|GROUP`` ``NAME`` ``MASTER|BACKUP|FAULT|STOP|DELETED`` ``PRIORITY``
  (0 for a group).  MASTER_RX_LOWER_PRI does not run ``notify``;
* ``notify_split_brain`` (a pykeepalived extension, docs/config.md) with its
  configured arguments plus ``SPLIT_BRAIN|SPLIT_BRAIN_CLEARED`` and the
  event's detail (what was seen, or why it ended): the place to act on a
  split brain (page someone, withdraw a route, stop a service);
* ``notify_up``/``notify_down`` when a real server goes UP/DOWN,
  ``quorum_up``/``quorum_down`` when a virtual server gains/loses quorum.

Differences from keepalived, on purpose: keepalived forks notify scripts and
forgets them, so two transitions can run scripts at the same time and out of
order.  Here the scripts of one subject never overlap and run in event order
(the dispatcher's lane), and each is killed (with its process group) after
``script_timeout`` seconds from global_defs, or :data:`DEFAULT_SCRIPT_TIMEOUT`.
"""

from __future__ import annotations

import logging
from typing import Any

from pykeepalived.api import (
    SPLIT_BRAIN,
    SPLIT_BRAIN_CLEARED,
    Config,
    EventKind,
    Grammar,
    Kw,
    Notifier,
    Script,
    ScriptSecurityError,
    StateEvent,
    check_script,
    format_rs,
    format_vs,
    hookimpl,
    resolve_user,
    run_script,
    subject_of,
    virtual_server_of,
)
from pykeepalived.api import (
    script as script_value,
)

log = logging.getLogger("pykeepalived.notify.scripts")

#: Seconds a notify script may run when global_defs has no script_timeout.
DEFAULT_SCRIPT_TIMEOUT = 60.0

#: States whose generic ``notify`` call keepalived makes.
GENERIC_STATES = frozenset({"MASTER", "BACKUP", "FAULT", "STOP", "DELETED"})

_INSTANCE_SCRIPTS = {
    "MASTER": "notify_master",
    "BACKUP": "notify_backup",
    "FAULT": "notify_fault",
    "STOP": "notify_stop",
    "DELETED": "notify_deleted",
    "MASTER_RX_LOWER_PRI": "notify_master_rx_lower_pri",
}
_GROUP_SCRIPTS = {
    "MASTER": "notify_master",
    "BACKUP": "notify_backup",
    "FAULT": "notify_fault",
    "STOP": "notify_stop",
}
_RS_SCRIPTS = {"UP": "notify_up", "DOWN": "notify_down"}
#: An extension keyword: its Script is kept in ``VrrpInstance.ext``.
SPLIT_BRAIN_SCRIPT = "notify_split_brain"
_VS_SCRIPTS = {"UP": "quorum_up", "DOWN": "quorum_down"}


class ScriptNotifier(Notifier):
    name = "script"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        gd = config.global_defs
        self.script_timeout = (
            gd.script_timeout if gd.script_timeout is not None else DEFAULT_SCRIPT_TIMEOUT
        )
        # The state's script and the generic one run one after the other.
        self.timeout = 2 * self.script_timeout + 5.0
        #: id(Script) -> why it is refused; checked once, logged once.
        self._refused: dict[int, str] = {}
        for script in self._all_scripts():
            why = check_script(script, gd)
            if why is not None:
                self._refused[id(script)] = why
                log.error("%s", why)

    def _all_scripts(self) -> list[Script]:
        out: list[Script] = []
        holders: list[tuple[Any, tuple[str, ...]]] = []
        holders += [
            (vi, (*_INSTANCE_SCRIPTS.values(), "notify")) for vi in self.config.vrrp_instances
        ]
        holders += [
            (sg, (*_GROUP_SCRIPTS.values(), "notify")) for sg in self.config.vrrp_sync_groups
        ]
        for vs in self.config.virtual_servers:
            holders.append((vs, tuple(_VS_SCRIPTS.values())))
            holders += [(rs, tuple(_RS_SCRIPTS.values())) for rs in vs.real_servers]
        for obj, attrs in holders:
            for attr in attrs:
                s = getattr(obj, attr, None)
                if isinstance(s, Script):
                    out.append(s)
        for vi in self.config.vrrp_instances:
            s = vi.ext.get(SPLIT_BRAIN_SCRIPT)
            if isinstance(s, Script):
                out.append(s)
        return out

    def scripts_for(self, ev: StateEvent) -> list[tuple[str, list[str], Script]]:
        """``(label, argv, script)`` to run for ``ev``, in order."""
        obj = subject_of(self.config, ev)
        if obj is None:
            return []
        table = {
            EventKind.INSTANCE: _INSTANCE_SCRIPTS,
            EventKind.GROUP: _GROUP_SCRIPTS,
            EventKind.REAL_SERVER: _RS_SCRIPTS,
            EventKind.VIRTUAL_SERVER: _VS_SCRIPTS,
        }[ev.kind]
        out: list[tuple[str, list[str], Script]] = []
        if ev.kind is EventKind.INSTANCE and ev.state in (SPLIT_BRAIN, SPLIT_BRAIN_CLEARED):
            s = getattr(obj, "ext", {}).get(SPLIT_BRAIN_SCRIPT)
            if isinstance(s, Script):
                out.append((SPLIT_BRAIN_SCRIPT, [*s.argv, ev.state, ev.detail], s))
            return out
        attr = table.get(ev.state)
        own = getattr(obj, attr, None) if attr else None
        if isinstance(own, Script):
            out.append((attr or "", list(own.argv), own))
        generic = getattr(obj, "notify", None)
        if (
            ev.kind in (EventKind.INSTANCE, EventKind.GROUP)
            and ev.state in GENERIC_STATES
            and isinstance(generic, Script)
        ):
            prio = ev.priority if ev.kind is EventKind.INSTANCE else 0
            extra = [ev.kind.value, ev.name, ev.state, str(prio)]
            out.append(("notify", [*generic.argv, *extra], generic))
        return out

    def wants(self, event: StateEvent) -> bool:
        return bool(self.scripts_for(event))

    async def notify(self, event: StateEvent) -> None:
        tag = _tag(self.config, event)
        for label, argv, script in self.scripts_for(event):
            why = self._refused.get(id(script))
            if why is not None:
                log.warning("%s %s script %s refused: %s", tag, label, script.command, why)
                continue
            try:
                run_as = resolve_user(script, self.config.global_defs)
            except ScriptSecurityError as exc:
                log.error("%s %s script refused: %s", tag, label, exc)
                continue
            log.debug("%s running %s script %s", tag, label, argv)
            result = await run_script(argv, run_as=run_as, timeout=self.script_timeout)
            if result.timed_out:
                log.warning(
                    "%s %s script %s timed out after %gs - killed",
                    tag,
                    label,
                    script.command,
                    self.script_timeout,
                )
            elif result.error:
                log.error("%s %s script: %s", tag, label, result.error)
            elif result.returncode != 0:
                log.info(
                    "%s %s script %s exited with status %s",
                    tag,
                    label,
                    script.command,
                    result.returncode,
                )


def _tag(config: Config, ev: StateEvent) -> str:
    if ev.kind is EventKind.REAL_SERVER:
        vs = virtual_server_of(config, ev)
        return f"RS {format_rs(subject_of(config, ev), vs)} of VS {format_vs(vs)}:"
    if ev.kind is EventKind.VIRTUAL_SERVER:
        return f"VS {ev.name}:"
    return f"({ev.name})"


#: keepalived's notify script keywords, per block.
NOTIFY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "vrrp_instance": (
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify_deleted",
        "notify_master_rx_lower_pri",
        "notify",
        SPLIT_BRAIN_SCRIPT,
    ),
    "vrrp_sync_group": (
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify_deleted",
        "notify",
    ),
    "real_server": ("notify_up", "notify_down"),
    "virtual_server": ("quorum_up", "quorum_down"),
}


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    # ``notify_master "/path/script arg" [USER [GROUP]]``: the values land in the
    # model's typed fields (VrrpInstance.notify_master, ...).
    for block, names in NOTIFY_KEYWORDS.items():
        for name in names:
            grammar.add(block, Kw(name, script_value, 1, 3))


@hookimpl
def pykeepalived_register_notifiers() -> dict[str, type[Notifier]]:
    return {"script": ScriptNotifier}
