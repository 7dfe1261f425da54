"""The pytest plugin's plugin-registration fixtures work for plugin authors."""

from __future__ import annotations

from collections.abc import Callable

from pykeepalived import hookimpl
from pykeepalived.core.plugin.base import Notifier, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry


class _Recorder(Notifier):
    name = "recorder"

    async def notify(self, event: StateEvent) -> None:  # pragma: no cover - not called here
        pass


class _Plugin:
    @hookimpl
    def pykeepalived_register_notifiers(self) -> dict[str, type[Notifier]]:
        return {"recorder": _Recorder}


def test_registered_plugin_is_in_registry(
    pykeepalived_plugin: list[object], pykeepalived_registry: Callable[..., object]
) -> None:
    pykeepalived_plugin.append(_Plugin())
    registry = pykeepalived_registry()
    assert isinstance(registry, PluginRegistry)
    assert registry.notifiers["recorder"] is _Recorder
    assert "test-plugin-0" in registry.plugin_names()


def test_registry_without_test_plugins(pykeepalived_registry: Callable[..., object]) -> None:
    registry = pykeepalived_registry()
    assert isinstance(registry, PluginRegistry)
    assert "recorder" not in registry.notifiers
    assert "notify_script" in registry.plugin_names()
