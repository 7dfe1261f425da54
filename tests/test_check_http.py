"""HTTP_GET and SSL_GET against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from checkhelp import config, one_checker

from pykeepalived.core.lvs.checking import run_attempt
from pykeepalived.core.lvs.http_client import (
    MAX_HEAD,
    HttpAnswer,
    HttpResponseError,
    content_length,
    status_code,
)
from pykeepalived.core.lvs.manager import VirtualServerManager

BODY = b"<html>hello keepalived</html>\n"
SEEN_HOSTS: list[str] = []
SEEN_SNI: list[str | None] = []


async def _page(request: web.Request) -> web.Response:
    SEEN_HOSTS.append(request.headers.get("Host", ""))
    return web.Response(body=BODY, content_type="text/html")


async def _missing(request: web.Request) -> web.Response:
    return web.Response(status=503, text="down")


HANG_RELEASE: list[asyncio.Event] = []


async def _hang(request: web.Request) -> web.Response:
    ev = asyncio.Event()
    HANG_RELEASE.append(ev)
    await ev.wait()
    return web.Response(text="late")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _page)
    app.router.add_get("/503", _missing)
    app.router.add_get("/hang", _hang)
    return app


async def _serve(ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    runner, port = await _serve()
    yield port
    await runner.cleanup()


def http(port: int, url: str, extra: str = "", kind: str = "HTTP_GET", timeout: int = 10) -> object:
    """A checker against ``port``; ``timeout`` is generous unless a test is
    about the timeout (a loaded machine can stall a local answer for seconds)."""
    return one_checker(
        f"{kind} {{\n connect_timeout {timeout}\n {extra}\n url {{\n{url}\n }}\n}}",
        port=port,
        vs_extra="virtualhost www.example.test",
    )


async def attempt(checker: object) -> tuple[bool, str]:
    result = await run_attempt(checker, 3)  # type: ignore[arg-type]
    await checker.close()  # type: ignore[attr-defined]
    return result.ok, result.message


async def test_status_code(http_port: int) -> None:
    assert (await attempt(http(http_port, "path /")))[0]
    ok, msg = await attempt(http(http_port, "path /503"))
    assert not ok and msg == "HTTP status code error to"
    assert (await attempt(http(http_port, "path /503\nstatus_code 500-599")))[0]


async def test_digest_and_host_header(http_port: int) -> None:
    good = hashlib.md5(BODY).hexdigest()
    SEEN_HOSTS.clear()
    ok, msg = await attempt(http(http_port, f"path /\ndigest {good}"))
    assert ok and msg == f"MD5 digest success to [127.0.0.1]:tcp:{http_port} url(/)."
    assert SEEN_HOSTS == ["www.example.test"]  # the virtual server's virtualhost
    ok, msg = await attempt(http(http_port, f"path /\ndigest {'0' * 32}"))
    assert not ok and msg == "MD5 digest error to"
    await attempt(http(http_port, "path /\nvirtualhost url.example.test"))
    assert SEEN_HOSTS[-1] == "url.example.test"


async def test_regex(http_port: int) -> None:
    assert (await attempt(http(http_port, 'path /\nregex "hello [a-z]+"')))[0]
    ok, msg = await attempt(http(http_port, 'path /\nregex "goodbye"'))
    assert not ok and msg == "Regex match failed"
    assert (await attempt(http(http_port, 'path /\nregex "goodbye"\nregex_no_match')))[0]
    assert not (await attempt(http(http_port, 'path /\nregex "hello"\nregex_no_match')))[0]


async def test_every_url_must_pass(http_port: int) -> None:
    checker = one_checker(
        "HTTP_GET {\n connect_timeout 10\n url {\n path /\n }\n url {\n path /503\n }\n}",
        port=http_port,
    )
    assert not (await attempt(checker))[0]


async def test_server_that_never_answers_times_out(http_port: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ok, msg = await attempt(http(http_port, "path /hang", timeout=1))
    assert not ok and msg == "timeout after 1s", msg
    assert loop.time() - start < 10  # the timeout ended it (10x its 1 s)
    assert HANG_RELEASE  # the request did reach the server
    for ev in HANG_RELEASE:
        ev.set()


async def test_connection_refused() -> None:
    ok, _ = await attempt(http(1, "path /"))
    assert not ok


def test_config_errors_have_places() -> None:
    from checkhelp import registry

    from pykeepalived.core.config import load_text

    res = load_text(
        "virtual_server 192.0.2.1 80 {\n real_server 192.0.2.2 80 {\n  HTTP_GET {\n   url {\n    digest xyz\n"
        "    status_code 200-100\n   }\n  }\n  HTTP_GET {\n  }\n }\n}\n",
        grammar=registry().grammar(),
    )
    errors = [str(d) for d in res.diagnostics.errors]
    assert any("<string>:5:" in e and "not an MD5 digest" in e for e in errors)
    assert any("<string>:6:" in e and "Invalid HTTP_GET status code '200-100'" in e for e in errors)
    assert any("<string>:9:" in e and "needs at least one url" in e for e in errors)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rs.example.test",
         "-addext", "subjectAltName=DNS:rs.example.test", "-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return crt, key


async def test_ssl_get_with_and_without_ca(cert: tuple[Path, Path]) -> None:
    crt, key = cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    SEEN_SNI.clear()
    ctx.sni_callback = lambda sock, name, c: SEEN_SNI.append(name)  # type: ignore[assignment,misc,return-value]
    runner, port = await _serve(ctx)
    try:
        # no SSL block: the certificate is not verified (keepalived's default)
        ok, msg = await attempt(http(port, "path /", kind="SSL_GET"))
        assert ok, msg
        assert SEEN_SNI[-1] is None
        # enable_sni sends the virtualhost
        assert (await attempt(http(port, "path /", "enable_sni", kind="SSL_GET")))[0]
        assert SEEN_SNI[-1] == "www.example.test"
        # keepalived 2.2.7 loads the ca but never verifies the server with it:
        # the CA that signed the certificate passes, and so does one that did not
        other = crt.with_name("other-ca.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=other CA", "-keyout", str(other.with_suffix(".key")), "-out", str(other)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        for ca in (crt, other):
            m = VirtualServerManager(
                config(
                    f"SSL {{\n ca {ca}\n}}\nvirtual_server 192.0.2.100 443 {{\n protocol TCP\n real_server 127.0.0.1 {port} {{\n"
                    "  SSL_GET {\n   connect_timeout 10\n   url {\n    path /\n   }\n  }\n }\n}\n"
                ),
                __import__("checkhelp").registry().checkers,
            )
            assert (await attempt(m.scheduler.runs[0].checker))[0], ca
        # ... and plain HTTP against the TLS port fails
        assert not (await attempt(http(port, "path /")))[0]
    finally:
        await runner.cleanup()


def test_plugin_import_does_not_import_aiohttp() -> None:
    code = "import sys, pykeepalived.plugins.checks.http_get as h; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"


async def test_genhash_matches_keepalived_genhash(
    http_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from pykeepalived.core.lvs.genhash import main

    rc = await asyncio.to_thread(main, ["-s", "127.0.0.1", "-p", str(http_port), "-u", "/"])
    ours = capsys.readouterr().out.strip()
    assert rc == 0 and ours == hashlib.md5(BODY).hexdigest()
    # keepalived's genhash is the oracle; `make test` installs keepalived (APT_PACKAGES),
    # so a missing one is a broken setup: fail rather than skip the comparison.
    assert shutil.which("genhash"), "no genhash on PATH: install keepalived (make setup)"
    proc = await asyncio.create_subprocess_exec(
        "genhash",
        "-s",
        "127.0.0.1",
        "-p",
        str(http_port),
        "-u",
        "/",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert out.decode().split()[-1] == ours
    rc = await asyncio.to_thread(main, ["-s", "127.0.0.1", "-p", "1", "-u", "/"])
    assert rc == 1 and capsys.readouterr().err


async def _raw_server(answer: bytes, seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """A server that records the request and writes ``answer`` as it is."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_request_is_keepalived_s() -> None:
    seen: list[bytes] = []
    srv, port = await _raw_server(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", seen)
    try:
        checker = one_checker(
            "HTTP_GET {\n connect_timeout 10\n url {\n path /x?a=1\n }\n}", port=port
        )
        assert (await attempt(checker))[0]
        assert seen[-1] == (
            b"GET /x?a=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"
            b"Host: 127.0.0.1:" + str(port).encode() + b"\r\n\r\n"
        )
        # keepalived 2.2.7's template: Connection: close comes before Host
        for proto, line in (("1.1", b"GET / HTTP/1.1\r\n"), ("1.0C", b"GET / HTTP/1.0\r\n")):
            ok, _ = await attempt(http(port, "path /", f"http_protocol {proto}"))
            assert ok
            assert seen[-1] == (
                line + b"User-Agent: KeepAliveClient\r\nConnection: close\r\n"
                b"Host: www.example.test\r\n\r\n"
            )
    finally:
        srv.close()


async def test_chunked_answer_is_hashed_with_its_framing() -> None:
    """keepalived 2.2.7 does not decode chunked bodies: its digest (and its
    genhash's) covers the chunk-size lines too; ours must accept the same."""
    body = b"<html>hello keepalived</html>\n"
    framed = b"6\r\n" + body[:6] + b"\r\n" + hex(len(body) - 6)[2:].encode() + b"\r\n"
    framed += body[6:] + b"\r\n0\r\n\r\n"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    srv, port = await _raw_server(chunked, [])
    try:
        good = hashlib.md5(framed).hexdigest()
        ok, msg = await attempt(http(port, f"path /\ndigest {good}", "http_protocol 1.1"))
        assert ok, msg
        decoded = hashlib.md5(body).hexdigest()
        ok, msg = await attempt(http(port, f"path /\ndigest {decoded}", "http_protocol 1.1"))
        assert not ok and msg == "MD5 digest error to"
    finally:
        srv.close()


async def test_garbage_answer_fails_the_check() -> None:
    # keepalived reads no status code in it (0), which no status_code accepts
    srv, port = await _raw_server(b"SSH-2.0-OpenSSH\r\n\r\n", [])
    try:
        ok, msg = await attempt(http(port, "path /"))
        assert not ok and msg == "HTTP status code error to"
    finally:
        srv.close()
    # no header at all before the close: keepalived's "no data"
    srv, port = await _raw_server(b"garbage", [])
    try:
        ok, msg = await attempt(http(port, "path /"))
        assert not ok and msg == "Read, no data received from"
    finally:
        srv.close()


def _read(*parts: bytes, keep: int = 0) -> HttpAnswer:
    answer = HttpAnswer(keep)
    for part in parts:
        answer.feed(part)
    return answer.finish()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_answer_is_read_as_keepalived_reads_it() -> None:
    # Content-Length caps the digest; the bytes past it are counted, not hashed
    a = _read(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n", b"\r\nabc", b"de and more")
    assert (a.status, a.content_length, a.rx_bytes, a.digest) == (404, 5, 14, _md5(b"abcde"))
    # no length: the body is what came before the server closed; empty is fine
    assert _read(b"HTTP/1.0 200 OK\r\n\r\nall of it").digest == _md5(b"all of it")
    assert _read(b"HTTP/1.0 200 OK\r\n\r\n").digest == _md5(b"")
    # keepalived matches "Content-Length:" case-sensitively
    a = _read(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")
    assert a.content_length is None and a.digest == _md5(b"okEXTRA")
    # chunked bodies are not decoded; split anywhere, same digest
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
    for cut in range(1, len(raw)):
        a = _read(raw[:cut], raw[cut:], keep=4)
        assert a.digest == _md5(b"3;x=y\r\nabc\r\n0\r\n\r\n") and a.body == b"3;x="
    # the header (its blank line included) must end within keepalived's 4095 bytes
    _read(b"HTTP/1.0 200 OK\r\nX: " + b"x" * (MAX_HEAD - 24) + b"\r\n\r\n")
    with pytest.raises(HttpResponseError, match="no data"):
        _read(b"HTTP/1.0 200 OK\r\nX: " + b"x" * (MAX_HEAD - 23) + b"\r\n\r\n")
    with pytest.raises(HttpResponseError, match="no data"):
        _read(b"HTTP/1.0 200 OK\r\n")


def test_status_code_and_content_length_as_keepalived_extracts_them() -> None:
    assert status_code(b"HTTP/1.1 200 OK\r\n\r\n") == 200
    assert status_code(b"HTTP/1.0 503 \r\n\r\n") == 503
    for no_code in (b"HTTP/1.1 200\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n"):
        assert status_code(no_code) == 0, no_code
    assert status_code(b"SSH-2.0-OpenSSH\r\n\r\n") == 0
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n") == 12
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-Length:7\r\n\r\n") == 7
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-Length:\r\n\r\n") == 0
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-Length: 7 \r\n\r\n") is None
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-Length: x\r\n\r\n") is None
    assert content_length(b"HTTP/1.0 200 OK\r\nContent-length: 7\r\n\r\n") is None


async def test_content_length_mismatch_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    # keepalived logs it the first time a url shows that difference, and still
    # judges what arrived (here: the 5 bytes' digest passes)
    srv, port = await _raw_server(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhello", [])
    caplog.set_level(logging.INFO, logger="pykeepalived.lvs.http_get")
    try:
        checker = one_checker(
            f"HTTP_GET {{\n connect_timeout 10\n url {{\n path /x\n digest {hashlib.md5(b'hello').hexdigest()}\n }}\n}}",
            port=port,
        )
        for _ in range(2):
            result = await run_attempt(checker, 3)
            assert result.ok, result.message
        await checker.close()
    finally:
        srv.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"http_check for RS [127.0.0.1]:tcp:{port} VS [192.0.2.100]:tcp:80 url /x:"
        " content_length (10) does not match received bytes (5)"
    ]
