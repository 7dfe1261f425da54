"""Drive a headless Chromium from tests, over the DevTools protocol (no driver download).

The browser must run where the page is reachable, which in a namespace lab
means inside a lab host: :class:`Browser` starts this module as a small
driver process there (``host.popen``), and the driver starts Chromium next
to itself.  The test talks to the driver over its stdin/stdout, one JSON
request and one JSON answer per line::

    with Browser(host, "http://127.0.0.1:9650/") as page:
        page.wait_for("document.title === 'pykeepalived'")
        state = page.eval("document.querySelector('[data-state]').dataset.state")
        page.screenshot(path)

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make test``); it
is started with the flags that keep it off the network (no background
networking, component updates or sync) and with a throwaway profile.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pykeepalived.testing.lab import Host

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a namespace: the sandbox needs user namespaces we do not set up
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def missing() -> str | None:
    """Why no browser can run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (Debian package chromium)"
    return None


class Browser:
    """A page in a headless Chromium inside ``host``'s namespace."""

    def __init__(self, host: Host, url: str, *, timeout: float = 30.0) -> None:
        self.host = host
        self.url = url
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Browser:
        self.proc = self.host.popen(
            [sys.executable, "-m", "pykeepalived.testing.browser", self.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        ready = self._answer()
        if not ready.get("ok"):
            raise RuntimeError(f"browser did not start: {ready.get('error')}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            proc.stdin.flush()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(5)

    def _request(self, **req: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("browser driver exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        answer = self._request(op="eval", expression=expression)
        if not answer.get("ok"):
            raise RuntimeError(f"{expression}: {answer.get('error')}")
        return answer.get("value")

    def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> float:
        """Poll until ``expression`` is truthy; returns the time.monotonic() it was."""
        deadline = time.monotonic() + timeout
        while True:
            if self.eval(expression):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"page never satisfied {expression!r} within {timeout}s")
            time.sleep(interval)

    def screenshot(self, path: Path) -> Path:
        answer = self._request(op="screenshot", path=str(path))
        if not answer.get("ok"):
            raise RuntimeError(f"screenshot: {answer.get('error')}")
        return path


# -- the driver (runs inside the lab host) ---------------------------------------------


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    marker = profile / "DevToolsActivePort"
    for _ in range(300):
        if marker.exists():
            text = marker.read_text().split()
            if text:
                return int(text[0])
        if proc.returncode is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        await asyncio.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port")


async def _drive(url: str) -> None:
    import aiohttp

    profile = Path(tempfile.mkdtemp(prefix="pka-chromium-"))
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    loop = asyncio.get_running_loop()

    def say(**answer: Any) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    try:
        port = await _devtools_port(profile, proc)
        async with aiohttp.ClientSession() as http:
            ws_url = None
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
                await asyncio.sleep(0.1)
            if ws_url is None:
                raise RuntimeError("no page target")
            async with http.ws_connect(ws_url, max_msg_size=64 * 2**20) as ws:
                ids = iter(range(1, 2**31))

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == n:
                            if "error" in msg:
                                raise RuntimeError(msg["error"].get("message", "error"))
                            result: dict[str, Any] = msg.get("result", {})
                            return result

                say(ok=True)
                while True:
                    line = await loop.run_in_executor(None, sys.stdin.readline)
                    if not line:
                        return
                    req = json.loads(line)
                    try:
                        if req["op"] == "quit":
                            return
                        if req["op"] == "eval":
                            res = await call(
                                "Runtime.evaluate",
                                expression=req["expression"],
                                returnByValue=True,
                            )
                            if "exceptionDetails" in res:
                                say(ok=False, error=res["exceptionDetails"].get("text"))
                            else:
                                say(ok=True, value=res.get("result", {}).get("value"))
                        elif req["op"] == "screenshot":
                            shot = await call("Page.captureScreenshot", format="png")
                            Path(req["path"]).write_bytes(base64.b64decode(shot["data"]))
                            say(ok=True)
                        else:
                            say(ok=False, error=f"unknown op {req['op']}")
                    except Exception as exc:  # report to the test, keep serving
                        say(ok=False, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        say(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(_drive(sys.argv[1]))
