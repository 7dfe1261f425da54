"""``pykeepalived genhash``: the MD5 digest of a URL's body, for HTTP_GET's ``digest``.

Same options as keepalived's genhash(1): ``-s SERVER -p PORT -u URL``
with ``-S`` (SSL), ``-I`` (SNI from the virtualhost), ``-V VHOST``,
``-P 1.0|1.0c|1.1``, ``-m FWMARK``, ``-t TIMEOUT`` and ``-v`` (verbose:
the header too, and the digest labelled).  Prints the digest as 32 hex
digits.  Exit status 0 on success, 1 on failure (the reason goes to stderr).

keepalived 2.2.7's genhash is its HTTP_GET checker run on a dummy real
server, so the two cannot disagree; ours shares the checker's client
(:mod:`pykeepalived.core.lvs.http_client`) for the same reason: the same
request bytes (no Accept header; Host is the ``-V`` virtualhost, else
``address:port``), the same reading and the same digest (a chunked body is
hashed with its chunk framing, as keepalived does).  Differences from
keepalived's genhash, all outside the digest: failures exit 1 with the
reason on stderr (keepalived prints most of them on stdout and exits 0),
``-p`` defaults to 80 (443 with ``-S``) where keepalived requires it, ``-t``
defaults to 5 seconds where keepalived waits forever, and ``-v`` prints
the header as text rather than keepalived's hex dumps.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import ssl
import sys
from collections.abc import Sequence

from pykeepalived.core.lvs.checking import make_socket
from pykeepalived.core.lvs.http_client import (
    HttpAnswer,
    HttpResponseError,
    http_get,
    http_host,
    http_request,
    ssl_client_context,
)
from pykeepalived.core.plugin.base import CheckTarget


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykeepalived genhash", description="MD5 digest of a web page for HTTP_GET"
    )
    p.add_argument("-s", "--server", required=True, help="remote server address")
    p.add_argument(
        "-p", "--port", type=_port, default=None, help="remote server port (80, or 443 with -S)"
    )
    p.add_argument("-u", "--url", required=True, help="URL path, e.g. /index.html")
    p.add_argument("-S", "--use-ssl", action="store_true", help="use SSL")
    p.add_argument("-I", "--use-sni", action="store_true", help="send SNI (the virtualhost)")
    p.add_argument("-V", "--use-virtualhost", metavar="VHOST", help="Host header")
    p.add_argument("-v", "--verbose", action="store_true", help="show the headers too")
    p.add_argument("-m", "--fwmark", type=_fwmark, default=None, help="mark outgoing packets")
    p.add_argument("-P", "--protocol", default="1.0", choices=("1.0", "1.0c", "1.0C", "1.1"))
    p.add_argument("-t", "--timeout", type=_timeout, default=5.0, help="seconds")
    return p


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        port = 0
    if not 0 < port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port number '{text}'")
    return port


def _fwmark(text: str) -> int:
    try:
        mark = int(text, 10)
    except ValueError:
        mark = -1
    if not 0 <= mark < 2**32:
        raise argparse.ArgumentTypeError(f"invalid fwmark '{text}'")
    return mark


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86400 * 365:
        raise argparse.ArgumentTypeError(f"invalid timeout '{text}'")
    return seconds


async def fetch(args: argparse.Namespace) -> HttpAnswer:
    """GET the URL as HTTP_GET would (SSL_GET with ``-S``)."""
    address = str(ipaddress.ip_address(args.server))
    port = args.port or (443 if args.use_ssl else 80)
    request = http_request(args.url, args.protocol, http_host(args.use_virtualhost, address, port))
    tls: ssl.SSLContext | None = None
    sni = None
    if args.use_ssl:
        tls = ssl_client_context()
        # keepalived: -I sends the -V virtualhost, nothing without one
        sni = args.use_virtualhost if args.use_sni else None
    sock = make_socket(CheckTarget(address, port), socket.SOCK_STREAM, fwmark=args.fwmark)
    return await http_get(
        sock, (address, port), request, args.timeout, tls=tls, server_hostname=sni
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        ipaddress.ip_address(args.server)
    except ValueError:
        print(f"server should be an IP, not {args.server}", file=sys.stderr)
        return 1
    try:
        answer = asyncio.run(fetch(args))
    except HttpResponseError as exc:
        # keepalived's genhash words the checker's "Read, no data received from"
        text = str(exc)
        if text.startswith("Read, no data"):
            text = "no data received from remote webserver"
        print(text, file=sys.stderr)
        return 1
    except (OSError, TimeoutError, ValueError) as exc:
        print(str(exc) or type(exc).__name__, file=sys.stderr)
        return 1
    if args.verbose:
        assert answer.header is not None
        print(answer.header.decode("latin-1").rstrip("\r\n").replace("\r\n", "\n"))
        print(f"MD5SUM = {answer.digest}")
    else:
        print(answer.digest)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
