"""A VRRP-only daemon does not load what only other features need.

Memory is measured by ``bench/scale`` (RSS beside keepalived); this test
guards its largest lever, the import set: a running daemon with a VRRP-only
config must not have imported the libraries of LVS (pyroute2), of the HTTP
API (aiohttp), of SMTP alerts (aiosmtplib), psutil, or importlib.metadata and
its email/zipfile tree (plugin discovery reads entry points itself).  The
module list is read inside the real daemon process, through a
``sitecustomize`` on its PYTHONPATH that writes ``sys.modules`` on request.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import PyNode, global_defs, instance
from pykeepalived.testing.scenarios import with_env

HOOK = """\
import os, sys, threading, time

def _watch():
    request = os.environ["PKA_MODULES_REQUEST"]
    while not os.path.exists(request):
        time.sleep(0.05)
    tmp = os.environ["PKA_MODULES_OUT"] + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\\n".join(sorted(sys.modules)))
    os.rename(tmp, os.environ["PKA_MODULES_OUT"])

threading.Thread(target=_watch, name="pka-modules", daemon=True).start()
"""

#: Loaded only by the features that use them (a VRRP-only config uses none).
NOT_FOR_VRRP = (
    "pyroute2",
    "psutil",
    "aiohttp",
    "aiosmtplib",
    "importlib.metadata",
    "email",
    "zipfile",
    "sqlite3",
    "unittest",
    "multiprocessing",
    "ssl",  # asyncio gets it on first use (core/shell/lazyssl.py)
    "_ssl",
    "_hashlib",  # libcrypto: AH, auth_hmac and HTTP checks load it
    "importlib.resources",
    "shutil",  # with bz2 and lzma
    "tempfile",
)


@pytest.mark.netns
def test_vrrp_only_daemon_import_set(lab: Any, tmp_path: Path) -> None:
    host = lab(n_hosts=1).hosts[0]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    request, out = tmp_path / "request", tmp_path / "modules.txt"
    node = PyNode(host, tmp_path)
    with_env(
        node,
        {
            "PYTHONPATH": str(hook),
            "PKA_MODULES_REQUEST": str(request),
            "PKA_MODULES_OUT": str(out),
        },
    )
    node.start(global_defs("n1") + instance("VI_1", vrid=51, priority=150, vips=["192.0.2.50/32"]))
    node.wait_log("Entering MASTER STATE", 15)
    request.touch()
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, f"no module list from the daemon\n{node.tail()}"
        time.sleep(0.05)
    modules = set(out.read_text().split())
    assert "pykeepalived.core.vrrp.manager" in modules  # the list is the daemon's
    loaded = sorted(
        m for m in modules if any(m == bad or m.startswith(bad + ".") for bad in NOT_FOR_VRRP)
    )
    assert not loaded, f"a VRRP-only daemon imported {loaded}"
    assert node.terminate() == 0


LAZY_SSL_PROBE = """
import sys
from pykeepalived.core.shell import lazyssl
assert lazyssl.defer(), "deferral refused on this Python"
import asyncio
assert "ssl" not in sys.modules and "_ssl" not in sys.modules
from pykeepalived.core.lvs.http_client import HttpAnswer, ssl_client_context

async def main():
    import ssl  # the first import hands the module to asyncio
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(sys.argv[1], sys.argv[2])

    async def serve(reader, writer):
        line = await reader.readline()
        writer.write(b"HTTP/1.0 200 OK\\r\\n\\r\\necho " + line)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ssl_client_context(), server_hostname="rs.example.test"
    )
    writer.write(b"hello\\n")
    answer = await reader.read()
    writer.close()
    server.close()
    print(answer.decode())

asyncio.run(main())
"""


OPENSSL_REQ = [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
]
OPENSSL_REQ += ["-nodes", "-days", "2", "-subj", "/CN=rs.example.test"]


def test_lazy_ssl_gives_asyncio_tls_on_first_use(tmp_path: Path) -> None:
    """A TLS server and client through asyncio after the deferral: the
    first ``import ssl`` makes asyncio's TLS work as if ssl came first."""
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [*OPENSSL_REQ, "-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", LAZY_SSL_PROBE, str(crt), str(key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("echo hello")
