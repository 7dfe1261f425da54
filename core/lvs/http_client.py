"""keepalived's HTTP/1.x client: one implementation for HTTP_GET, SSL_GET and genhash.

keepalived 2.2.7 has a single client too: its genhash is the HTTP_GET checker
(check_genhash.c runs check_http.c's threads on a dummy checker), so the
digest genhash prints is by construction the one the checker compares.  We
keep that property by having ``pykeepalived genhash`` and the HTTP_GET /
SSL_GET plugin share this module.

What keepalived does, and therefore what this module does:

* The request (check_http.c's request template): ``GET <path> HTTP/1.0`` (1.1
  for ``http_protocol 1.1``), ``User-Agent: KeepAliveClient``, then
  ``Connection: close`` for 1.0C and 1.1 (before Host), then ``Host``.  No
  Accept header.  Host is the virtualhost if there is one, as it is (no port);
  otherwise the address (``[...]`` for IPv6) always followed by ``:port``, even
  80 or 443.
* The answer is read until the server closes the connection (there is no
  stop at Content-Length or at the last chunk).  The header must end within
  the first 4095 bytes (keepalived's 4096-byte buffer), or there is "no data".
* The status code is the three characters after the first space of the
  status line, followed by a space (``HTTP/1.1 200`` without a reason is
  status 0, which no ``status_code`` accepts).
* ``Content-Length:`` is matched case-sensitively; when present and valid the
  digest covers at most that many body bytes.  Transfer encodings are not
  decoded: the digest of a chunked answer includes the chunk framing (so does
  keepalived's genhash, which agrees with its checker).
* The digest is the MD5 of the body bytes as received, however long.
* SSL: a TLS client that never verifies the server's certificate (keepalived
  loads ``ca`` but never sets SSL_VERIFY_PEER nor checks the result), SNI only
  when asked.

The parsing is pure (:class:`HttpAnswer`: bytes in, verdict out); the I/O
is :func:`http_get`, on the non-blocking socket itself for plain HTTP (no
transport, no streams: a check of 10,000 real servers every few seconds fits
in one event loop) and on asyncio's TLS streams for SSL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import TYPE_CHECKING

from pykeepalived.core.lvs.checking import sock_connect

if TYPE_CHECKING:
    import ssl  # loaded by the first TLS check: OpenSSL is 4 MB a daemon without TLS does not pay

#: keepalived's http_protocol values (1.0C: 1.0 with ``Connection: close``).
HTTP_PROTOCOLS = ("1.0", "1.0C", "1.1")
#: keepalived's MAX_BUFFER_LENGTH - 1: the header must end within this many bytes.
MAX_HEAD = 4095
#: Bytes of body kept for a regex at most (the digest sees the whole body).
MAX_BODY = 1 << 20
RECV_SIZE = 1 << 16

_STRTOUL_DIGITS = re.compile(rb"[\t\n\v\f\r ]*([+-]?)([0-9]+)")
_CONTENT_LENGTH = b"Content-Length:"
_ULONG_MAX = (1 << 64) - 1


class HttpResponseError(ConnectionError):
    """The exchange gave no usable HTTP answer (an OSError: a failed check).

    The message is keepalived's wording for the failure ("Read, no data
    received from"), completed by the caller with "server <where>.".
    """


def http_host(vhost: str | None, address: str, port: int) -> str:
    """keepalived's Host header: the virtualhost as it is, else ``address:port``.

    keepalived 2.2.7 adds ``:port`` whenever there is no virtualhost, even
    for 80 and 443, and brackets an IPv6 address (RFC 2732).
    """
    if vhost:
        return vhost
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return f"{address}:{port}"
    if addr.version == 6:
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def http_request(path: str, protocol: str, host: str) -> bytes:
    """keepalived's GET request for ``path`` (``protocol`` one of :data:`HTTP_PROTOCOLS`)."""
    proto = protocol.upper()
    if proto not in HTTP_PROTOCOLS:
        raise ValueError(f"invalid HTTP protocol version '{protocol}'")
    minor = 1 if proto == "1.1" else 0
    close = "Connection: close\r\n" if proto != "1.0" else ""
    text = (
        f"GET {path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n"
    )
    return text.encode("latin-1")


def status_code(head: bytes) -> int:
    """The status code as keepalived's extract_status_code reads it (0: none).

    The three characters after the first space of the status line, which
    must be followed by a space.
    """
    end = len(head)
    pos = 0
    while pos < end and head[pos] not in b" \r":
        pos += 1
    if pos >= end or head[pos] != ord(" "):
        return 0
    pos += 1
    if pos + 3 >= end or head[pos] == ord(" ") or head[pos + 3] != ord(" "):
        return 0
    m = _STRTOUL_DIGITS.fullmatch(head[pos : pos + 3])
    if m is None:
        return 0
    return -int(m[2]) if m[1] == b"-" else int(m[2])


def content_length(head: bytes) -> int | None:
    """``Content-Length`` as keepalived's extract_content_length reads it (None: unknown).

    The name is matched case-sensitively; the value is read as strtoul does
    and must end the line.  Searched in the header only (keepalived searches
    whatever the first read brought, which only differs when a body
    contains the name and the header does not).
    """
    at = head.find(_CONTENT_LENGTH)
    if at < 0:
        return None
    rest = head[at + len(_CONTENT_LENGTH) :]
    m = _STRTOUL_DIGITS.match(rest)
    if m is None:  # strtoul read nothing: end is right after the colon
        return 0 if rest[:1] in (b"", b"\r", b"\n") else None
    if rest[m.end() : m.end() + 1] not in (b"", b"\r", b"\n"):
        return None
    value = int(m[2])
    if m[1] == b"-" or value >= _ULONG_MAX:
        return None  # wraps to (nearly) SIZE_MAX in C: no limit either
    return value


class HttpAnswer:
    """One HTTP/1.x answer, read incrementally (pure: bytes in, verdict out).

    ``feed`` the bytes as they arrive until the server closes.  Once the
    header is whole, ``status`` and ``content_length`` are known; the body is
    hashed as it arrives (``digest``), counted (``rx_bytes``) and its first
    ``keep`` bytes kept (``body``, for a regex).
    """

    __slots__ = (
        "_buf",
        "_hashed",
        "_md5",
        "body",
        "content_length",
        "header",
        "keep",
        "rx_bytes",
        "status",
    )

    def __init__(self, keep: int = 0) -> None:
        import hashlib  # here: the first HTTP check loads it (libcrypto), not every daemon

        self._buf = bytearray()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hashed = 0
        self.keep = keep
        #: The status line and header fields with the blank line; None until whole.
        self.header: bytes | None = None
        self.status = 0
        self.content_length: int | None = None
        self.rx_bytes = 0
        self.body = b""

    @property
    def extracted(self) -> bool:
        """Whether the header was received (keepalived's ``req->extracted``)."""
        return self.header is not None

    @property
    def digest(self) -> str:
        """MD5 (hex) of the body, at most Content-Length bytes of it."""
        return self._md5.hexdigest()

    def feed(self, data: bytes) -> None:
        if self.header is not None:
            self._body(data)
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0:
            if len(self._buf) >= MAX_HEAD:
                # keepalived's buffer is full: its next read asks for 0 bytes,
                # gets 0 and takes that for the end of the answer.
                raise HttpResponseError("Read, no data received from")
            return
        head = bytes(self._buf[: end + 4])
        rest = bytes(self._buf[end + 4 :])
        self._buf = bytearray()
        self.header = head
        self.status = status_code(head)
        self.content_length = content_length(head)
        if rest:
            self._body(rest)

    def _body(self, data: bytes) -> None:
        self.rx_bytes += len(data)
        limit = self.content_length
        if limit is None:
            self._md5.update(data)
        elif self._hashed < limit:
            part = data[: limit - self._hashed]
            self._md5.update(part)
            self._hashed += len(part)
        if len(self.body) < self.keep:
            self.body += data[: self.keep - len(self.body)]

    def finish(self) -> HttpAnswer:
        """The server closed: the answer must have had a header."""
        if self.header is None:
            raise HttpResponseError("Read, no data received from")
        return self


def ssl_client_context(
    ca: str | None = None,
    certificate: str | None = None,
    key: str | None = None,
    password: str | None = None,
) -> ssl.SSLContext:
    """keepalived's SSL_GET context (the ``SSL { }`` block's files).

    keepalived 2.2.7 loads ``ca`` (a bad file is an error) but never asks
    OpenSSL to verify the peer, so a certificate that does not chain to it
    is accepted; the same configuration gives the same verdicts here.
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ca:
        ctx.load_verify_locations(ca)
    if certificate:
        ctx.load_cert_chain(certificate, key, password)
    return ctx


async def http_get(
    sock: socket.socket,
    address: tuple[str, int],
    request: bytes,
    timeout: float,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    keep: int = 0,
) -> HttpAnswer:
    """Connect the non-blocking ``sock`` to ``address``, send ``request``, read the answer.

    All of it within ``timeout`` seconds (TimeoutError), on ``tls`` when
    given (SNI ``server_hostname``; None sends none).  ``sock`` is closed on
    return.  Raises OSError (HttpResponseError when no header came).
    """
    reader = HttpAnswer(keep)
    try:
        try:
            async with asyncio.timeout(timeout):
                await sock_connect(sock, address, timeout)
                if tls is None:
                    await _exchange(sock, request, reader)
                else:
                    await _exchange_tls(sock, request, reader, tls, server_hostname)
        except TimeoutError:
            raise TimeoutError(f"timeout after {timeout:g}s") from None
    finally:
        sock.close()
    return reader.finish()


async def _exchange(sock: socket.socket, request: bytes, reader: HttpAnswer) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request)
    while data := await loop.sock_recv(sock, RECV_SIZE):
        reader.feed(data)


async def _exchange_tls(
    sock: socket.socket,
    request: bytes,
    reader: HttpAnswer,
    tls: ssl.SSLContext,
    server_hostname: str | None,
) -> None:
    import ssl  # loaded already: ``tls`` is an SSLContext

    try:
        stream, writer = await asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=server_hostname or ""
        )
    except (ssl.SSLError, ConnectionError):
        raise HttpResponseError("SSL handshake/communication error connecting to") from None
    try:
        writer.write(request)
        while True:
            try:
                data = await stream.read(RECV_SIZE)
            except (ssl.SSLError, ConnectionError):
                # keepalived's ssl_read_thread: any SSL error ends the answer;
                # without a header it is a failure, with one the answer counts.
                if not reader.extracted:
                    raise HttpResponseError("SSL read error from") from None
                return
            if not data:
                return
            reader.feed(data)
    finally:
        writer.close()
