"""HTTP_GET and SSL_GET: fetch URLs from a real server and judge the answers.

Each ``url { ... }`` is fetched from the real server's address (the Host
header is the url's, the checker's, the real server's or the virtual
server's ``virtualhost``, as keepalived chooses); the answer must have a
status code in ``status_code`` (default 200-299), an MD5 of its body equal
to ``digest`` (see ``pykeepalived genhash``) and, with ``regex``, a body
that matches (or with ``regex_no_match`` does not).  One attempt checks
every url in turn.  SSL_GET uses the top-level ``SSL { ca certificate key
password }`` block; without ``ca`` the server's certificate is not verified,
as keepalived does.

The client is keepalived's own minimal one, not a general HTTP library: a
new connection per url (``GET path HTTP/1.0``, ``User-Agent:
KeepAliveClient``, ``Host``; ``Connection: close`` for 1.0C and 1.1), the
answer read until the server closes, Content-Length is reached or the last
chunk arrives, then the connection closed.  Plain HTTP runs on the
non-blocking socket itself (no transport, no streams): a check of 10,000
real servers every few seconds then fits in one event loop.  SSL_GET
wraps the same exchange in asyncio's TLS streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pykeepalived.api import (
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    Config,
    Context,
    Grammar,
    Invalid,
    Kw,
    Node,
    checker_kw,
    flag,
    hookimpl,
    integer,
    make_socket,
    parse_int,
    setting,
    sock_connect,
    string,
    sub,
    words,
)

HTTP_PROTOCOLS = ("1.0", "1.0C", "1.1")
#: Bytes of body read at most (digest and regex see this much).
MAX_BODY = 1 << 20
#: Bytes of status line and headers read at most.
MAX_HEAD = 1 << 16
RECV_SIZE = 1 << 16


@dataclass
class Url:
    path: str = "/"
    digest: str | None = None
    status_code: list[tuple[int, int]] = field(default_factory=list)
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    regex_options: list[str] = field(default_factory=list)
    regex_min_offset: int | None = None
    regex_max_offset: int | None = None
    regex_stack: list[str] = field(default_factory=list)

    def status_ok(self, code: int) -> bool:
        if not self.status_code:
            return 200 <= code <= 299
        return any(lo <= code <= hi for lo, hi in self.status_code)


@dataclass
class HttpOptions(CheckOptions):
    url: list[Url] = field(default_factory=list)
    http_protocol: str = "1.0"
    virtualhost: str | None = None
    fast_recovery: bool = False
    enable_sni: bool = False
    sni_name: str | None = None

    def validate(self) -> None:
        if not self.url:
            raise Invalid("needs at least one url { path ... }")


@dataclass
class SslConf:
    password: str | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None

    def __repr__(self) -> str:  # never show the key's password
        return f"SslConf(ca={self.ca!r}, certificate={self.certificate!r}, key={self.key!r})"


def _status_codes(node: Node, ctx: Context) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for word in node.args:
        lo_s, _, hi_s = word.partition("-")
        lo = parse_int(lo_s, 100, 599)
        hi = parse_int(hi_s, 100, 599) if hi_s else lo
        if hi < lo:
            raise Invalid(f"Invalid HTTP_GET status code '{word}'")
        out.append((lo, hi))
    return out


def _digest(node: Node, ctx: Context) -> str:
    text = node.args[0].lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise Invalid(f"'{node.args[0]}' is not an MD5 digest (32 hex digits)")
    return text


def _regex(node: Node, ctx: Context) -> str:
    try:
        re.compile(node.args[0])
    except re.error as exc:
        raise Invalid(f"Invalid regex: '{node.args[0]}' at offset {exc.pos}: {exc.msg}") from None
    return node.args[0]


def _http_protocol(node: Node, ctx: Context) -> str:
    word = node.args[0].upper()
    if word not in HTTP_PROTOCOLS:
        raise Invalid(f"'{node.args[0]}' is not one of {', '.join(HTTP_PROTOCOLS)}")
    return word


def _url_spec() -> BlockSpec:
    spec = BlockSpec("url", model=Url)
    spec.add(Kw("path", string, 1, 1))
    spec.add(Kw("digest", _digest, 1, 1))
    spec.add(Kw("status_code", _status_codes, 1, None))
    spec.add(Kw("virtualhost", string, 1, 1))
    spec.add(Kw("regex", _regex, 1, 1))
    spec.add(Kw("regex_no_match", flag, 0, 1))
    spec.add(Kw("regex_options", words, 1, None, unsupported="Python re is used, not PCRE2"))
    spec.add(Kw("regex_min_offset", integer(0, 2**31), 1, 1))
    spec.add(Kw("regex_max_offset", integer(0, 2**31), 1, 1))
    spec.add(Kw("regex_stack", words, 2, 2, unsupported="Python re is used, not PCRE2"))
    return spec


def _http_keywords(spec: BlockSpec) -> None:
    url = _url_spec()
    spec.add(Kw("url", sub(url), block=url, needs_block=True, multiple=True))
    spec.add(Kw("http_protocol", _http_protocol, 1, 1))
    spec.add(Kw("virtualhost", string, 1, 1))
    spec.add(Kw("fast_recovery", flag, 0, 1, unsupported="every url is checked each round"))
    spec.add(Kw("enable_sni", flag, 0, 1))
    spec.add(Kw("sni_name", string, 1, 1))


def _ssl_spec() -> BlockSpec:
    spec = BlockSpec("SSL", model=SslConf)
    spec.add(Kw("password", string, 1, 1))
    spec.add(Kw("ca", string, 1, 1))
    spec.add(Kw("certificate", string, 1, 1, aliases=("cert",)))
    spec.add(Kw("key", string, 1, 1))
    return spec


# -- the check ---------------------------------------------------------------------------------


def ssl_context(conf: SslConf | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if conf is not None and conf.ca:
        ctx.load_verify_locations(conf.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if conf is not None and conf.certificate:
        ctx.load_cert_chain(conf.certificate, conf.key, conf.password)
    return ctx


@dataclass(frozen=True)
class _UrlVerdict:
    ok: bool
    message: str
    url: Url


class HttpResponseError(ConnectionError):
    """The server's answer is not an HTTP response (an OSError: a failed check)."""


class ResponseReader:
    """Incremental reader of one HTTP/1.x response (pure: bytes in, verdict out).

    ``feed`` bytes as they arrive; ``complete`` turns true once the body is
    whole (Content-Length reached, the last chunk seen, or ``limit`` bytes
    of body); otherwise the server's close ends it.  ``result()`` gives the
    status code and the body (chunked transfer decoded; content encodings
    left as they are).
    """

    __slots__ = ("body_start", "buf", "chunked", "complete", "length", "limit", "status")

    def __init__(self, limit: int = MAX_BODY) -> None:
        self.buf = bytearray()
        self.status: int | None = None
        self.body_start = 0
        self.length: int | None = None
        self.chunked = False
        self.complete = False
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self.buf += data
        if self.status is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise HttpResponseError("HTTP header too long from")
                return
            self._head(bytes(self.buf[:end]))
            self.body_start = end + 4
        size = len(self.buf) - self.body_start
        # chunked: the limit counts the chunk framing too, give it room
        enough = self.limit + (MAX_HEAD if self.chunked else 0)
        if (self.length is not None and size >= self.length) or size >= enough:
            self.complete = True
        elif self.chunked and self.buf.endswith(b"\r\n\r\n"):
            self.complete = dechunk(bytes(self.buf[self.body_start :]))[1]

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HttpResponseError("Invalid HTTP response from")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"content-length" and value.strip().isdigit():
                self.length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
        if self.chunked:
            self.length = None  # RFC 9112 6.3: chunked wins over Content-Length

    def result(self) -> tuple[int, bytes]:
        if self.status is None:
            raise HttpResponseError("No HTTP header received from")
        body = bytes(self.buf[self.body_start :])
        if self.chunked:
            body = dechunk(body)[0]
        elif self.length is not None:
            body = body[: self.length]
        return self.status, body[: self.limit]


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body: (the data, whether the last chunk was seen)."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpResponseError("Invalid HTTP chunk from") from None
        if size == 0:
            return bytes(out), True
        start = eol + 2
        out += data[start : start + size]
        if start + size + 2 > len(data):
            return bytes(out), False
        pos = start + size + 2


class HttpGet(BaseCheck):
    keyword: ClassVar[str] = "HTTP_GET"
    log_name: ClassVar[str] = "HTTP_CHECK"
    default_delay_before_retry: ClassVar[float | None] = 3.0
    tls: ClassVar[bool] = False
    #: The TLS context without an ``SSL`` block, shared by every SSL_GET.
    _default_ssl: ClassVar[ssl.SSLContext | None] = None

    options: HttpOptions

    def __init__(self, conf: Any, target: Any) -> None:
        super().__init__(conf, target)
        self.options = conf.options
        self._ssl: ssl.SSLContext | None = None
        #: The request of each url, built once.
        self._requests: dict[int, bytes] = {}
        self._successes: dict[tuple[str, int], CheckResult] = {}

    def configure(self, config: Config) -> None:
        if self.tls:
            conf = config.ext.get("SSL")
            if isinstance(conf, SslConf):
                self._ssl = ssl_context(conf)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl
        cls = type(self)
        if cls._default_ssl is None:
            cls._default_ssl = ssl_context(None)
        return cls._default_ssl

    def request(self, url: Url) -> bytes:
        """keepalived's GET request for ``url``."""
        req = self._requests.get(id(url))
        if req is None:
            vhost = url.virtualhost or self.options.virtualhost
            if not vhost:
                # keepalived: the address, with the port unless it is the default
                t = self.target
                vhost = f"[{t.address}]" if ":" in t.address else t.address
                if t.port != (443 if self.tls else 80):
                    vhost += f":{t.port}"
            proto = self.options.http_protocol
            lines = [
                f"GET {url.path} HTTP/{proto[:3]}",
                "User-Agent: KeepAliveClient",
                f"Host: {vhost}",
            ]
            if proto != "1.0":
                lines.append("Connection: close")
            req = self._requests[id(url)] = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return req

    async def close(self) -> None:
        self._requests.clear()

    async def check(self) -> CheckResult:
        verdict = None
        for url in self.options.url:
            verdict = await self.fetch(url)
            if not verdict.ok:
                return CheckResult(False, verdict.message)
        if verdict is None:
            return CheckResult(True)
        # One result per (what passed, url), built once: the success path
        # formats nothing (its line is only logged when the checker goes up).
        key = (verdict.message, id(verdict.url))
        result = self._successes.get(key)
        if result is None:
            text = f"{verdict.message} success to {self.where} url({verdict.url.path})."
            result = self._successes[key] = CheckResult(True, text)
        return result

    async def fetch(self, url: Url) -> _UrlVerdict:
        """One GET of ``url`` on a new connection, within connect_timeout."""
        target = self.target
        if target.port is None:
            raise OSError("no port to connect to (set connect_port)")
        request = self.request(url)
        reader = ResponseReader()
        timeout = self.timeout
        sock = make_socket(target, socket.SOCK_STREAM, fwmark=setting(self, "fwmark", None))
        try:
            try:
                async with asyncio.timeout(timeout):
                    await sock_connect(sock, (target.address, target.port), timeout)
                    if self.tls:
                        await self._exchange_tls(sock, request, reader, url)
                    else:
                        await _exchange(sock, request, reader)
            except TimeoutError:
                raise TimeoutError(f"timeout after {timeout:g}s") from None
        finally:
            sock.close()
        status, body = reader.result()
        return judge(url, status, body)

    async def _exchange_tls(
        self, sock: socket.socket, request: bytes, reader: ResponseReader, url: Url
    ) -> None:
        server_hostname = ""  # no SNI unless asked, as keepalived
        if self.options.enable_sni or self.options.sni_name:
            vhost = url.virtualhost or self.options.virtualhost
            server_hostname = self.options.sni_name or vhost or self.target.address
        stream, writer = await asyncio.open_connection(
            sock=sock, ssl=self._context(), server_hostname=server_hostname
        )
        try:
            writer.write(request)
            while not reader.complete:
                data = await stream.read(RECV_SIZE)
                if not data:
                    break
                reader.feed(data)
        finally:
            writer.close()

    def success_lines(self, result: CheckResult) -> list[str]:
        lines = [result.message] if result.message else []
        lines.append(f"Remote Web server {self.where} succeed on service.")
        return lines

    def attempt_failed_line(self, result: CheckResult) -> str:
        return f"{result.message} server {self.where}."


async def _exchange(sock: socket.socket, request: bytes, reader: ResponseReader) -> None:
    """Send ``request`` on the connected ``sock`` and read the answer into ``reader``."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request)
    while not reader.complete:
        data = await loop.sock_recv(sock, RECV_SIZE)
        if not data:
            break
        reader.feed(data)


def judge(url: Url, status: int, body: bytes) -> _UrlVerdict:
    """keepalived's http_handle_response: status, then digest, then regex."""
    if not url.status_ok(status):
        return _UrlVerdict(False, "HTTP status code error to", url)
    msg = "HTTP status code"
    if url.digest is not None:
        if hashlib.md5(body, usedforsecurity=False).hexdigest() != url.digest:
            return _UrlVerdict(False, "MD5 digest error to", url)
        msg = "MD5 digest"
    if url.regex is not None:
        lo = url.regex_min_offset or 0
        hi = url.regex_max_offset
        text = body.decode("latin-1")
        match = re.compile(url.regex).search(text, lo)
        found = match is not None and (hi is None or match.start() < hi)
        if found == url.regex_no_match:
            return _UrlVerdict(False, "Regex match failed", url)
        msg = "Regex match"
    return _UrlVerdict(True, msg, url)


class SslGet(HttpGet):
    keyword: ClassVar[str] = "SSL_GET"
    tls: ClassVar[bool] = True


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("HTTP_GET", HttpOptions, _http_keywords))
    grammar.add("real_server", checker_kw("SSL_GET", HttpOptions, _http_keywords))
    spec = _ssl_spec()
    grammar.add("top", Kw("SSL", sub(spec), block=spec, needs_block=True))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"HTTP_GET": HttpGet, "SSL_GET": SslGet}
