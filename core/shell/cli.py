"""``pykeepalived``: keepalived's command line, same flags, same meaning.

Exit codes: :mod:`pykeepalived.core.shell.startup`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pykeepalived.core.shell.logging_setup import setup_logging
from pykeepalived.core.shell.startup import (
    DEFAULT_CONF,
    DEFAULT_PID_FILE,
    DEFAULT_STATUS_SOCKET,
    EXIT_CONFIG,
    EXIT_CONFIG_TEST,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_SCRIPT_SECURITY,
    load_config,
)

#: Sub-commands handled by core/shell/ctl.py (the daemon's flags are keepalived's).
CTL_COMMANDS = ("status", "reload", "install-systemd-unit")


def _listen_address(text: str) -> str:
    from pykeepalived.core.shell.http_api import parse_listen

    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykeepalived",
        description="keepalived, re-built in Python: VRRP failover, LVS and health checks.",
        formatter_class=_Formatter,
    )
    p.add_argument(
        "-f",
        "--use-file",
        dest="file",
        default=DEFAULT_CONF,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONF})",
    )
    p.add_argument(
        "-t",
        "--config-test",
        action="store_true",
        help="check the configuration and exit (0 ok, 5 problems, 6 insecure scripts)",
    )
    p.add_argument("-n", "--dont-fork", action="store_true", help="stay in the foreground")
    p.add_argument("-l", "--log-console", action="store_true", help="log to the console")
    p.add_argument("-D", "--log-detail", action="store_true", help="detailed (debug) log")
    p.add_argument(
        "-S",
        "--log-facility",
        type=int,
        choices=range(8),
        metavar="0-7",
        help="syslog facility LOCAL0..LOCAL7 (default DAEMON)",
    )
    p.add_argument("-P", "--vrrp", action="store_true", help="run the VRRP part only")
    p.add_argument("-C", "--check", action="store_true", help="run the LVS/checker part only")
    p.add_argument(
        "-p",
        "--pid",
        dest="pid_file",
        metavar="FILE",
        help=f"pid file (default {DEFAULT_PID_FILE}, as keepalived's)",
    )
    # keepalived's VRRP and checker children have pid files of their own; we
    # are one process, so these hold our pid too (see docs/operations.md).
    p.add_argument(
        "-r",
        "--vrrp_pid",
        dest="vrrp_pid_file",
        metavar="FILE",
        help="also write our pid here when the VRRP part runs (keepalived: VRRP child)",
    )
    p.add_argument(
        "-c",
        "--checkers_pid",
        dest="checkers_pid_file",
        metavar="FILE",
        help="also write our pid here when the checker part runs (keepalived: checker child)",
    )
    p.add_argument(
        "-i",
        "--config-id",
        default=None,
        metavar="ID",
        help="config id for @ID conditional lines (default: short host name)",
    )
    p.add_argument(
        "-d", "--dump-conf", action="store_true", help="dump the parsed configuration to the log"
    )
    p.add_argument(
        "--dump-conf-json",
        action="store_true",
        help="print the parsed configuration as JSON and exit",
    )
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --dump-conf-json, print passwords instead of ***",
    )
    p.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="do not load plugin NAME (repeatable)",
    )
    p.add_argument(
        "--status-socket",
        metavar="PATH",
        default=DEFAULT_STATUS_SOCKET,
        help=f"serve live status as JSON on this unix socket (default {DEFAULT_STATUS_SOCKET};"
        " '' or none: off)",
    )
    p.add_argument(
        "--http-listen",
        metavar="HOST:PORT",
        default=None,
        type=_listen_address,
        help="serve a dashboard (/), /status (JSON), /metrics (Prometheus) and /healthz "
        "over HTTP; PORT alone listens on 127.0.0.1",
    )
    p.add_argument(
        "--http-token-file",
        metavar="FILE",
        default=None,
        help="with --http-listen: clients not on loopback must send this file's first line "
        "as 'Authorization: Bearer TOKEN' (or ?token=)",
    )
    # keepalived's shape (on stderr, with its build options): see core/shell/version.py
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    p.add_argument(
        "--signum",
        metavar="SIGFUNC",
        help="print the signal number for STOP, RELOAD, DATA, STATS, STATS_CLEAR or JSON",
    )
    compat = p.add_argument_group(
        "keepalived options accepted for compatibility (no effect in pykeepalived)"
    )
    for short, long, metavar, what in KEEPALIVED_COMPAT_OPTIONS:
        if metavar is None:
            compat.add_argument(short, long, action="store_true", help=what)
        else:
            compat.add_argument(short, long, metavar=metavar, help=what)
    return p


#: keepalived 2.2.7's other command-line options (``keepalived --help``):
#: accepted so that unit files and scripts written for keepalived work.
KEEPALIVED_COMPAT_OPTIONS: tuple[tuple[str, str, str | None, str], ...] = (
    ("-B", "--no_bfd", None, "don't run the BFD subsystem"),
    ("-G", "--no-syslog", None, "don't log via syslog"),
    ("-u", "--umask", "MASK", "umask for file creation"),
    ("-X", "--release-vips", None, "drop VIPs and VRRP routes on exit"),
    ("-V", "--dont-release-vrrp", None, "don't remove VRRP VIPs and routes on exit"),
    ("-I", "--dont-release-ipvs", None, "don't remove IPVS topology on exit"),
    ("-R", "--dont-respawn", None, "don't respawn child processes"),
    ("-a", "--address-monitoring", None, "report all address additions/deletions"),
    ("-b", "--bfd_pid", "FILE", "BFD child pid file"),
    ("-x", "--snmp", None, "enable SNMP subsystem"),
    ("-A", "--snmp-agent-socket", "FILE", "SNMP agent socket"),
    ("-s", "--namespace", "NAME", "run in network namespace NAME"),
    ("-m", "--core-dump", None, "produce core dump if terminate abnormally"),
    ("-M", "--core-dump-pattern", "PATTERN", "core dump file name pattern"),
    ("-e", "--all-config", None, "don't load if any configuration file is missing"),
    ("-T", "--genhash", None, "genhash mode (use the genhash tool)"),
)


def _compat_used(args: argparse.Namespace) -> list[str]:
    used = []
    for short, long, _metavar, _what in KEEPALIVED_COMPAT_OPTIONS:
        value = getattr(args, long.lstrip("-").replace("-", "_"), None)
        if value not in (None, False):
            used.append(f"{short}/{long}")
    return used


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter with the width worked out as shutil.get_terminal_size
    does: argparse imports shutil (and with it bz2 and lzma, 0.6 MB) for that alone,
    and builds a formatter for every add_argument, so every daemon paid for it."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                width = os.get_terminal_size(1).columns
            except (ValueError, OSError):
                width = 80
        super().__init__(prog, width=width - 2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["genhash"]:
        from pykeepalived.core.lvs.genhash import main as genhash_main

        return genhash_main(argv[1:])
    if argv[:1] and argv[0] in CTL_COMMANDS:
        from pykeepalived.core.shell.ctl import main as ctl_main

        return ctl_main(argv)
    args = build_parser().parse_args(argv)
    if args.signum is not None:
        from pykeepalived.core.shell.version import print_signum

        return print_signum(args.signum)
    if args.version:
        from pykeepalived.core.shell.version import print_version

        return print_version()
    if args.status_socket in ("", "none"):
        args.status_socket = None
    for opt in _compat_used(args):
        print(
            f"pykeepalived: warning: keepalived option {opt} is not supported; ignored",
            file=sys.stderr,
        )
    if args.config_test or args.dump_conf_json:
        loaded = load_config(args)
        if loaded is None:
            return EXIT_FATAL
        result, _ = loaded
        for d in result.diagnostics.items:
            print(d, file=sys.stderr)
        if args.dump_conf_json:
            from pykeepalived.core.config.dump import dump_json

            print(dump_json(result.config, secrets=args.show_secrets))
        if args.config_test:
            from pykeepalived.core.scripts import config_test_scripts

            # keepalived 2.2.7: a security violation (6) wins over config problems (5).
            problems, violations = config_test_scripts(result.config)
            for line in (*problems, *violations):
                print(line, file=sys.stderr)
            if violations:
                return EXIT_SCRIPT_SECURITY
            # Some problems have their own -t exit code (failed include checks: 6).
            special = [d.test_exit for d in result.diagnostics.failing if d.test_exit is not None]
            if special:
                return max(special)
            if problems or result.diagnostics.failing:
                return EXIT_CONFIG_TEST
        if not result.ok:
            return EXIT_CONFIG
        return EXIT_OK
    setup_logging(
        console=args.log_console or args.dont_fork,
        detail=args.log_detail,
        facility=args.log_facility,
    )
    if os.geteuid() != 0:
        logging.getLogger("pykeepalived").error("must run as root (network configuration)")
        return EXIT_FATAL
    from pykeepalived.core.shell.version import invoked_as_keepalived

    if invoked_as_keepalived():
        # found as keepalived by exporters that read the process table
        from pykeepalived.core.shell.proctitle import set_keepalived_title

        set_keepalived_title()
    from pykeepalived.core.shell import lazyssl

    lazyssl.defer()  # before asyncio is imported: OpenSSL only for a config that uses TLS
    from pykeepalived.core.shell.daemon import run_daemon

    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
