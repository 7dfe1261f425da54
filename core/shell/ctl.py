"""``pykeepalived status | reload | install-systemd-unit``: talking to a running daemon.

``status`` and ``reload --dry-run`` are clients of the status socket
(core/shell/status.py); ``reload`` sends SIGHUP to the pid in the pid file,
as ``kill -HUP $(cat /run/keepalived.pid)`` would.  Exit codes, for
monitoring: 0 all as wanted, 1 something is FAULT/down (status) or the new
configuration has errors (reload --dry-run), 2 the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pykeepalived.core.shell.pidfile import alive, read_pid
from pykeepalived.core.shell.startup import DEFAULT_CONF, DEFAULT_PID_FILE, DEFAULT_STATUS_SOCKET
from pykeepalived.core.shell.statusview import (
    HEALTH_OK,
    HEALTH_PROBLEM,
    HEALTH_UNREACHABLE,
    health,
    problems,
    render_table,
)

UNIT_NAME = "pykeepalived.service"

#: The systemd unit; contrib/systemd/pykeepalived.service is this text with
#: ExecStart /usr/local/bin/pykeepalived (a test keeps them equal).
UNIT_TEMPLATE = """\
# pykeepalived under systemd.  Installed by `pykeepalived install-systemd-unit`
# (which writes the ExecStart path of the pykeepalived it was run from);
# docs/operations.md explains every choice below.
[Unit]
Description=pykeepalived: VRRP failover, LVS and health checks (keepalived re-built in Python)
Documentation=man:keepalived.conf(5) https://keepalived.org
After=network-online.target
Wants=network-online.target
# Both would claim the same VRIDs, VIPs and /run/keepalived.pid.
Conflicts=keepalived.service

[Service]
# READY=1 once the configuration is applied and the sockets are open;
# RELOADING=1/READY=1 around a SIGHUP; STOPPING=1; STATUS= a one-line summary.
# Only the main process may notify (NotifyAccess=main, the default): notify
# scripts the daemon runs cannot speak for it.
Type=notify
# The configuration file and extra flags; /etc/default/pykeepalived may set
# KEEPALIVED_CONF=/path and DAEMON_ARGS="-D --http-listen 127.0.0.1:9650".
Environment=KEEPALIVED_CONF=/etc/keepalived/keepalived.conf
EnvironmentFile=-/etc/default/pykeepalived
# --dont-fork: systemd supervises the process itself (as Debian's
# keepalived.service does); the log (stderr with --dont-fork) goes to the journal.
ExecStart={exec} --dont-fork --use-file=${{KEEPALIVED_CONF}} $DAEMON_ARGS
# SIGHUP reloads: unchanged VRRP instances keep their state and VIPs
# (preview it first with `pykeepalived reload --dry-run`).
ExecReload=/bin/kill -HUP $MAINPID
# WATCHDOG=1 comes from the VRRP engine's own loop every WatchdogSec/2: if
# that loop wedges (adverts would stop too), systemd kills and restarts us.
WatchdogSec=10s
Restart=on-failure
RestartSec=2s
# SIGTERM to the daemon only: it sends priority-0 adverts, removes its VIPs
# and routes and runs notify_stop scripts, which must not be killed with it;
# whatever is left after TimeoutStopSec gets SIGKILL.
KillMode=mixed
# The daemon's own shutdown budget is 10 s (+ 8 s to drain route removals).
TimeoutStopSec=30s
# The status socket's directory (`pykeepalived status` reads it).
RuntimeDirectory=pykeepalived
RuntimeDirectoryPreserve=yes

# Hardening that leaves VRRP, IPVS and user scripts working:
# - no ProtectKernelTunables: use_vmac and IPVS write /proc/sys/net;
# - no ProtectKernelModules: IPVS may need the ip_vs module loaded;
# - no PrivateTmp: SIGUSR1/SIGUSR2 dumps go to the host's /tmp, where
#   keepalived's exporters read them;
# - no CapabilityBoundingSet/PrivateNetwork/RestrictNamespaces: VRRP needs
#   CAP_NET_RAW and CAP_NET_ADMIN in the host's network namespace, and
#   notify/track scripts run as root or script_user like keepalived's;
# - ProtectSystem=true, not full/strict: scripts may write under /etc.
ProtectSystem=true
ProtectHome=read-only
ProtectControlGroups=yes
ProtectClock=yes
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
# VRRP: AF_INET/AF_INET6 raw sockets; GARP/NA: AF_PACKET; addresses, routes
# and IPVS: AF_NETLINK; status socket and syslog: AF_UNIX.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET

[Install]
WantedBy=multi-user.target
"""


def render_unit(exec_path: str) -> str:
    return UNIT_TEMPLATE.format(exec=exec_path)


def _default_exec() -> str:
    """The pykeepalived console script next to this Python (venv or system)."""
    here = Path(sys.executable).with_name("pykeepalived")
    if here.exists():
        return str(here)
    found = next(
        (
            Path(d) / "pykeepalived"
            for d in os.get_exec_path()
            if (Path(d) / "pykeepalived").exists()
        ),
        None,
    )
    return str(found) if found is not None else "/usr/local/bin/pykeepalived"


# -- talking to the daemon ------------------------------------------------------------


class Unreachable(Exception):
    """The daemon's status socket cannot be read."""


def query(path: str, request: str = "", timeout: float = 30.0) -> dict[str, Any]:
    """One exchange on the status socket: send ``request`` (a line), read JSON."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            if request:
                sock.sendall(request.encode() + b"\n")
            buf = b""
            while chunk := sock.recv(65536):
                buf += chunk
    except OSError as exc:
        raise Unreachable(f"cannot reach pykeepalived on {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(buf)
    except ValueError:
        raise Unreachable(f"{path}: not a pykeepalived status socket") from None
    if not isinstance(data, dict):
        raise Unreachable(f"{path}: not a pykeepalived status socket")
    return data


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        status = query(args.socket, "status")
    except Unreachable as exc:
        print(f"pykeepalived status: {exc}", file=sys.stderr)
        return HEALTH_UNREACHABLE
    code = health(status)
    if args.json:
        print(json.dumps({**status, "health": code, "problems": problems(status)}, indent=2))
    else:
        print(render_table(status))
    return code


def _cmd_reload(args: argparse.Namespace) -> int:
    if args.dry_run:
        path = os.path.abspath(args.file) if args.file else ""
        try:
            answer = query(args.socket, f"reload-preview {path}".rstrip())
        except Unreachable as exc:
            print(f"pykeepalived reload: {exc}", file=sys.stderr)
            return HEALTH_UNREACHABLE
        if "error" in answer or "config_files" not in answer:
            why = answer.get("error", "the daemon does not know reload-preview")
            print(f"pykeepalived reload: {why}", file=sys.stderr)
            return HEALTH_UNREACHABLE
        if args.json:
            print(json.dumps(answer, indent=2))
        else:
            from pykeepalived.core.shell.reloadplan import render

            print(render(answer))
        return HEALTH_OK if answer.get("ok") else HEALTH_PROBLEM
    if args.file:
        print(
            "pykeepalived reload: -f is for --dry-run; a reload re-reads the file "
            "the daemon was started with",
            file=sys.stderr,
        )
        return HEALTH_PROBLEM
    pid = read_pid(args.pid_file)
    if pid is None or not alive(pid):
        print(
            f"pykeepalived reload: no running daemon in pid file {args.pid_file}", file=sys.stderr
        )
        return HEALTH_UNREACHABLE
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to pykeepalived (pid {pid})")
    return HEALTH_OK


def _cmd_install_unit(args: argparse.Namespace) -> int:
    text = render_unit(args.exec or _default_exec())
    if args.stdout:
        sys.stdout.write(text)
        return 0
    target = Path(args.prefix) / "etc/systemd/system" / UNIT_NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        print(f"pykeepalived install-systemd-unit: {target}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    if args.prefix in ("", "/"):
        print("now: systemctl daemon-reload && systemctl enable --now pykeepalived")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pykeepalived")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser(
        "status",
        help="show the running daemon's instances, trackers and virtual servers",
        description="Exit status: 0 all as wanted, 1 something FAULT or down, "
        "2 the daemon cannot be reached.",
    )
    st.add_argument("--json", action="store_true", help="the status as JSON, for scripts")
    st.add_argument("--socket", default=DEFAULT_STATUS_SOCKET, metavar="PATH")
    st.set_defaults(func=_cmd_status)
    rl = sub.add_parser(
        "reload",
        help="send SIGHUP to the running daemon (or --dry-run: show what it would change)",
        description="Exit status: 0 done (or the preview is clean), 1 the new configuration "
        "has errors, 2 the daemon cannot be reached.",
    )
    rl.add_argument(
        "--dry-run",
        action="store_true",
        help="print what a SIGHUP would change; apply nothing",
    )
    rl.add_argument(
        "-f",
        "--use-file",
        dest="file",
        metavar="FILE",
        help=f"with --dry-run: the new configuration (default: the daemon's own, "
        f"usually {DEFAULT_CONF})",
    )
    rl.add_argument("--json", action="store_true", help="with --dry-run: the preview as JSON")
    rl.add_argument("-p", "--pid", dest="pid_file", default=DEFAULT_PID_FILE, metavar="FILE")
    rl.add_argument("--socket", default=DEFAULT_STATUS_SOCKET, metavar="PATH")
    rl.set_defaults(func=_cmd_reload)
    un = sub.add_parser(
        "install-systemd-unit",
        help=f"write {UNIT_NAME} (ExecStart: this pykeepalived)",
    )
    un.add_argument(
        "--prefix",
        default="/",
        metavar="DIR",
        help=f"root to install under: DIR/etc/systemd/system/{UNIT_NAME} (default /)",
    )
    un.add_argument("--exec", metavar="PATH", help="ExecStart program (default: this pykeepalived)")
    un.add_argument("--stdout", action="store_true", help="print the unit instead of writing it")
    un.set_defaults(func=_cmd_install_unit)
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    code: int = args.func(args)
    return code
