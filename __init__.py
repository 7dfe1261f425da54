"""pykeepalived: keepalived re-built in Python as a plugin-based agent.

Plugin authors import the hook marker from here::

    from pykeepalived import hookimpl
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations of pykeepalived plugins.
hookimpl = pluggy.HookimplMarker("pykeepalived")

__all__ = ["__version__", "hookimpl"]
