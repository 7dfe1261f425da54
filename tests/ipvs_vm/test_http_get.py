"""HTTP_GET as keepalived's checker does it: request bytes and verdicts.

keepalived's checker process only runs with IPVS, hence this VM test.  Raw
TCP servers on the real servers' addresses record every request and answer
a fixed page (or a chunked one); keepalived 2.2.7 checks them first, then
our checkers + manager + IPVS backend on the same configuration.  Each real
server must receive byte for byte the requests keepalived sent it (Host:
url > checker > real server > virtual server virtualhost, else
``address:port`` even on port 80; Connection: close for 1.0C and 1.1), and
the same real servers must be up in the table (a chunked page is accepted
with the digest of its framed body, which is what genhash prints).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from vmhelp import ipvsadm_rules, read_log, start_keepalived, stop_keepalived

from pykeepalived.core.config import load_text
from pykeepalived.core.lvs.ipvs import IpvsBackend
from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.manager import build_registry

PAGE = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"
FRAMED = b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + FRAMED
HELLO = hashlib.md5(b"hello").hexdigest()

CONF = f"""
virtual_server 192.0.2.61 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    alpha
    real_server 198.51.100.71 80 {{
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            url {{
                path /plain?x=1
                digest {HELLO}
            }}
        }}
    }}
    real_server 198.51.100.71 8082 {{
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            http_protocol 1.1
            url {{
                path /chunked
                digest {hashlib.md5(FRAMED).hexdigest()}
            }}
        }}
    }}
    real_server 198.51.100.72 8083 {{
        virtualhost rs.example.test
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            http_protocol 1.0C
            url {{
                path /
            }}
        }}
    }}
}}
virtual_server 192.0.2.62 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    alpha
    virtualhost vs.example.test
    real_server 198.51.100.72 8084 {{
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            url {{
                path /
            }}
        }}
    }}
    real_server 198.51.100.20 8085 {{
        virtualhost rs.example.test
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            url {{
                path /
            }}
        }}
    }}
    real_server 198.51.100.21 8086 {{
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            virtualhost chk.example.test
            url {{
                path /a
                virtualhost url.example.test
            }}
            url {{
                path /b
            }}
        }}
    }}
    real_server 198.51.100.22 8087 {{
        HTTP_GET {{
            connect_timeout 2
            warmup 0
            http_protocol 1.1
            url {{
                path /chunked
                digest {hashlib.md5(b"abcdefg").hexdigest()}
            }}
        }}
    }}
    real_server 198.51.100.23 8443 {{
        SSL_GET {{
            connect_timeout 2
            warmup 0
            enable_sni
            url {{
                path /tls
                digest {HELLO}
            }}
        }}
    }}
}}
"""


def _get(path: str, host: str, protocol: str = "1.0") -> bytes:
    minor = "1" if protocol == "1.1" else "0"
    close = "Connection: close\r\n" if protocol != "1.0" else ""
    text = (
        f"GET {path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n"
    )
    return text.encode()


EXPECTED_REQUESTS = {
    ("198.51.100.71", 80): {_get("/plain?x=1", "198.51.100.71:80")},
    ("198.51.100.71", 8082): {_get("/chunked", "198.51.100.71:8082", "1.1")},
    ("198.51.100.72", 8083): {_get("/", "rs.example.test", "1.0C")},
    ("198.51.100.72", 8084): {_get("/", "vs.example.test")},
    ("198.51.100.20", 8085): {_get("/", "rs.example.test")},
    ("198.51.100.21", 8086): {_get("/a", "url.example.test"), _get("/b", "chk.example.test")},
    ("198.51.100.22", 8087): {_get("/chunked", "vs.example.test", "1.1")},
    ("198.51.100.23", 8443): {_get("/tls", "vs.example.test")},
}
# Every real server up but 8087: its digest is of the decoded chunked body.  The
# SSL_GET one is up although the SSL block's ca did not sign its certificate:
# keepalived 2.2.7 loads the ca but never verifies the server.
EXPECTED_TABLE = sorted(
    [
        "-A -t 192.0.2.61:80 -s rr",
        "-a -t 192.0.2.61:80 -r 198.51.100.71:80 -m -w 1",
        "-a -t 192.0.2.61:80 -r 198.51.100.71:8082 -m -w 1",
        "-a -t 192.0.2.61:80 -r 198.51.100.72:8083 -m -w 1",
        "-A -t 192.0.2.62:80 -s rr",
        "-a -t 192.0.2.62:80 -r 198.51.100.72:8084 -m -w 1",
        "-a -t 192.0.2.62:80 -r 198.51.100.20:8085 -m -w 1",
        "-a -t 192.0.2.62:80 -r 198.51.100.21:8086 -m -w 1",
        "-a -t 192.0.2.62:80 -r 198.51.100.23:8443 -m -w 1",
    ]
)
TIMEOUT = 25.0


class Recorder:
    """Raw servers on every real server: record requests, answer and close."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.seen: dict[tuple[str, int], set[bytes]] = defaultdict(set)
        self.servers: list[asyncio.Server] = []
        self.tls = tls
        self.sni: set[str | None] = set()
        tls.sni_callback = self._sni  # type: ignore[assignment]

    def _sni(self, sock: object, name: str | None, ctx: object) -> None:
        self.sni.add(name)

    async def start(self) -> None:
        for address, port in EXPECTED_REQUESTS:

            async def handle(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                key: tuple[str, int] = (address, port),
            ) -> None:
                try:
                    request = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    return
                self.seen[key].add(request)
                writer.write(CHUNKED if b" /chunked " in request else PAGE)
                await writer.drain()
                writer.close()

            tls = self.tls if port == 8443 else None
            self.servers.append(await asyncio.start_server(handle, address, port, ssl=tls))

    def stop(self) -> None:
        for server in self.servers:
            server.close()


async def _settle(recorder: Recorder, who: str) -> dict[tuple[str, int], set[bytes]]:
    """Wait until every url was fetched and the table is the expected one."""
    deadline = time.monotonic() + TIMEOUT
    rules: list[str] = []
    while time.monotonic() < deadline:
        rules = await asyncio.to_thread(ipvsadm_rules)
        fetched = all(len(recorder.seen[k]) >= len(v) for k, v in EXPECTED_REQUESTS.items())
        if fetched and rules == EXPECTED_TABLE:
            return {k: set(v) for k, v in recorder.seen.items()}
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{who}: table {rules}, requests {dict(recorder.seen)}, expected {EXPECTED_TABLE}"
    )


def _self_signed(path: Path, name: str) -> tuple[Path, Path]:
    key, crt = path / f"{name}.key", path / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return crt, key


async def test_http_get_sends_and_judges_as_keepalived(tmp_path: Path) -> None:
    crt, key = _self_signed(tmp_path, "rs.example.test")
    other_ca, _ = _self_signed(tmp_path, "other-ca")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(crt, key)
    text = CONF + f"SSL {{\n    ca {other_ca}\n}}\n"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)

    # 1. keepalived's checker: its requests and table are the expectation.
    recorder = Recorder(tls)
    await recorder.start()
    keepalived, log = start_keepalived(conf, tmp_path)
    try:
        theirs = await _settle(recorder, "keepalived")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{read_log(log)}") from None
    finally:
        stop_keepalived(keepalived)
        recorder.stop()
    assert theirs == EXPECTED_REQUESTS
    assert recorder.sni == {"vs.example.test"}  # enable_sni: the virtual server's virtualhost
    assert ipvsadm_rules() == []

    # 2. ours, same configuration, same servers.
    recorder = Recorder(tls)
    await recorder.start()
    registry = build_registry(autoload=False)
    loaded = load_text(text, grammar=registry.grammar())
    assert not loaded.diagnostics.errors
    backend = IpvsBackend()
    logging.getLogger("pykeepalived").setLevel(logging.WARNING)
    manager = VirtualServerManager(loaded.config, registry.checkers, backend=backend)
    await manager.start()
    try:
        ours = await _settle(recorder, "pykeepalived")
    finally:
        await manager.stop()
        await backend.stop()
        recorder.stop()
    assert ours == theirs
    assert recorder.sni == {"vs.example.test"}
    assert ipvsadm_rules() == []
