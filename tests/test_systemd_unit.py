"""The shipped systemd unit: systemd's own verifier accepts it, and
``pykeepalived install-systemd-unit`` writes it with the right ExecStart."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pykeepalived.core.shell.ctl import main as ctl_main
from pykeepalived.core.shell.ctl import render_unit

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "contrib/systemd/pykeepalived.service"
EXE = Path(sys.executable).with_name("pykeepalived")
ANALYZE = shutil.which("systemd-analyze")


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    # `make test` installs it (apt package systemd): missing is a broken setup
    assert ANALYZE is not None, "systemd-analyze missing: apt-get install systemd"
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_contrib_unit_is_the_template() -> None:
    """contrib/ holds the unit as installed for /usr/local/bin/pykeepalived."""
    assert CONTRIB.read_text() == render_unit("/usr/local/bin/pykeepalived")


def test_unit_settings() -> None:
    s = _settings(render_unit("/usr/bin/pykeepalived"))
    assert s["Type"] == ["notify"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert s["WatchdogSec"] == ["10s"]
    assert s["Environment"] == ["KEEPALIVED_CONF=/etc/keepalived/keepalived.conf"]
    assert s["EnvironmentFile"] == ["-/etc/default/pykeepalived"]
    assert s["ExecStart"] == [
        "/usr/bin/pykeepalived --dont-fork --use-file=${KEEPALIVED_CONF} $DAEMON_ARGS"
    ]
    # what would break VRRP, IPVS or keepalived's dump files is not there
    for breaks in (
        "PrivateTmp",
        "PrivateNetwork",
        "ProtectKernelTunables",
        "CapabilityBoundingSet",
    ):
        assert breaks not in s
    families = s["RestrictAddressFamilies"][0].split()
    assert {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"} == set(families)


def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert ctl_main(["install-systemd-unit", "--prefix", str(tmp_path)]) == 0
    unit = tmp_path / "etc/systemd/system/pykeepalived.service"
    text = unit.read_text()
    assert _settings(text)["ExecStart"][0].split()[0] == str(EXE)
    proc = _verify(unit)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr + proc.stdout


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing program are caught."""
    unit = tmp_path / "pykeepalived.service"
    unit.write_text(render_unit(str(EXE)).replace("WatchdogSec=", "WatchdogSecs="))
    assert "Unknown key" in _verify(unit).stderr
    unit.write_text(render_unit("/nonexistent/pykeepalived"))
    assert _verify(unit).returncode != 0


def test_install_to_stdout_and_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "install-systemd-unit", "--stdout", "--exec", "/opt/pyk/bin/pykeepalived"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render_unit("/opt/pyk/bin/pykeepalived")
    bad = subprocess.run(
        [str(EXE), "install-systemd-unit", "--prefix", "/proc/nonexistent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
