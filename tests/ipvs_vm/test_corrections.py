"""keepalived's corrections of virtual servers reach the kernel: same table.

keepalived 2.2.7 corrects virtual servers before programming IPVS (ports of
DR/TUN servers, fwmark services, groups' entries, defaults, duplicates; see
core/config/lvs_checks.py and tests/test_lvs_corrections.py for the
messages).  keepalived (checker process only) runs on corrections.conf, its
table is captured, then ours is programmed from the same file and compared
rule for rule.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from vmhelp import ipvsadm_rules, read_log, start_keepalived, stop_keepalived

from pykeepalived.core.config import load_text
from pykeepalived.core.lvs.ipvs import IpvsBackend
from pykeepalived.core.lvs.manager import VirtualServerManager
from pykeepalived.core.plugin.manager import build_registry

CONF = Path(__file__).with_name("corrections.conf")


async def test_corrected_table_as_keepalived(tmp_path: Path) -> None:
    registry = build_registry(autoload=False)
    loaded = load_text(CONF.read_text(), name=str(CONF), grammar=registry.grammar())
    assert not loaded.diagnostics.errors, [str(d) for d in loaded.diagnostics.errors]
    logging.getLogger("pykeepalived").setLevel(logging.CRITICAL)
    manager = VirtualServerManager(loaded.config, registry.checkers)
    table = manager.table()
    expected = len(table) + sum(len(s.destinations) for s in table)

    keepalived, log = start_keepalived(CONF, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while len(ipvsadm_rules()) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # keepalived may still be adding
        theirs = ipvsadm_rules()
    finally:
        stop_keepalived(keepalived)
    assert len(theirs) == expected, f"{theirs}\n{read_log(log)}"
    assert ipvsadm_rules() == []

    backend = IpvsBackend()
    result = await backend.apply(table)
    assert not result.failed
    ours = ipvsadm_rules()
    assert ours == theirs, "\n".join(
        [f"only keepalived: {r}" for r in theirs if r not in ours]
        + [f"only ours:       {r}" for r in ours if r not in theirs]
    )
    await backend.stop()
    assert ipvsadm_rules() == []
