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
