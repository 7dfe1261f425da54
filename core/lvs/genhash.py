"""``pykeepalived genhash``: the MD5 digest of a URL's body, for HTTP_GET's ``digest``.

Same options as keepalived's genhash(1): ``-s SERVER -p PORT -u URL``
with ``-S`` (SSL), ``-I`` (SNI from the virtualhost), ``-V VHOST``,
``-P 1.0|1.0c|1.1``, ``-m FWMARK``, ``-t TIMEOUT`` and ``-v`` (verbose:
headers, and the digest labelled).  Prints the digest as 32 hex digits,
exactly what HTTP_GET compares with.  Exit status 0 on success, 1 on
failure (the reason goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import ssl
import sys
from collections.abc import Sequence

MAX_BODY = 1 << 24


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykeepalived genhash", description="MD5 digest of a web page for HTTP_GET"
    )
    p.add_argument("-s", "--server", required=True, help="remote server address")
    p.add_argument(
        "-p", "--port", type=int, default=None, help="remote server port (80, or 443 with -S)"
    )
    p.add_argument("-u", "--url", required=True, help="URL path, e.g. /index.html")
    p.add_argument("-S", "--use-ssl", action="store_true", help="use SSL")
    p.add_argument("-I", "--use-sni", action="store_true", help="send SNI (the virtualhost)")
    p.add_argument("-V", "--use-virtualhost", metavar="VHOST", help="Host header")
    p.add_argument("-v", "--verbose", action="store_true", help="show the headers too")
    p.add_argument("-m", "--fwmark", type=int, default=None, help="mark outgoing packets")
    p.add_argument("-P", "--protocol", default="1.0", choices=("1.0", "1.0c", "1.0C", "1.1"))
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds")
    return p


async def fetch(args: argparse.Namespace) -> tuple[int, dict[str, str], bytes]:
    import socket

    host = args.server
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    port = args.port or (443 if args.use_ssl else 80)
    headers = {
        "User-Agent": "KeepAliveClient",
        "Accept": "*/*",
        "Host": args.use_virtualhost or args.server,
    }
    if args.protocol != "1.0":
        headers["Connection"] = "close"
    request = f"GET {args.url} HTTP/{args.protocol[:3]}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    ctx: ssl.SSLContext | None = None
    if args.use_ssl:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    if args.fwmark:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, args.fwmark)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (args.server, port)), args.timeout)
    except BaseException:
        sock.close()
        raise
    sni = args.use_virtualhost if (args.use_sni and args.use_virtualhost) else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=sni if ctx else None),
        args.timeout,
    )
    try:
        writer.write((request + "\r\n").encode("latin-1"))
        raw = await asyncio.wait_for(reader.read(MAX_BODY), args.timeout)
        while chunk := await asyncio.wait_for(reader.read(MAX_BODY), args.timeout):
            raw += chunk
    finally:
        writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError("no HTTP header received from remote webserver")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    hdrs = {k.strip().lower(): v.strip() for k, v in hdrs.items()}
    if "content-length" in hdrs:
        body = body[: int(hdrs["content-length"])]
    return status, hdrs, body


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        status, headers, body = asyncio.run(fetch(args))
    except (OSError, TimeoutError, ValueError, ConnectionError, ssl.SSLError) as exc:
        msg = (
            "Connection timed out"
            if isinstance(exc, TimeoutError)
            else str(exc) or type(exc).__name__
        )
        print(msg, file=sys.stderr)
        return 1
    if not body:
        print("no data received from remote webserver", file=sys.stderr)
        return 1
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if args.verbose:
        print(f"HTTP status code: {status}")
        for k, v in headers.items():
            print(f"{k}: {v}")
        print(f"MD5SUM = {digest}")
    else:
        print(digest)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
