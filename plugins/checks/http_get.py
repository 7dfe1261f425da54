"""HTTP_GET and SSL_GET: fetch URLs from a real server and judge the answers.

Each ``url { ... }`` is fetched from the real server's address (the Host
header is the url's, the checker's, the real server's or the virtual
server's ``virtualhost``, as keepalived chooses, else ``address:port``); the
answer must have a status code in ``status_code`` (default 200-299), an MD5
of its body equal to ``digest`` (what ``pykeepalived genhash`` prints) and,
with ``regex``, a body that matches (or with ``regex_no_match`` does not).
One attempt checks every url in turn.  SSL_GET uses the top-level ``SSL {
ca certificate key password }`` block; the server's certificate is never
verified, as keepalived 2.2.7 does not verify it either.

The client is keepalived's own minimal one, shared with ``pykeepalived
genhash`` (``http_get`` and friends of the API): a new connection per url,
keepalived's request bytes, the answer read until the server closes, the
digest over the body as received (a chunked body with its chunk framing).
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import ssl  # loaded with the first SSL_GET context (api.ssl_client_context)

from pykeepalived.api import (
    HTTP_PROTOCOLS,
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    Config,
    Context,
    Grammar,
    HttpAnswer,
    Invalid,
    Kw,
    Node,
    checker_kw,
    flag,
    hookimpl,
    http_get,
    http_host,
    http_request,
    integer,
    make_socket,
    parse_int,
    setting,
    ssl_client_context,
    string,
    sub,
    words,
)

log = logging.getLogger("pykeepalived.lvs.http_get")

#: Bytes of body a regex sees at most (the digest sees the whole body).
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


#: keepalived 2.4 SSL_GET ``tls_compliant``: send close_notify on shutdown
#: (SSL_set_quiet_shutdown off); Python's ssl module decides ours.
_TLS_COMPLIANT = "the TLS shutdown is left to Python's ssl module"


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
    spec.add(Kw("tls_compliant", flag, 0, 1, unsupported=_TLS_COMPLIANT))  # keepalived 2.4
    return spec


def _http_keywords(spec: BlockSpec) -> None:
    url = _url_spec()
    spec.add(Kw("url", sub(url), block=url, needs_block=True, multiple=True))
    spec.add(Kw("http_protocol", _http_protocol, 1, 1))
    spec.add(Kw("virtualhost", string, 1, 1))
    spec.add(Kw("fast_recovery", flag, 0, 1, unsupported="every url is checked each round"))
    spec.add(Kw("enable_sni", flag, 0, 1))
    spec.add(Kw("sni_name", string, 1, 1))
    spec.add(Kw("tls_compliant", flag, 0, 1, unsupported=_TLS_COMPLIANT))  # keepalived 2.4


def _ssl_spec() -> BlockSpec:
    spec = BlockSpec("SSL", model=SslConf)
    spec.add(Kw("password", string, 1, 1))
    spec.add(Kw("ca", string, 1, 1))
    spec.add(Kw("certificate", string, 1, 1, aliases=("cert",)))
    spec.add(Kw("key", string, 1, 1))
    return spec


# -- the check ---------------------------------------------------------------------------------


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
        #: Content-Length minus the bytes received, last seen per url.
        self._len_mismatch: dict[int, int] = {}

    def configure(self, config: Config) -> None:
        if self.tls:
            conf = config.ext.get("SSL")
            if isinstance(conf, SslConf):
                self._ssl = ssl_client_context(conf.ca, conf.certificate, conf.key, conf.password)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl
        cls = type(self)
        if cls._default_ssl is None:
            cls._default_ssl = ssl_client_context()
        return cls._default_ssl

    def request(self, url: Url) -> bytes:
        """keepalived's GET request for ``url`` (built once)."""
        req = self._requests.get(id(url))
        if req is None:
            # url's virtualhost, else the checker's, the real server's or the
            # virtual server's (resolved into options.virtualhost by the core)
            vhost = url.virtualhost or self.options.virtualhost
            host = http_host(vhost, self.target.address, self.target.port or 0)
            req = http_request(url.path, self.options.http_protocol, host)
            self._requests[id(url)] = req
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
        sock = make_socket(target, socket.SOCK_STREAM, fwmark=setting(self, "fwmark", None))
        tls = sni = None
        if self.tls:
            tls = self._context()
            if self.options.enable_sni or self.options.sni_name:
                # keepalived: SNI is the virtualhost; none without one
                sni = self.options.sni_name or url.virtualhost or self.options.virtualhost
        answer = await http_get(
            sock,
            (target.address, target.port),
            self.request(url),
            self.timeout,
            tls=tls,
            server_hostname=sni,
            keep=MAX_BODY if url.regex is not None else 0,
        )
        self._length_mismatch(url, answer)
        return judge(url, answer)

    def _length_mismatch(self, url: Url, answer: HttpAnswer) -> None:
        """keepalived logs a Content-Length that the body did not match, once per difference."""
        length = answer.content_length
        diff = 0 if length is None else length - answer.rx_bytes
        if diff and self._len_mismatch.get(id(url)) != diff:
            log.info(
                "http_check for RS %s VS %s url %s%s: content_length (%d) does not match"
                " received bytes (%d)",
                self.where,
                self.target.virtual_server,
                url.virtualhost or "",
                url.path,
                length,
                answer.rx_bytes,
            )
        self._len_mismatch[id(url)] = diff

    def success_lines(self, result: CheckResult) -> list[str]:
        lines = [result.message] if result.message else []
        lines.append(f"Remote Web server {self.where} succeed on service.")
        return lines

    def attempt_failed_line(self, result: CheckResult) -> str:
        return f"{result.message} server {self.where}."


def judge(url: Url, answer: HttpAnswer) -> _UrlVerdict:
    """keepalived's http_handle_response: status, then digest, then regex."""
    if not url.status_ok(answer.status):
        return _UrlVerdict(False, "HTTP status code error to", url)
    msg = "HTTP status code"
    if url.digest is not None:
        if answer.digest != url.digest:
            return _UrlVerdict(False, "MD5 digest error to", url)
        msg = "MD5 digest"
    if url.regex is not None:
        lo = url.regex_min_offset or 0
        hi = url.regex_max_offset
        text = answer.body.decode("latin-1")
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
