"""Every hook of pykeepalived, grouped by lifecycle phase.

Each docstring is the hook's contract.  The async rule: hooks are plain
functions.  A hook documented as "may return an awaitable" is awaited by the
core, one plugin at a time, under a timeout; an exception or a timeout is
logged with the plugin's name and the fan-out carries on with the next
plugin.  No hook is ``firstresult`` unless it says so.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pykeepalived.core.config.grammar import Grammar
    from pykeepalived.core.config.model import Config
    from pykeepalived.core.plugin.base import Action, Checker, Notifier, StateEvent, Tracker

hookspec = pluggy.HookspecMarker("pykeepalived")


# -- 1. grammar: called once per configuration load, before parsing ----------------


@hookspec
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    """Add keywords to keepalived.conf's grammar.

    Called from the loading thread before the file is parsed, once per load
    (startup, ``-t``, each reload), with a fresh :class:`Grammar` whose
    ``add(block, Kw(...))`` stamps the plugin's name as owner.  Blocks are
    ``top``, ``global_defs``, ``vrrp_instance``, ``vrrp_sync_group``,
    ``virtual_server``, ``real_server`` and those other plugins added.
    A keyword already declared by another plugin is a startup error naming
    both.  Must not block; returns nothing.
    """


# -- 2. classes: called once when the daemon builds its plugin registry -------------


@hookspec
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:  # type: ignore[empty-body]
    """Real-server checker classes keyed by their keyword (``{"TCP_CHECK": TcpCheck}``).

    Called once at startup from the main thread; must not block.  Duplicate
    keywords across plugins are a startup error naming both plugins.
    """


@hookspec
def pykeepalived_register_trackers() -> dict[str, type[Tracker]]:  # type: ignore[empty-body]
    """VRRP tracker classes keyed by family (``{"script": ScriptTracker}``).

    Families used by keepalived.conf: ``script`` (vrrp_script/track_script),
    ``process`` (vrrp_track_process/track_process), ``interface``
    (track_interface) and ``file`` (vrrp_track_file/track_file).  Called once
    at startup; must not block.  Duplicates are a startup error.
    """


@hookspec
def pykeepalived_register_notifiers() -> dict[str, type[Notifier]]:  # type: ignore[empty-body]
    """Notifier classes keyed by a short name (``{"script": ScriptNotifier}``).

    Each class is instantiated once per configuration with the Config and
    receives every :class:`StateEvent` its ``wants()`` accepts.  Called once
    at startup; must not block.
    """


@hookspec
def pykeepalived_register_actions() -> dict[str, type[Action]]:  # type: ignore[empty-body]
    """Action classes keyed by name; same contract as notifiers, but they
    change the host (reload a service, rebind to a VIP)."""


# -- 3. lifecycle ----------------------------------------------------------------------


@hookspec
def pykeepalived_configure(config: Config) -> Awaitable[None] | None:
    """A configuration was loaded and is about to be applied (startup and
    every reload).  Called in the event loop's task; may return an awaitable,
    awaited under a timeout.  Per-plugin state belongs on the plugin object."""


@hookspec
def pykeepalived_unconfigure(config: Config) -> Awaitable[None] | None:
    """The configuration ``config`` is being replaced (reload) or the daemon
    stops.  Same calling rules as :func:`pykeepalived_configure`."""


# -- 4. events ---------------------------------------------------------------------------


@hookspec
def pykeepalived_state_change(event: StateEvent) -> Awaitable[None] | None:
    """A VRRP instance, sync group, real server or virtual server changed state.

    Called for every event, in order per subject, from the event dispatcher
    task; may return an awaitable, awaited under a timeout.  Exceptions are
    logged with the plugin's name and never stop the fan-out.
    """
