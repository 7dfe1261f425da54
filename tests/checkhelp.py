"""Helpers shared by tests/test_check_*.py and tests/test_lvs*.py."""

from __future__ import annotations

import logging
from typing import Any

from pykeepalived.core.config import load_text
from pykeepalived.core.config.model import Config
from pykeepalived.core.lvs.manager import NullBackend, VirtualServerManager
from pykeepalived.core.plugin.base import Checker, StateEvent
from pykeepalived.core.plugin.manager import build_registry
from pykeepalived.testing import checks as testing_checks

_REGISTRY: Any = None


def registry() -> Any:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry(autoload=False)
    return _REGISTRY


def config(text: str) -> Config:
    res = load_text(text, grammar=registry().grammar())
    errors = [str(d) for d in res.diagnostics.errors]
    assert not errors, errors
    return res.config


class Recorder(NullBackend):
    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[Any] = []

    def apply(self, services: list[Any]) -> None:
        super().apply(services)
        self.pushes.append(services)


def manager(text: str) -> tuple[VirtualServerManager, list[StateEvent], Recorder]:
    events: list[StateEvent] = []
    backend = Recorder()
    m = VirtualServerManager(config(text), registry().checkers, backend=backend, emit=events.append)
    return m, events, backend


def one_checker(
    block: str, address: str = "127.0.0.1", port: int = 80, vs_extra: str = ""
) -> Checker:
    """The checker configured by ``block`` inside one real server."""
    return testing_checks.one_checker(block, address, port, vs_extra, registry=registry())


def lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
