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

aiohttp is imported when the first HTTP checker is built, not when the
plugin module is loaded.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pykeepalived import hookimpl
from pykeepalived.core.api import Checker, CheckResult
from pykeepalived.core.checking import BaseCheck, CheckOptions, checker_kw
from pykeepalived.core.config.grammar import Grammar
from pykeepalived.core.config.schema import (
    BlockSpec,
    Context,
    Invalid,
    Kw,
    flag,
    integer,
    parse_int,
    string,
    sub,
    words,
)
from pykeepalived.core.config.tree import Node

if TYPE_CHECKING:
    from pykeepalived.core.config.model import Config

HTTP_PROTOCOLS = ("1.0", "1.0C", "1.1")
#: Bytes of body read at most (digest and regex see this much).
MAX_BODY = 1 << 20


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


class _Sessions:
    """aiohttp sessions shared by every HTTP checker without bind options,
    one per HTTP version (aiohttp sets the version per session).

    keepalived opens a new connection per check; ``force_close`` does the
    same here, while the sessions and their connectors are shared.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}
        self.users: dict[str, int] = {}

    def acquire(self, protocol: str) -> Any:
        session = self.sessions.get(protocol)
        if session is None or session.closed:
            session = self.sessions[protocol] = _new_session(protocol)
        self.users[protocol] = self.users.get(protocol, 0) + 1
        return session

    async def release(self, protocol: str) -> None:
        self.users[protocol] = self.users.get(protocol, 1) - 1
        session = self.sessions.get(protocol)
        if self.users[protocol] <= 0 and session is not None:
            del self.sessions[protocol]
            await session.close()


def _new_session(protocol: str, local_addr: tuple[str, int] | None = None) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=False, local_addr=local_addr)
    version = aiohttp.HttpVersion11 if protocol == "1.1" else aiohttp.HttpVersion10
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, version=version)


_SHARED = _Sessions()


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


class HttpGet(BaseCheck):
    keyword: ClassVar[str] = "HTTP_GET"
    log_name: ClassVar[str] = "HTTP_CHECK"
    default_delay_before_retry: ClassVar[float | None] = 3.0
    tls: ClassVar[bool] = False

    options: HttpOptions

    def __init__(self, conf: Any, target: Any) -> None:
        super().__init__(conf, target)
        self.options = conf.options
        self._ssl: ssl.SSLContext | None = None
        self._session: Any = None
        self._private = False

    def configure(self, config: Config) -> None:
        if self.tls:
            conf = config.ext.get("SSL")
            self._ssl = ssl_context(conf if isinstance(conf, SslConf) else None)

    def _get_session(self) -> Any:
        if self._session is not None and not self._session.closed:
            return self._session
        t = self.target
        if t.bind_address or t.bind_port:
            local = (t.bind_address or "0.0.0.0", t.bind_port or 0)
            self._session = _new_session(self.options.http_protocol, local)
            self._private = True
        else:
            self._session = _SHARED.acquire(self.options.http_protocol)
        return self._session

    async def close(self) -> None:
        if self._session is None:
            return
        if self._private:
            await self._session.close()
        else:
            await _SHARED.release(self.options.http_protocol)
        self._session = None

    def _base(self) -> str:
        host = self.target.address
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.target.port}"

    async def check(self) -> CheckResult:
        message = ""
        for url in self.options.url:
            verdict = await self.fetch(url)
            if not verdict.ok:
                return CheckResult(False, verdict.message)
            message = f"{verdict.message} success to {self.where} url({url.path})."
        return CheckResult(True, message)

    async def fetch(self, url: Url) -> _UrlVerdict:
        import aiohttp

        session = self._get_session()
        vhost = url.virtualhost or self.options.virtualhost
        headers = {"User-Agent": "KeepAliveClient", "Accept": "*/*"}
        if vhost:
            headers["Host"] = vhost
        if self.options.http_protocol != "1.0":
            headers["Connection"] = "close"
        kwargs: dict[str, Any] = {}
        if self.tls:
            kwargs["ssl"] = self._ssl or ssl_context(None)
            if self.options.enable_sni or self.options.sni_name:
                kwargs["server_hostname"] = self.options.sni_name or vhost or self.target.address
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with session.get(
            self._base() + url.path,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            **kwargs,
        ) as resp:
            body = await resp.content.read(MAX_BODY)
            status = resp.status
        return judge(url, status, body)

    def success_lines(self, result: CheckResult) -> list[str]:
        lines = [result.message] if result.message else []
        lines.append(f"Remote Web server {self.where} succeed on service.")
        return lines

    def attempt_failed_line(self, result: CheckResult) -> str:
        return f"{result.message} server {self.where}."


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
