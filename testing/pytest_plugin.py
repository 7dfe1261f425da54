"""pytest plugin of pykeepalived (entry point ``pytest11: pykeepalived``).

Loaded by pytest for every session, so module import stays light: the lab
library (:mod:`pykeepalived.testing.lab`) is imported only when a fixture or a
``netns`` test needs it.

Provides:

* marker ``netns`` -- the test needs root and network namespaces; it is
  skipped, with a reason naming the missing capability, when
  :func:`~pykeepalived.testing.lab.requires_netns` reports one;
* fixture ``lab`` -- factory ``lab(n_hosts=2) -> Lab`` (see
  :class:`~pykeepalived.testing.lab.Lab`); every lab it made is torn down after
  the test, whatever the outcome.  Using it also implies the ``netns`` skip;
* fixture ``free_port`` -- a currently free TCP port on 127.0.0.1;
* fixture ``pykeepalived_plugin`` -- list to register plugin objects for the
  duration of one test (see its docstring);
* opt-in (``--pykeepalived-clean-stale`` or ``PYKEEPALIVED_CLEAN_STALE_LABS=1``):
  at session start, leftover lab namespaces of crashed runs are removed
  (:func:`~pykeepalived.testing.lab.cleanup_stale`); never on import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pykeepalived.testing.lab import Lab

__all__ = ["LabFactory"]

LabFactory = Callable[..., "Lab"]


#: Set to 1 to remove leftover lab namespaces of crashed runs at session start.
CLEAN_STALE_ENV = "PYKEEPALIVED_CLEAN_STALE_LABS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pykeepalived")
    group.addoption(
        "--pykeepalived-clean-stale",
        action="store_true",
        default=False,
        help="at session start, remove lab namespaces (pka-*) left by crashed runs whose "
        f"creating process is gone (also: {CLEAN_STALE_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root and network namespaces")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Opt-in: this plugin is loaded by every pytest session on a host where
    # pykeepalived is installed, and deleting namespaces as root must never
    # happen just because a plugin author ran their tests.
    wanted = session.config.getoption("--pykeepalived-clean-stale") or os.environ.get(
        CLEAN_STALE_ENV, ""
    ) not in ("", "0")
    if not wanted:
        return
    # Cheap when nothing is stale: a directory listing, no subprocess.
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.isdir("/run/netns"):
        return
    if not any(name.startswith("pka-") for name in os.listdir("/run/netns")):
        return
    from pykeepalived.testing.lab import cleanup_stale

    cleanup_stale()


def _skip_without_netns() -> None:
    from pykeepalived.testing.lab import requires_netns

    reason = requires_netns()
    if reason is not None:
        pytest.skip(f"netns unavailable: {reason}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is not None:
        _skip_without_netns()


@pytest.fixture
def lab() -> Iterator[LabFactory]:
    """Factory for network-namespace labs: ``lab(n_hosts=2) -> Lab``.

    Returns a started :class:`~pykeepalived.testing.lab.Lab`; may be called
    several times per test.  All labs are closed (processes killed,
    namespaces deleted) at teardown, also when the test failed.  Skips the
    test when namespaces are unavailable.
    """
    _skip_without_netns()
    from pykeepalived.testing.lab import Lab

    made: list[Lab] = []

    def factory(n_hosts: int = 2, *, prefix: str = "pka-") -> Lab:
        new = Lab(n_hosts, prefix=prefix)
        made.append(new)
        return new.start()

    try:
        yield factory
    finally:
        for item in reversed(made):
            item.close()


@pytest.fixture
def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (root namespace)."""
    from pykeepalived.testing.lab import free_port as _free_port

    return _free_port()


@pytest.fixture
def pykeepalived_plugin() -> Iterator[list[object]]:
    """Plugin objects to register for one test, without an entry point.

    Append plugin objects (modules, classes or instances carrying
    ``@pykeepalived.hookimpl`` functions) to the yielded list, then use the
    ``pykeepalived_registry`` fixture (or pass them yourself as
    ``build_registry(extra=...)``): the registry it builds has the built-in
    plugins plus these.  Nothing outlives the test: registries are built per
    call, there is no global plugin manager to clean up.
    """
    plugins: list[object] = []
    yield plugins
    plugins.clear()


@pytest.fixture
def pykeepalived_registry(pykeepalived_plugin: list[object]) -> Callable[..., object]:
    """Build a PluginRegistry with the built-ins and the test's plugins.

    ``pykeepalived_registry(disabled=())`` -> ``PluginRegistry``; call it
    after appending to ``pykeepalived_plugin``.
    """

    def build(disabled: tuple[str, ...] = ()) -> object:
        from pykeepalived.core.plugin.manager import build_registry

        extra = [(f"test-plugin-{i}", p) for i, p in enumerate(pykeepalived_plugin)]
        return build_registry(disabled, extra=extra)

    return build
