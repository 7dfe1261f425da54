"""asyncio without the ssl module until something asks for TLS.

``import asyncio`` imports ``ssl``, which loads OpenSSL (libssl, libcrypto)
and its Python wrapper: about 4 MB of a daemon's RSS, a sixth of it.  A
VRRP-only daemon never speaks TLS; SSL_GET checks, SMTP alerts with TLS and
the HTTP API do.  keepalived pays for OpenSSL only when built with it.

asyncio tolerates a Python without ssl: its modules catch the ImportError
and bind ``ssl = None``.  :func:`defer` imports asyncio that way, then puts
an import hook in front of ``ssl``: the first ``import ssl`` anywhere in the
process (aiohttp, aiosmtplib, the HTTP checker) loads the real module and
gives it to asyncio's modules before any code can use it, so TLS works
exactly as if ssl had been imported first.  On an asyncio whose modules do
not look as expected (a future Python), :func:`defer` imports ssl at once:
correct, just not smaller.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

#: asyncio's modules that do ``try: import ssl / except ImportError: ssl = None``.
ASYNCIO_SSL_USERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


def defer() -> bool:
    """Import asyncio without ssl; True if ssl is now loaded on first use."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError
    try:
        import asyncio  # noqa: F401  # its modules bind ssl = None
    finally:
        del sys.modules["ssl"]
    if not all(
        hasattr(sys.modules.get(name), "ssl") and sys.modules[name].ssl is None
        for name in ASYNCIO_SSL_USERS
    ):
        import ssl

        give_asyncio(ssl)
        return False
    sys.meta_path.insert(0, _SslFinder())
    return True


def give_asyncio(ssl: ModuleType) -> None:
    """Bind the real ssl module where asyncio's modules expect it."""
    for name in ASYNCIO_SSL_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            setattr(module, "ssl", ssl)  # noqa: B010  # a module's global, by name
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        # what sslproto defines at import when ssl is there
        setattr(sslproto, "SSLAgainErrors", (ssl.SSLWantReadError, ssl.SSLSyscallError))  # noqa: B010


# The import protocols by their methods, not importlib.abc's base classes: importing
# importlib.abc pulls in importlib.resources, tempfile, shutil, bz2 and lzma (1 MB).
class _SslFinder:
    """Finds the real ``ssl`` and hands it to asyncio once it is executed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "ssl":
            return None
        sys.meta_path.remove(self)  # one use: from here on ssl imports normally
        spec = importlib.util.find_spec("ssl")
        if spec is None or spec.loader is None:
            return None
        spec.loader = _GivingLoader(spec.loader)  # type: ignore[assignment]
        return spec


class _GivingLoader:
    def __init__(self, inner: Loader) -> None:
        self.inner = inner

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        give_asyncio(module)
