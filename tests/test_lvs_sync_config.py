"""global_defs ``lvs_sync_daemon`` and vrrp_instance ``lvs_sync_daemon_interface``,
read as keepalived 2.2.7 reads them, with ``keepalived -t`` as the oracle for the
messages; and the parts of the sync daemon controller that need no kernel
(the daemons themselves are tested in the IPVS VM: tests/ipvs_vm/test_lvs_sync.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import subprocess
from pathlib import Path

import pytest
from keepalived_oracle import KEEPALIVED, keepalived_test

from pykeepalived.core.config import load_text
from pykeepalived.core.config.errors import Severity
from pykeepalived.core.config.model import LvsSyncDaemon
from pykeepalived.core.lvs.ipvs import available
from pykeepalived.core.lvs.ipvs.netlink import DAEMON_BACKUP, DAEMON_MASTER
from pykeepalived.core.lvs.syncd import SyncDaemonController, SyncParams, wanted_role

INSTANCE = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100
    }
}
"""

#: (global_defs line, expected fields or None (no setting), keepalived's messages)
CASES: list[tuple[str, dict[str, object] | None, list[str]]] = [
    ("lvs_sync_daemon eth0 VI_1", {"instance": "VI_1", "syncid": 51}, []),
    (
        "lvs_sync_daemon eth0 VI_1 id 7 maxlen 1400 port 8849 ttl 2 group 239.1.2.3",
        {
            "instance": "VI_1",
            "syncid": 7,
            "maxlen": 1400,
            "port": 8849,
            "ttl": 2,
            "group": ipaddress.ip_address("239.1.2.3"),
        },
        [],
    ),
    (
        "lvs_sync_daemon eth0 inst VI_1 group ff02::1:2 maxlen 65507",
        {"instance": "VI_1", "group": ipaddress.ip_address("ff02::1:2"), "maxlen": 65507},
        [],
    ),
    (
        "lvs_sync_daemon eth0 VI_1 id 300 maxlen 65508 port 0 ttl 256 group 192.0.2.1 foo",
        {"syncid": 51, "maxlen": None, "port": None, "ttl": None, "group": None},
        [
            "Invalid syncid (300) - defaulting to vrid",
            "Invalid lvs_sync_daemon maxlen (65508) - ignoring",
            "Invalid lvs_sync_daemon port (0) - ignoring",
            "Invalid lvs_sync_daemon ttl (256) - ignoring",
            "lvs_sync_daemon group address 192.0.2.1 is not multicast - ignoring",
            "Unknown option foo specified for lvs_sync_daemon",
        ],
    ),
    # keepalived's old positional form: INTERFACE INSTANCE SYNCID
    (
        "lvs_sync_daemon eth0 VI_1 9",
        {"syncid": 9},
        ['Please use keyword "id" before lvs_sync_daemon SYNCID'],
    ),
    ("lvs_sync_daemon eth0 VI_1 x", {"syncid": 51}, ["Invalid syncid (x) - defaulting to vrid"]),
    (
        "lvs_sync_daemon eth0 VI_1 id",
        {"syncid": 51},
        ["No value specified for lvs_sync_daemon id, defaulting to vrid"],
    ),
    (
        "lvs_sync_daemon eth0 VI_1 ttl",
        {"ttl": None},
        ["No value specified for lvs_sync_daemon ttl - ignoring"],
    ),
    # no instance: keepalived's checker runs master and backup, sync id 0 by default
    ("lvs_sync_daemon eth0", {"instance": None, "syncid": 0}, []),
    ("lvs_sync_daemon eth0 id 3", {"instance": None, "syncid": 3}, []),
    ("lvs_sync_daemon", None, ["lvs_sync_daemon requires interface"]),
    (
        "lvs_sync_daemon abcdefghijklmnop VI_1",
        None,
        ["lvs_sync_daemon interface name 'abcdefghijklmnop' too long - ignoring"],
    ),
]

#: keepalived's read_unsigned prints its own line before the keyword's message; ours
#: carries the same detail in parentheses at the end of the one line.
_NUMBER_LINE = re.compile(r"^number '.*' outside range|^invalid number|^negative number")
_DETAIL = re.compile(r" \((?:[^()]* is out of range [^()]*|'.*' is not an integer)\)$")


def _ours(text: str, line: int) -> list[str]:
    result = load_text(text, name="s.conf")
    return [
        _DETAIL.sub("", d.message)
        for d in result.diagnostics.items
        if d.place.line == line and d.severity is Severity.WARNING
    ]


#: keepalived names the file only on the first message after a file change:
#: "(FILE: Line N) TEXT", then "(Line N) TEXT".
_KA_LINE = re.compile(r"^\((?:.+: )?Line (?P<line>\d+)\) (?P<text>.*)$")


def _keepalived(tmp_path: Path, text: str, line: int) -> list[str]:
    conf = tmp_path / "s.conf"
    conf.write_text(text)
    assert os.path.exists(KEEPALIVED), f"no {KEEPALIVED}: install keepalived (make setup)"
    proc = subprocess.run(
        [KEEPALIVED, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30
    )
    out = []
    for raw in (proc.stdout + proc.stderr).splitlines():
        m = _KA_LINE.match(raw)
        if m and int(m["line"]) == line and not _NUMBER_LINE.match(m["text"]):
            out.append(m["text"])
    return out


@pytest.mark.parametrize(("line", "fields", "messages"), CASES, ids=[c[0] for c in CASES])
def test_lvs_sync_daemon_as_keepalived(
    tmp_path: Path, line: str, fields: dict[str, object] | None, messages: list[str]
) -> None:
    text = f"global_defs {{\n    {line}\n}}\n{INSTANCE}"
    assert _keepalived(tmp_path, text, 2) == messages
    assert _ours(text, 2) == messages
    syncd = load_text(text).config.global_defs.lvs_sync_daemon
    if fields is None:
        assert syncd is None
        return
    assert syncd is not None and syncd.interface == "eth0"
    for name, value in fields.items():
        assert getattr(syncd, name) == value, name


def test_second_lvs_sync_daemon_is_ignored(tmp_path: Path) -> None:
    text = (
        "global_defs {\n    lvs_sync_daemon eth0 VI_1 id 4\n    lvs_sync_daemon eth1 VI_1\n}\n"
        + INSTANCE
    )
    expected = ["lvs_sync_daemon has already been specified as eth0 VI_1 - ignoring"]
    assert _keepalived(tmp_path, text, 3) == expected
    assert _ours(text, 3) == expected
    syncd = load_text(text).config.global_defs.lvs_sync_daemon
    assert syncd is not None and (syncd.interface, syncd.syncid) == ("eth0", 4)


def test_deprecated_instance_interface(tmp_path: Path) -> None:
    """keepalived's two lines of deprecation are one here; the instance drives
    the daemon with sync id 0 (the vrid default is for a named instance only)."""
    text = INSTANCE.replace(
        "    interface eth0\n", "    interface eth0\n    lvs_sync_daemon_interface eth1\n"
    )
    line = text.splitlines().index("    lvs_sync_daemon_interface eth1") + 1
    ka = _keepalived(tmp_path, text, line)
    assert ka[0] == "(VI_1) Specifying lvs_sync_daemon_interface against a vrrp is deprecated."
    assert ka[1].strip() == "Please use global lvs_sync_daemon"
    assert _ours(text, line) == [f"{ka[0]} {ka[1].strip()}"]
    syncd = load_text(text).config.global_defs.lvs_sync_daemon
    assert syncd is not None
    assert (syncd.interface, syncd.instance, syncd.syncid) == ("eth1", "VI_1", 0)
    # after a global lvs_sync_daemon: ignored, with keepalived's message
    both = "global_defs {\n    lvs_sync_daemon eth0 VI_1\n}\n" + text
    ka = _keepalived(tmp_path, both, line + 3)
    assert (
        ka[-1] == "(VI_1) lvs_sync_daemon_interface has already been specified as eth0 - ignoring"
    )
    assert _ours(both, line + 3)[-1] == ka[-1]
    syncd = load_text(both).config.global_defs.lvs_sync_daemon
    assert syncd is not None and (syncd.interface, syncd.syncid) == ("eth0", 51)


def test_unknown_instance_clears_the_setting(tmp_path: Path) -> None:
    """keepalived 2.2.7 -t passes silently; its VRRP process logs this and runs
    no sync daemon: a notice here (logged at start, -t passes)."""
    text = "global_defs {\n    lvs_sync_daemon eth0 VI_9\n}\n" + INSTANCE
    conf = tmp_path / "s.conf"
    conf.write_text(text)
    assert keepalived_test(conf) == (0, [])
    result = load_text(text, name="s.conf")
    assert result.config.global_defs.lvs_sync_daemon is None
    assert [(str(d.place), d.severity, d.message) for d in result.diagnostics.items] == [
        (
            "s.conf:2",
            Severity.NOTICE,
            "Unable to find vrrp instance VI_9 for lvs_syncd - clearing lvs_syncd config",
        )
    ]


# -- the controller, without a kernel -----------------------------------------------------


def test_kernel_attributes() -> None:
    """Only what is configured is sent (the kernel's defaults apply otherwise);
    the group goes to the attribute of its family."""
    bare = SyncParams.of(LvsSyncDaemon("eth0", syncid=51))
    assert bare.attrs() == [
        ("IPVS_DAEMON_ATTR_MCAST_IFN", "eth0"),
        ("IPVS_DAEMON_ATTR_SYNC_ID", 51),
    ]
    full = SyncParams.of(
        LvsSyncDaemon(
            "eth1", syncid=7, maxlen=1400, port=8849, ttl=2, group=ipaddress.ip_address("ff02::12")
        )
    )
    assert dict(full.attrs()) == {
        "IPVS_DAEMON_ATTR_MCAST_IFN": "eth1",
        "IPVS_DAEMON_ATTR_SYNC_ID": 7,
        "IPVS_DAEMON_ATTR_SYNC_MAXLEN": 1400,
        "IPVS_DAEMON_ATTR_MCAST_PORT": 8849,
        "IPVS_DAEMON_ATTR_MCAST_TTL": 2,
        "IPVS_DAEMON_ATTR_MCAST_GROUP6": ipaddress.ip_address("ff02::12").packed,
    }
    v4 = SyncParams.of(LvsSyncDaemon("eth1", syncid=0, group=ipaddress.ip_address("239.0.0.9")))
    assert ("IPVS_DAEMON_ATTR_MCAST_GROUP", bytes([239, 0, 0, 9])) in v4.attrs()


def test_roles() -> None:
    assert wanted_role("MASTER") == DAEMON_MASTER
    for state in ("INIT", "BACKUP", "FAULT", None):
        assert wanted_role(state) == DAEMON_BACKUP


def test_without_ipvs_it_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    """Where the kernel has no ip_vs (the nftables backend serves the virtual
    servers), the setting is not applied, and the log says so once."""
    if asyncio.run(available(load_module=False)) is None:
        pytest.skip("this kernel has IPVS; the failure path cannot be seen here")

    async def go() -> SyncDaemonController:
        ctl = SyncDaemonController(
            LvsSyncDaemon("eth0", instance="VI_1", syncid=51), instance_driven=True
        )
        await ctl.start("BACKUP")
        ctl.instance_state("MASTER")
        ctl.instance_state("BACKUP")
        await ctl.stop()
        return ctl

    caplog.set_level(logging.INFO)
    ctl = asyncio.run(go())
    said = [r.getMessage() for r in caplog.records if "lvs_sync_daemon" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "lvs_sync_daemon needs IPVS (the kernel's ip_vs) and is not applied: "
    ), said
    assert ctl.status()["applied"] is False and ctl.running == set()
