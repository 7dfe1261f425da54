"""The pytest plugin's plugin-registration fixtures work for plugin authors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pykeepalived import hookimpl
from pykeepalived.core.plugin.base import Notifier, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry
from pykeepalived.testing.lab import cleanup_stale, requires_netns
from pykeepalived.testing.pytest_plugin import CLEAN_STALE_ENV

NETNS = Path("/run/netns")


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


_LEAK = """
import json, os, signal
from pykeepalived.testing.lab import Lab
lab = Lab(1).start()
print(json.dumps(lab.namespaces), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _inner_session(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.netns
def test_stale_lab_cleanup_is_opt_in(tmp_path: Path) -> None:
    """Loading the plugin (any pytest session on a host with pykeepalived) must
    not delete namespaces; --pykeepalived-clean-stale or the variable does."""
    leak = subprocess.run([sys.executable, "-c", _LEAK], capture_output=True, text=True, timeout=30)
    leaked: list[str] = json.loads(leak.stdout.splitlines()[0])
    try:
        assert leaked and all((NETNS / ns).exists() for ns in leaked)
        env = {k: "" for k in (CLEAN_STALE_ENV,)}
        _inner_session(tmp_path, env=env)
        assert all((NETNS / ns).exists() for ns in leaked), "removed without opting in"
        _inner_session(tmp_path, env={CLEAN_STALE_ENV: "1"})
        assert not any((NETNS / ns).exists() for ns in leaked)
        leaked = json.loads(
            subprocess.run(
                [sys.executable, "-c", _LEAK], capture_output=True, text=True, timeout=30
            ).stdout.splitlines()[0]
        )
        # "Stale" means older than the cleaning process, whose start time is known
        # to the second only (/proc/stat btime): let a second pass.
        time.sleep(1.1)
        _inner_session(tmp_path, "--pykeepalived-clean-stale", env=env)
        assert not any((NETNS / ns).exists() for ns in leaked)
    finally:
        cleanup_stale(older_than=time.time() + 1)


def test_requires_netns_is_none_as_root() -> None:
    """The ``netns`` skip is honest.  As root the lab must work: a failing probe there
    would turn every ``netns`` test into a skip, so it fails here (this test carries no
    ``netns`` mark, or it would be skipped in the one case it can fail).  Not root: the
    reason names the missing capability."""
    reason = requires_netns()
    if os.geteuid() == 0:
        assert reason is None
    else:
        assert reason is not None and "root" in reason
