"""Live status on a unix socket: connect, read one JSON document.

``pykeepalived --status-socket /run/pykeepalived.sock`` then
``socat - UNIX-CONNECT:/run/pykeepalived.sock`` (or any client) prints the
state of every instance, its counters, trackers and virtual servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

#: Seconds the server waits for a request line before it sends the status:
#: a plain client (socat, a script) sends nothing and gets the status; one
#: that sends ``status`` gets it without the wait.
REQUEST_WAIT = 0.1

#: A request's handler: the rest of the request line in, a JSON document out.
Handler = Callable[[str], Awaitable[dict[str, Any]]]


class StatusServer:
    """Connect and read the status; or send one request line first
    (``reload-preview PATH``: see ``pykeepalived reload --dry-run``) and
    read its answer."""

    def __init__(
        self,
        path: str,
        snapshot: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]],
        requests: dict[str, Handler] | None = None,
    ) -> None:
        self.path = path
        self.snapshot = snapshot
        self.requests = requests or {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen; the directory is made (0755) if missing.  A socket that a
        live daemon still answers on is not taken over (OSError): two daemons
        started with the default path would otherwise steal it in turn."""
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        if _answers(self.path):
            raise OSError(f"another daemon is serving status on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = b""
            if self.requests:
                with contextlib.suppress(TimeoutError, ValueError, ConnectionError):
                    line = await asyncio.wait_for(reader.readline(), REQUEST_WAIT)
            verb, _, rest = line.decode(errors="replace").strip().partition(" ")
            handler = self.requests.get(verb)
            data: dict[str, Any]
            if handler is not None:
                try:
                    data = await handler(rest)
                except Exception as exc:  # a bad request must not end the server
                    data = {"error": f"{verb}: {exc}"}
            elif verb and verb != "status":
                data = {"error": f"unknown request {verb!r}"}
            else:
                snap = self.snapshot()
                data = await snap if inspect.isawaitable(snap) else snap
            writer.write(json.dumps(data, default=str).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()  # a client that hung up gets nothing
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _answers(path: str) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True
