"""Test tooling for pykeepalived and for plugin authors; nothing in the product imports it.

* :mod:`pykeepalived.testing.lab` -- throwaway network-namespace labs
  (hosts on a bridge, processes killed and namespaces removed at the end);
* :mod:`pykeepalived.testing.pytest_plugin` -- the pytest plugin (entry point
  ``pytest11``): fixtures ``lab``, ``free_port``, ``pykeepalived_plugin``,
  ``pykeepalived_registry``; stale-lab cleanup only on request;
* :mod:`pykeepalived.testing.daemons` -- run pykeepalived or keepalived in a
  lab host and read their logs; render ``vrrp_instance`` blocks;
* :mod:`pykeepalived.testing.scenarios` -- tracker scenarios through real
  daemons (tests and ``bench/trackers.py``);
* :mod:`pykeepalived.testing.watch` -- adverts and address changes seen in a
  lab host, stamped on the caller's monotonic clock;
* :mod:`pykeepalived.testing.checks` -- one checker from a ``real_server``
  block, and a TCP port that never answers (connect timeouts);
* :mod:`pykeepalived.testing.demo` -- ``make demo``.

And for a plugin's unit tests, :func:`load_text` and :func:`build_registry`
(imported lazily: the pytest plugin imports this package in every session).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pykeepalived.core.config import LoadResult
    from pykeepalived.core.plugin.manager import PluginRegistry

__all__ = ["build_registry", "load_text"]


def build_registry(
    disabled: tuple[str, ...] = (),
    *,
    autoload: bool | None = None,
    extra: list[tuple[str, object]] | tuple[tuple[str, object], ...] = (),
) -> PluginRegistry:
    """The daemon's plugin registry: the installed plugins plus ``extra``
    ``(name, plugin)`` pairs (``autoload=False``: only the built-ins and ``extra``)."""
    from pykeepalived.core.plugin.manager import build_registry as build

    return build(disabled, autoload=autoload, extra=extra)


def load_text(
    text: str,
    *,
    registry: PluginRegistry | None = None,
    name: str = "<string>",
    config_id: str = "",
) -> LoadResult:
    """Parse keepalived.conf text as the daemon would, with ``registry``'s
    grammar (default: every installed plugin); ``name`` is the file name
    diagnostics show."""
    from pykeepalived.core.config import load_text as load

    grammar = (registry or build_registry()).grammar()
    return load(text, name=name, config_id=config_id, grammar=grammar)
