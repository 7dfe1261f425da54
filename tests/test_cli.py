"""The command line: keepalived's flags, -t exit codes, messages, JSON dump."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pykeepalived import __version__
from pykeepalived.core.shell.cli import KEEPALIVED_COMPAT_OPTIONS
from pykeepalived.core.shell.cli import main as cli_main

GOOD = """\
global_defs {
    router_id lb1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        192.0.2.100/24 dev eth0 label eth0:1
    }
}
virtual_server 192.0.2.100 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    real_server 192.0.2.11 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"""

#: Every option of keepalived 2.2.7's --help (short, long).
KEEPALIVED_FLAGS = [
    ("-f", "--use-file"), ("-P", "--vrrp"), ("-C", "--check"), ("-B", "--no_bfd"),
    ("-l", "--log-console"), ("-D", "--log-detail"), ("-S", "--log-facility"),
    ("-G", "--no-syslog"), ("-u", "--umask"), ("-X", "--release-vips"),
    ("-V", "--dont-release-vrrp"), ("-I", "--dont-release-ipvs"), ("-R", "--dont-respawn"),
    ("-n", "--dont-fork"), ("-d", "--dump-conf"), ("-p", "--pid"), ("-r", "--vrrp_pid"),
    ("-T", "--genhash"), ("-c", "--checkers_pid"), ("-a", "--address-monitoring"),
    ("-b", "--bfd_pid"), ("-x", "--snmp"), ("-A", "--snmp-agent-socket"), ("-s", "--namespace"),
    ("-m", "--core-dump"), ("-M", "--core-dump-pattern"), ("-e", "--all-config"),
    ("-i", "--config-id"), ("-t", "--config-test"), ("-v", "--version"), ("-h", "--help"),
]  # fmt: skip


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return path


def test_help_lists_keepalived_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    missing = [
        f"{s}, {lng}" for s, lng in KEEPALIVED_FLAGS if not re.search(rf"{s}( \S+)?, {lng}\b", out)
    ]
    assert missing == []


def test_flag_list_matches_installed_keepalived() -> None:
    # make test installs keepalived (APT_PACKAGES): missing is a broken setup, not a skip.
    assert shutil.which("keepalived"), "keepalived is missing: `make setup` installs it"
    help_text = subprocess.run(["keepalived", "--help"], capture_output=True, text=True).stderr
    help_text += subprocess.run(["keepalived", "--help"], capture_output=True, text=True).stdout
    theirs = set(re.findall(r"^\s+(-\w), (--[\w-]+)", help_text, re.M))
    assert theirs and theirs <= set(KEEPALIVED_FLAGS)


@pytest.mark.parametrize(
    "short,long,metavar", [(s, lng, m) for s, lng, m, _ in KEEPALIVED_COMPAT_OPTIONS]
)
def test_compat_flags_are_accepted_with_their_documented_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], short: str, long: str, metavar: str | None
) -> None:
    """--help files these under "accepted for compatibility (no effect in pykeepalived)":
    each one's effect is exactly one warning naming it, and the run is otherwise the same
    (-t still passes on a good file; nothing else on stderr)."""
    conf = _conf(tmp_path, GOOD)
    value = [] if metavar is None else [str(tmp_path / "x") if "FILE" in metavar else "022"]
    for flag in (short, long):
        assert cli_main(["-t", "-f", str(conf), flag, *value]) == 0
        err = capsys.readouterr().err
        assert err == (
            f"pykeepalived: warning: keepalived option {short}/{long} is not supported; ignored\n"
        )


def test_compat_flag_warnings_do_not_hide_config_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _conf(tmp_path, GOOD.replace("priority 150", "priority 300"))
    assert cli_main(["-t", "-f", str(conf), "-B", "-G"]) == 5
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "pykeepalived: warning: keepalived option -B/--no_bfd is not supported; ignored",
        "pykeepalived: warning: keepalived option -G/--no-syslog is not supported; ignored",
    ]
    assert any("priority: 300 is out of range" in line for line in err[2:])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    # keepalived prints its version block on stderr (tests/test_dumps.py checks its shape)
    assert cli_main(["-v"]) == 0
    assert __version__ in capsys.readouterr().err


def test_config_test_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["-t", "-f", str(_conf(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "edit,line,fragment",
    [
        (
            ("advert_int 1", "advert_intt 1"),
            9,
            "unknown keyword 'advert_intt' in vrrp_instance (did you mean 'advert_int'?)",
        ),
        (("priority 150", "priority 300"), 8, "error: priority: 300 is out of range 1..255"),
        (("state MASTER", "state master"), 5, "error: state: 'master' is not one of"),
        (
            ("lb_kind DR", "lb_kind dr"),
            21,
            "warning: PARSER : unknown [dr] routing method for virtual server.",
        ),
        (("    advert_int 1\n", "    advert_int 1 priority 20\n"), 9, "same line"),
    ],
)
def test_config_test_problems_exit_5_with_file_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str],
    line: int,
    fragment: str,
) -> None:
    conf = _conf(tmp_path, GOOD.replace(*edit))
    assert cli_main(["-t", "-f", str(conf)]) == 5
    err = capsys.readouterr().err
    assert f"{conf}:{line}: " in err and fragment in err, err
    for msg in err.splitlines():
        assert msg.startswith(f"{conf}:"), msg


def test_config_test_script_security_exit_6(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "global_defs {\n script_user root\n}\n" + GOOD.replace(
        "    advert_int 1\n", '    advert_int 1\n    notify_master "/bin/true master"\n'
    )
    conf = _conf(tmp_path, text)
    assert cli_main(["-t", "-f", str(conf)]) == 6
    assert (
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
        in capsys.readouterr().err
    )
    secure = _conf(
        tmp_path,
        text.replace(" script_user root\n", " script_user root\n enable_script_security\n"),
    )
    assert cli_main(["-t", "-f", str(secure)]) == 0


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["-t", "-f", str(tmp_path / "nope.conf")])
    err = capsys.readouterr().err
    assert rc != 0 and "nope.conf" in err and "Traceback" not in err


def test_dump_conf_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--dump-conf-json", "-f", str(_conf(tmp_path, GOOD))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["global_defs"]["router_id"] == "lb1"
    [vi] = data["vrrp_instances"]
    assert (vi["name"], vi["state"], vi["virtual_router_id"], vi["priority"]) == (
        "VI_1",
        "MASTER",
        51,
        150,
    )
    assert vi["authentication"] == {
        "place": f"{tmp_path}/keepalived.conf:10",
        "auth_type": "PASS",
        "auth_pass": "***",
    }
    assert vi["virtual_ipaddress"][0]["address"] == "192.0.2.100/24"
    assert vi["virtual_ipaddress"][0]["label"] == "eth0:1"
    [vs] = data["virtual_servers"]
    assert (vs["address"], vs["port"], vs["lb_algo"], vs["lb_kind"]) == (
        "192.0.2.100",
        80,
        "rr",
        "DR",
    )
    [rs] = vs["real_servers"]
    assert (rs["address"], rs["weight"], rs["checkers"][0]["kind"]) == (
        "192.0.2.11",
        2,
        "TCP_CHECK",
    )
    assert "s3cret" not in json.dumps(data)


def test_dump_hides_the_ssl_key_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The SSL block's key password was printed by --dump-conf-json and logged by -d.
    conf = _conf(tmp_path, "SSL {\n password k3y-Secret\n}\n" + GOOD)
    assert cli_main(["--dump-conf-json", "-f", str(conf)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["ext"]["SSL"]["password"] == "***"
    assert "k3y-Secret" not in out


def test_dump_conf_json_show_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--dump-conf-json", "--show-secrets", "-f", str(_conf(tmp_path, GOOD))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vrrp_instances"][0]["authentication"]["auth_pass"] == "s3cret"


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed ``pykeepalived`` entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("pykeepalived")
    # `make setup` installs it (pyproject's [project.scripts]): missing means a broken
    # install, which this test is here to catch, so no skip.
    assert exe.exists(), f"no {exe}: the package is not installed (run `make setup`)"
    conf = _conf(tmp_path, GOOD.replace("priority 150", "priorty 150"))
    proc = subprocess.run(
        [str(exe), "-t", "-f", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 5
    assert f"{conf}:8: warning: unknown keyword 'priorty'" in proc.stderr
    assert proc.stdout == ""
