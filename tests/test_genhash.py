"""``pykeepalived genhash`` is the HTTP_GET checker's client.

For a plain page, a chunked page and servers on non-default ports: the
digest our genhash prints is the one our HTTP_GET accepts (a real server
checked with it goes UP), and equal to what keepalived 2.2.7's genhash
(Debian's /usr/bin/genhash, installed by ``make test``) prints.  The
request bytes of keepalived's genhash, ours and our checker are compared on
a raw TCP server, also on port 80 in a namespace (keepalived still appends
``:80`` to Host).

keepalived's genhash *is* its HTTP_GET checker (check_genhash.c runs
check_http.c on a dummy real server), so it stands for the checker here:
keepalived's checker process itself cannot run on this host (it exits with
"IPVS: Can't initialize ipvs" when the kernel has no ip_vs).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from checkhelp import manager, one_checker

from pykeepalived.core.lvs.checking import run_attempt
from pykeepalived.core.plugin.base import EventKind

KEEPALIVED_GENHASH = Path("/usr/bin/genhash")
PYKEEPALIVED = Path(sys.executable).with_name("pykeepalived")
TESTS = Path(__file__).resolve().parent

PAGE = b"<html><body>hello from the real server</body></html>\n" * 40
PIECES = [b"<html>", b"chunked " * 300, b"</html>\n"]


@pytest.fixture(scope="module")
def keepalived_genhash() -> Path:
    # The oracle is required: `make test` installs keepalived (APT_PACKAGES).
    if not KEEPALIVED_GENHASH.exists():
        pytest.fail(f"{KEEPALIVED_GENHASH} missing: install keepalived (make setup)")
    return KEEPALIVED_GENHASH


async def _page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html")


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for piece in PIECES:
        await resp.write(piece)
    await resp.write_eof()
    return resp


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/page", _page)
    app.router.add_get("/chunked", _chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    yield server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    await runner.cleanup()


async def _run(*argv: str | Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *map(str, argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _digests(genhash: Path, *args: str) -> tuple[str, str]:
    """(ours, keepalived's) digest for the same genhash arguments."""
    rc, ours, err = await _run(PYKEEPALIVED, "genhash", *args)
    assert rc == 0, err
    rc, theirs, err = await _run(genhash, *args)
    assert rc == 0 and not err, err
    assert re.fullmatch(r"[0-9a-f]{32}\n", ours), ours
    return ours.strip(), theirs.strip()


async def _goes_up(port: int, url: str, protocol: str) -> bool:
    """Whether a real server checked by HTTP_GET with ``url`` goes UP.

    With ``alpha`` it starts down and its first check's verdict is notified
    either way (keepalived's alpha: a first failure is notified too).
    """
    m, events, _ = manager(
        "virtual_server 192.0.2.100 80 {\n protocol TCP\n delay_loop 1\n alpha\n"
        f" real_server 127.0.0.1 {port} {{\n  HTTP_GET {{\n   connect_timeout 2\n   warmup 0\n"
        f"   retry 0\n   http_protocol {protocol}\n   url {{\n{url}\n   }}\n  }}\n }}\n}}\n"
    )
    await m.start()
    try:
        for _ in range(100):
            states = [e.state for e in events if e.kind is EventKind.REAL_SERVER]
            if states:
                return states[0] == "UP"
            await asyncio.sleep(0.05)
        raise AssertionError("no verdict on the real server within 5 s")
    finally:
        await m.stop()


@pytest.mark.parametrize(
    ("path", "protocol"),
    [("/page", "1.0"), ("/page", "1.1"), ("/chunked", "1.1")],
    ids=["plain-1.0", "plain-1.1", "chunked-1.1"],
)
async def test_genhash_digest_is_keepalived_s_and_http_get_accepts_it(
    web_port: int, keepalived_genhash: Path, path: str, protocol: str
) -> None:
    args = ["-s", "127.0.0.1", "-p", str(web_port), "-u", path, "-P", protocol]
    ours, theirs = await _digests(keepalived_genhash, *args)
    assert ours == theirs
    if path == "/chunked":
        # keepalived hashes the chunk framing too: not the decoded body's digest
        assert ours != hashlib.md5(b"".join(PIECES)).hexdigest()
    else:
        assert ours == hashlib.md5(PAGE).hexdigest()
    assert await _goes_up(web_port, f"    path {path}\n    digest {ours}", protocol)
    # and the check can fail: another digest keeps the real server down
    assert not await _goes_up(web_port, f"    path {path}\n    digest {'0' * 32}", protocol)


# -- the request bytes -----------------------------------------------------------------------

ANSWER = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"


async def _recorder(seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """A raw server: records each request, answers ANSWER and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(ANSWER)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("genhash_args", "checker_block"),
    [
        ((), ""),
        (("-P", "1.0c"), "http_protocol 1.0C"),
        (
            ("-P", "1.1", "-V", "www.example.test"),
            "http_protocol 1.1\n virtualhost www.example.test",
        ),
    ],
    ids=["address-port", "1.0C", "virtualhost-1.1"],
)
async def test_same_request_bytes_as_keepalived(
    keepalived_genhash: Path, genhash_args: tuple[str, ...], checker_block: str
) -> None:
    seen: list[bytes] = []
    srv, port = await _recorder(seen)
    try:
        args = ("-s", "127.0.0.1", "-p", str(port), "-u", "/status?full", *genhash_args)
        ours, theirs = await _digests(keepalived_genhash, *args)
        assert ours == theirs == hashlib.md5(b"hello").hexdigest()
        checker = one_checker(
            f"HTTP_GET {{\n connect_timeout 2\n {checker_block}\n url {{\n path /status?full\n"
            f" digest {ours}\n }}\n}}",
            port=port,
        )
        result = await run_attempt(checker, 5)
        await checker.close()
        assert result.ok, result.message
    finally:
        srv.close()
    assert len(seen) == 3
    keepalived_s, our_genhash, our_checker = seen
    assert our_genhash == keepalived_s
    assert our_checker == keepalived_s
    assert b"Accept" not in keepalived_s


# keepalived appends ":80" to Host even on the default port; checked in a
# namespace, where port 80 and the documentation addresses are ours.
RAW_SERVER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 80))
s.listen(8)
print("listening", flush=True)
for _ in range(3):
    c, _ = s.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        more = c.recv(4096)
        if not more:
            break
        data += more
    print(data.hex(), flush=True)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    c.close()
"""

CHECK_ONCE = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[3])
from checkhelp import one_checker
from pykeepalived.core.lvs.checking import run_attempt
block = "HTTP_GET {\n connect_timeout 2\n url {\n path /\n }\n}"
result = asyncio.run(run_attempt(one_checker(block, address=sys.argv[1], port=int(sys.argv[2])), 5))
print(result.ok, result.message)
"""


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_default_port_80_is_in_host_too(lab: object, keepalived_genhash: Path, family: str) -> None:
    net = lab(1)  # type: ignore[operator]
    host = net.hosts[0]
    address = host.ip4 if family == "ipv4" else host.ip6
    server = host.popen([sys.executable, "-c", RAW_SERVER, address], stdout=-1, text=True)
    assert server.stdout.readline().strip() == "listening"
    args = ["-s", address, "-p", "80", "-u", "/"]
    theirs = host.run([str(keepalived_genhash), *args])
    ours = host.run([str(PYKEEPALIVED), "genhash", *args])
    assert ours.stdout == theirs.stdout == hashlib.md5(b"hello").hexdigest() + "\n"
    checked = host.run([sys.executable, "-c", CHECK_ONCE, address, "80", str(TESTS)])
    assert checked.stdout.startswith("True"), checked.stdout + checked.stderr
    out, _ = server.communicate(timeout=10)
    requests = [bytes.fromhex(line) for line in out.split()]
    bracketed = address if family == "ipv4" else f"[{address}]"
    expected = (
        b"GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: "
        + bracketed.encode()
        + b":80\r\n\r\n"
    )
    assert requests == [expected] * 3


async def test_failures_are_one_line_messages(keepalived_genhash: Path) -> None:
    # no header before the close: keepalived's genhash words it on stderr (and
    # exits 0); ours prints the same words and exits 1
    srv = await asyncio.start_server(_close_at_once, "127.0.0.1", 0)
    port = str(srv.sockets[0].getsockname()[1])
    try:
        args = ("-s", "127.0.0.1", "-p", port, "-u", "/")
        _, out, theirs = await _run(keepalived_genhash, *args)
        rc, out, ours = await _run(PYKEEPALIVED, "genhash", *args)
    finally:
        srv.close()
    assert theirs == ours == "no data received from remote webserver\n" and out == ""
    assert rc == 1
    for bad, message in (
        (["-s", "www.example.test", "-p", "80"], "server should be an IP, not www.example.test"),
        (["-s", "127.0.0.1", "-p", "65536"], "invalid port number '65536'"),
        (["-s", "127.0.0.1", "-p", "80", "-P", "2.0"], "invalid choice: '2.0'"),
        (["-s", "127.0.0.1", "-p", "80", "-t", "-1"], "invalid timeout '-1'"),
        (["-s", "127.0.0.1", "-p", "80", "-m", "x"], "invalid fwmark 'x'"),
    ):
        rc, out, err = await _run(PYKEEPALIVED, "genhash", *bad, "-u", "/")
        # one line says what is wrong (argparse's usage lines may precede it)
        assert rc != 0 and out == "" and message in err.strip().splitlines()[-1], err
        assert "Traceback" not in err, err


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.0 200 OK\r\n")  # a header that never ends
    await writer.drain()
    writer.close()


async def test_verbose_shows_the_header_and_the_digest(web_port: int) -> None:
    rc, out, err = await _run(
        PYKEEPALIVED, "genhash", "-v", "-s", "127.0.0.1", "-p", str(web_port), "-u", "/page"
    )
    assert rc == 0, err
    assert out.startswith("HTTP/1.0 200 OK\n") and "\nContent-Length: 2120\n" in out
    assert out.endswith(f"MD5SUM = {hashlib.md5(PAGE).hexdigest()}\n")
