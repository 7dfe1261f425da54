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
from collections.abc import Awaitable, Callable
from typing import Any


class StatusServer:
    def __init__(
        self,
        path: str,
        snapshot: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]],
    ) -> None:
        self.path = path
        self.snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = self.snapshot()
            if inspect.isawaitable(data):
                data = await data
            writer.write(json.dumps(data, default=str).encode() + b"\n")
            await writer.drain()
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
