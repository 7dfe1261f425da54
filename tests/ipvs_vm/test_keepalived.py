"""Same configuration, same IPVS table: real keepalived against our backend.

keepalived (checker process only) runs on keepalived.conf here (the seed
documents' virtual servers, plus attribute coverage); its table is captured
once every real server is in, then keepalived stops.  Our configuration
loader and virtual-server manager build the desired table from the same file
(every real server up, as keepalived starts them) and our backend programs
it.  The two tables must be equal, rule for rule.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmhelp import ipvsadm_rules, start_keepalived, stop_keepalived

from pykeepalived.core.config import load_text
from pykeepalived.core.lvs.ipvs import IpvsBackend
from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.manager import build_registry

CONF = Path(__file__).with_name("keepalived.conf")
SERVICES, REAL_SERVERS = 6, 12
SETTLE = 1.0  # keepalived may still be adding when the count first matches


@pytest.fixture
def web_servers(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One HTTP server on every local address, port 80: all checks succeed."""
    (tmp_path / "index.html").write_text("ok\n")
    proc = subprocess.Popen(["busybox", "httpd", "-f", "-p", "80", "-h", str(tmp_path)])
    yield proc
    proc.kill()
    proc.wait()


def wait_for_table(deadline: float) -> list[str]:
    while True:
        rules = ipvsadm_rules()
        services = sum(r.startswith("-A") for r in rules)
        reals = sum(r.startswith("-a") for r in rules)
        if (services, reals) == (SERVICES, REAL_SERVERS) or time.monotonic() > deadline:
            return rules
        time.sleep(0.2)


async def test_same_table_as_keepalived(web_servers: object, tmp_path: Path) -> None:
    keepalived, log = start_keepalived(CONF, tmp_path)
    try:
        rules = wait_for_table(time.monotonic() + 30)
        time.sleep(SETTLE)
        theirs = ipvsadm_rules()
    finally:
        stop_keepalived(keepalived)
    log.seek(0)
    ka_log = log.read()
    assert rules == theirs, f"keepalived's table changed while settling\n{ka_log}"
    assert len(theirs) == SERVICES + REAL_SERVERS, f"{theirs}\n{ka_log}"
    # keepalived removes its virtual servers when it stops.
    assert ipvsadm_rules() == []

    registry = build_registry(autoload=False)
    loaded = load_text(CONF.read_text(), name=str(CONF), grammar=registry.grammar())
    assert not loaded.diagnostics.errors, [str(d) for d in loaded.diagnostics.errors]
    logging.getLogger("pykeepalived").setLevel(logging.CRITICAL)  # checker set-up chatter
    manager = VirtualServerManager(loaded.config, registry.checkers)
    backend = IpvsBackend()
    result = await backend.apply(manager.table())
    assert not result.failed
    ours = ipvsadm_rules()
    assert ours == theirs, "\n".join(
        [f"only keepalived: {r}" for r in theirs if r not in ours]
        + [f"only ours:       {r}" for r in ours if r not in theirs]
    )
    await backend.stop()
    assert ipvsadm_rules() == []
