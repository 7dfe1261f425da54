"""The plugin manager, built by a factory the daemon owns (no global).

Built-in plugins are entry points of our own distribution in the group
``pykeepalived``, loaded exactly like third-party ones, so any of them can
be disabled (``--disable-plugin NAME``) or replaced.  Setting
``PYKEEPALIVED_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-ins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from pykeepalived.core.config.grammar import Grammar, core_grammar
from pykeepalived.core.config.schema import BlockSpec, DuplicateKeyword, Kw
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import Action, Checker, Notifier, Tracker
from pykeepalived.core.plugin.entrypoints import PluginEntry, entry_points

log = logging.getLogger("pykeepalived.plugins")

ENTRY_POINT_GROUP = "pykeepalived"
DISTRIBUTION = "pykeepalived"
DISABLE_AUTOLOAD_ENV = "PYKEEPALIVED_DISABLE_PLUGIN_AUTOLOAD"

T = TypeVar("T")


class PluginError(Exception):
    """A startup problem with plugins; the message names the plugin(s)."""


@dataclass
class PluginFailure:
    name: str
    error: str


@dataclass
class PluginRegistry:
    """The loaded plugins and the classes they registered."""

    pm: pluggy.PluginManager
    failures: list[PluginFailure] = field(default_factory=list)
    checkers: dict[str, type[Checker]] = field(default_factory=dict)
    trackers: dict[str, type[Tracker]] = field(default_factory=dict)
    notifiers: dict[str, type[Notifier]] = field(default_factory=dict)
    actions: dict[str, type[Action]] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        return sorted(n for n, _ in self.pm.list_name_plugin())

    def grammar(self) -> Grammar:
        """A fresh grammar: the core's plus every plugin's keywords."""
        g = core_grammar()
        for impl in self.pm.hook.pykeepalived_register_keywords.get_hookimpls():
            impl.function(grammar=_OwnedGrammar(g, impl.plugin_name))
        return g


class _OwnedGrammar(Grammar):
    """The view of a Grammar a plugin gets: its additions carry its name."""

    def __init__(self, inner: Grammar, owner: str) -> None:
        super().__init__(inner.blocks)
        self._owner = owner

    def add(self, block: str, kw: Kw) -> Kw:
        kw.owner = self._owner
        _stamp(kw.block, self._owner)
        try:
            return super().add(block, kw)
        except DuplicateKeyword as exc:
            raise PluginError(str(exc)) from None

    def new_block(self, name: str, spec: BlockSpec) -> BlockSpec:
        """Make ``spec`` addressable as ``name`` so other plugins can extend it."""
        if name in self.blocks:
            raise PluginError(f"block '{name}' is declared twice (second by {self._owner})")
        self.blocks[name] = spec
        return spec


def _stamp(spec: BlockSpec | None, owner: str) -> None:
    if spec is None:
        return
    for kw in spec.keywords.values():
        if kw.owner == "core":
            kw.owner = owner


def build_registry(
    disabled: Iterable[str] = (),
    *,
    autoload: bool | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginRegistry:
    """Load plugins from entry points, register ``extra`` ones, collect classes.

    Raises :class:`PluginError` for duplicate keywords or unknown hooks.
    A plugin that fails to import is recorded in ``failures`` and logged
    with its name and the cause; the daemon decides whether that is fatal.
    """
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    disabled = set(disabled)
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
    registry = PluginRegistry(pm)
    seen: set[str] = set()
    for ep in sorted(entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        if ep.name in disabled:
            log.info("plugin %s disabled", ep.name)
            continue
        if not autoload and not _is_builtin(ep):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure of a third-party module
            msg = f"{type(exc).__name__}: {exc}"
            registry.failures.append(PluginFailure(ep.name, msg))
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, msg)
            continue
        pm.register(plugin, name=ep.name)
    for name, plugin in extra:
        if name not in disabled:
            pm.register(plugin, name=name)
    unknown = set(disabled) - seen - {n for n, _ in extra}
    for name in sorted(unknown):
        log.warning("--disable-plugin %s: no such plugin", name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from None
    registry.checkers = _collect(pm.hook.pykeepalived_register_checkers, "checker")
    registry.trackers = _collect(pm.hook.pykeepalived_register_trackers, "tracker")
    registry.notifiers = _collect(pm.hook.pykeepalived_register_notifiers, "notifier")
    registry.actions = _collect(pm.hook.pykeepalived_register_actions, "action")
    return registry


def _is_builtin(ep: PluginEntry) -> bool:
    return ep.dist == DISTRIBUTION


def _collect(caller: Any, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in caller.get_hookimpls():
        result = impl.function()
        if not result:
            continue
        if not isinstance(result, dict):
            raise PluginError(f"plugin {impl.plugin_name}: {caller.name} must return a dict")
        for key, cls in result.items():
            if key in out:
                raise PluginError(
                    f"{what} '{key}' is registered by both {owners[key]} and {impl.plugin_name}"
                )
            out[key] = cls
            owners[key] = impl.plugin_name
    return out
