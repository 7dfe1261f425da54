"""The web dashboard: rendered by a real browser against a real daemon, updated live.

Headless Chromium (Debian's) runs inside the lab host next to the daemon and
is driven over the DevTools protocol (pykeepalived.testing.browser); the test
reads the rendered DOM, not the HTML we sent.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pykeepalived.core.shell.http_api import HttpApi
from pykeepalived.testing import browser
from pykeepalived.testing.daemons import PyNode, dump_logs, global_defs, instance, wait_holder
from pykeepalived.testing.lab import free_port

ROOT = Path(__file__).resolve().parent.parent
#: Screenshots are kept here (a test artifact; .build/ is not committed).
ARTIFACTS = Path(os.environ.get("PYKEEPALIVED_TEST_ARTIFACTS", ROOT / ".build" / "test-artifacts"))
PORT = 9650
VI = "document.querySelector('[data-instance=\"VI_1\"]')"
STATE = f"({VI} && {VI}.parentElement.querySelector('[data-state]').dataset.state)"


def _node(host: Any, tmp_path: Path, priority: int, http: bool) -> PyNode:
    node = PyNode(host, tmp_path)
    if http:
        node.extra_args = ["--http-listen", str(PORT)]
    node.start(
        global_defs(host.name)
        + instance(priority=priority, version=3, advert_int=0.1, vips=("192.0.2.100/24",))
    )
    return node


@pytest.mark.netns
def test_dashboard_shows_instances_and_a_failover_live(lab: Any, tmp_path: Path) -> None:
    why = browser.missing()
    if why is not None:
        pytest.fail(f"make test installs chromium: {why}")
    net = lab(2)
    h1, h2 = net.hosts
    watched = _node(h1, tmp_path, 100, http=True)
    master = _node(h2, tmp_path, 150, http=False)
    try:
        wait_holder(net.hosts, "192.0.2.100", "h2", 15)
        with browser.Browser(h1, f"http://127.0.0.1:{PORT}/") as page:
            page.wait_for(f"{STATE} === 'BACKUP'", timeout=15)
            text = page.eval("document.body.innerText")
            assert "VI_1" in text and "192.0.2.100/24" in text
            assert page.eval("document.title") == "pykeepalived"
            master.kill()
            # The daemon's own view first: when it says MASTER, the open page
            # (no reload) must say so within 2 s.
            deadline = time.monotonic() + 15
            while watched.instance_status("VI_1")["state"] != "MASTER":
                assert time.monotonic() < deadline, dump_logs([watched, master])
                time.sleep(0.02)
            seen = time.monotonic()
            shown = page.wait_for(f"{STATE} === 'MASTER'", timeout=5, interval=0.02)
            assert shown - seen <= 2.0
            transitions = page.eval("document.querySelector('#transitions tbody').innerText")
            assert "VI_1" in transitions and "MASTER" in transitions
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = page.screenshot(ARTIFACTS / "dashboard-failover.png")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        for node in (watched, master):
            node.kill()


@pytest.mark.netns
def test_token_required_off_loopback(lab: Any, tmp_path: Path) -> None:
    """With --http-token-file, a client on another host needs the token; loopback does not."""
    net = lab(2)
    h1, h2 = net.hosts
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    node = PyNode(h1, tmp_path)
    node.extra_args = ["--http-listen", f"{h1.ip4}:{PORT}", "--http-token-file", str(token)]
    node.start(global_defs("h1") + instance(priority=150, state="MASTER"))
    try:
        wait_holder(net.hosts, "192.0.2.100", "h1", 15)

        def status_code(host: Any, url: str, auth: str | None = None) -> str:
            code = (
                "import urllib.request,urllib.error,sys\n"
                f"req=urllib.request.Request({url!r})\n"
                + (f"req.add_header('Authorization', {auth!r})\n" if auth else "")
                + "try:\n print(urllib.request.urlopen(req, timeout=5).status)\n"
                "except urllib.error.HTTPError as e:\n print(e.code)\n"
            )
            return str(host.run([sys.executable, "-c", code]).stdout.strip())

        url = f"http://{h1.ip4}:{PORT}/status"
        assert status_code(h2, url) == "401"
        assert status_code(h2, url, "Bearer wrong") == "401"
        assert status_code(h2, url, "Bearer s3cret-token") == "200"
        assert status_code(h2, url + "?token=s3cret-token") == "200"
        assert status_code(h2, f"http://{h1.ip4}:{PORT}/") == "401"
        # the same host's own address is not loopback; 127.0.0.1 is not served
        # here (bound to h1's address), so loopback is checked in-process below.
    finally:
        node.kill()


async def test_loopback_clients_need_no_token_and_the_page_has_no_secrets() -> None:
    port = free_port()
    snapshot = {"pid": 1, "uptime": 1.0, "vrrp_instances": [], "transitions": []}
    api = HttpApi("127.0.0.1", port, lambda: snapshot, token="s3cret-token")
    await api.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200
                page = await r.text()
                assert "EventSource" in page and "s3cret-token" not in page
            async with session.get(f"http://127.0.0.1:{port}/events") as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                first = await r.content.readuntil(b"\n\n")
                assert first.startswith(b"event: status\ndata: {")
                # a change wakes the stream at once, long before the periodic refresh
                snapshot["uptime"] = 2.0
                api.changes.notify()
                second = await r.content.readuntil(b"\n\n")
                assert b'"uptime":2.0' in second
    finally:
        await api.close()


def test_token_check() -> None:
    api = HttpApi("192.0.2.11", 1, lambda: {}, token="t0k")
    assert api.allowed("127.0.0.1", None, None) and api.allowed("::1", None, None)
    assert not api.allowed("192.0.2.12", None, None)
    assert not api.allowed("192.0.2.12", "Bearer nope", None)
    assert api.allowed("192.0.2.12", "Bearer t0k", None)
    assert api.allowed("192.0.2.12", None, "t0k")
    assert HttpApi("127.0.0.1", 1, lambda: {}).allowed("192.0.2.12", None, None)
