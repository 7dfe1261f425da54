"""keepalived's signal dumps, in keepalived's formats, at keepalived's paths.

=================  ==============================  ===================================
signal             keepalived's name (--signum)    file (default; TMPDIR honoured)
=================  ==============================  ===================================
SIGUSR1            DATA                            /tmp/keepalived.data (VRRP) and
                                                   /tmp/keepalived_check.data (LVS)
SIGUSR2            STATS                           /tmp/keepalived.stats
SIGRTMIN+2         JSON                            /tmp/keepalived.json
SIGRTMAX-1         STATS_CLEAR                     /tmp/keepalived.stats, then zeroed
=================  ==============================  ===================================

The layouts are keepalived 2.2.7's (``vrrp_print.c``, ``vrrp_json.c``,
``dump_vrrp`` in ``vrrp_data.c``, ``dump_global_data``, ``dump_vs``/``dump_rs``
in ``check_data.c``), line names and indentation included, because tools
parse them: the Prometheus exporters read ``VRRP Instance = ``, ``State = ``,
``Wantstate = ``, ``Interface = ``, ``Virtual Router ID = ``, ``Gratuitous ARP
delay = ``, the ``Virtual IP`` list and the ``VRRP Script`` blocks of the data
dump, every line of the stats dump and the ``data``/``stats`` objects of the
JSON dump.  Lines about keepalived internals pykeepalived does not have
(socket pool, file descriptors, netlink buffer sizes, process priorities,
the interface table) are left out; see docs/operations.md.

Differences from keepalived 2.2.7, on purpose:

* secrets (``auth_pass``, the SMTP password) are shown as ``********``, as
  keepalived 2.4 does (2.2.7 prints the password);
* every file is written in full to a temporary file in the same directory
  and then renamed (keepalived renames the empty file first, so a reader may
  see it half-written), mode 0600 as with keepalived's default umask;
* ``stats_dump_file`` and ``json_dump_file`` (keepalived 2.3.3+) are honoured:
  keepalived up to 2.4.3 parses them but still writes ``keepalived.stats`` and
  ``keepalived.json`` in its temporary directory.

Rendering is pure (configuration and status in, text out); :func:`write_atomic`
does the I/O.  The daemon gathers the status and calls them.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pykeepalived.core.config.model import (
    Config,
    GlobalDefs,
    RealServer,
    SyncGroup,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
)
from pykeepalived.core.config.schema import Script
from pykeepalived.core.config.trackrefs import definitions
from pykeepalived.core.scripts import ScriptSecurityError, resolve_user
from pykeepalived.core.vrrp.stats import STATS_FIELDS

#: keepalived's temporary directory when $TMPDIR is unset or not absolute
#: (KA_TMP_DIR, lib/utils.c set_tmp_dir).
KA_TMP_DIR: Final = "/tmp"
MASK: Final = "********"

#: keepalived's state numbers (vrrp.h VRRP_STATE_*), as its JSON prints them.
STATE_NUMBERS: Final[Mapping[str, int]] = {
    "INIT": 0,
    "BACKUP": 1,
    "MASTER": 2,
    "FAULT": 3,
    "DELETED": 97,
    "STOP": 98,
}


# -- signals ----------------------------------------------------------------------
# -- paths ------------------------------------------------------------------------
def tmp_dir(env: Mapping[str, str] | None = None) -> str:
    """keepalived's temporary directory: $TMPDIR if absolute, else /tmp."""
    value = (os.environ if env is None else env).get("TMPDIR", "")
    return value if value.startswith("/") else KA_TMP_DIR


@dataclass(frozen=True, slots=True)
class DumpPaths:
    data: str
    check_data: str
    stats: str
    json: str

    @classmethod
    def from_config(cls, gd: GlobalDefs, env: Mapping[str, str] | None = None) -> DumpPaths:
        tmp = tmp_dir(env)
        return cls(
            data=_state_file(gd.state_dump_file, tmp, ""),
            check_data=_state_file(gd.state_dump_file, tmp, "_check"),
            stats=_plain_file(gd.stats_dump_file, tmp, "keepalived.stats"),
            json=_plain_file(gd.json_dump_file, tmp, "keepalived.json"),
        )


def _state_file(template: str | None, tmp: str, suffix: str) -> str:
    """keepalived 2.3.3+ ``open_dump_file``: ``state_dump_file`` is a template;
    a leading / gives the directory, a trailing / means "keepalived.data in
    it", and the process's suffix (``_check``) goes before the extension."""
    if template and template.startswith("/"):
        directory = template.rstrip("/") if template.endswith("/") else template.rsplit("/", 1)[0]
    else:
        directory = tmp
    if template and not template.endswith("/"):
        name = template.rsplit("/", 1)[-1]
    else:
        name = "keepalived.data"
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    return f"{directory or ''}/{stem}{suffix}{dot}{ext}"


def _plain_file(path: str | None, tmp: str, default: str) -> str:
    if not path:
        return f"{tmp}/{default}"
    if path.endswith("/"):
        return f"{path.rstrip('/')}/{default}"
    return path if path.startswith("/") else f"{tmp}/{path}"


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it, so
    a reader sees the old file or the whole new one.  Raises OSError."""
    directory = os.path.dirname(path) or "."
    import tempfile  # a dump's work, not every daemon's memory

    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- small formatters -----------------------------------------------------------------
def _onoff(value: bool | None) -> str:
    return "unset" if value is None else "on" if value else "off"


def _tf(value: bool | None) -> str:
    return "true" if value else "false"


def _g(value: float) -> str:
    """C's ``%g``."""
    return f"{value:g}"


def _ctime_us(ts: float) -> str:
    """keepalived's ``ctime_us_r``: ``Sun Dec  6 18:21:01.626057 2026``."""
    sec = math.floor(ts)
    usec = round((ts - sec) * 1e6)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    tm = time.localtime(sec)
    return f"{time.strftime('%a %b %e %H:%M:%S', tm)}.{usec:06d} {tm.tm_year}"


def _timeval(ts: float) -> str:
    sec = math.floor(ts)
    usec = round((ts - sec) * 1e6)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return f"{sec}.{usec:06d}"


def cmd_str(script: Script | None) -> str:
    """keepalived's ``cmd_str``: each word of the command in single quotes,
    the program as keepalived resolved it (PATH, then symbolic links: its
    ``/bin/true`` prints as ``'/usr/bin/true'`` on Debian)."""
    if script is None or not script.argv:
        return ""
    prog = script.argv[0]
    import shutil

    found = prog if "/" in prog else shutil.which(prog)
    words = [os.path.realpath(found) if found else prog, *script.argv[1:]]
    return " ".join(f"'{w}'" for w in words)


def format_vip(v: VirtualAddress, dev: str, installed: bool) -> str:
    """keepalived's ``format_ipaddress`` (vrrp_ipaddress.c)."""
    ip = v.address
    out = f"{ip.ip}/{ip.network.prefixlen}"
    if ip.version == 4 and v.brd is not None:
        out += f" brd {v.brd}"
    out += f" dev {v.dev or dev}"
    out += f" scope {v.scope or 'global'}"
    if v.label:
        out += f" label {v.label}"
    if v.peer is not None:
        out += f" peer {v.peer.ip}/{ip.network.prefixlen}"
    if v.home:
        out += " home"
    if v.nodad:
        out += " -nodad"
    if v.noprefixroute:
        out += " noprefixroute"
    if v.autojoin:
        out += " autojoin"
    if v.no_track:
        out += " no_track"
    if v.track_group:
        out += f" track_group {v.track_group}"
    if ip.version == 6:
        if v.preferred_lft == 0:
            out += " deprecated"
        elif v.preferred_lft is None:
            out += " preferred_lft forever"
        else:
            out += f" preferred_lft {v.preferred_lft}"
    if installed:
        out += " set"
    return out


# -- the status the daemon gathers --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a dump shows: the configuration and the live status
    (``VrrpManager.status()``, ``TrackerSet.status()``,
    ``VirtualServerManager.status()``) at one moment."""

    config: Config
    vrrp: Sequence[Mapping[str, Any]] = ()
    trackers: Sequence[Mapping[str, Any]] = ()
    lvs: Sequence[Mapping[str, Any]] = ()

    def instance(self, name: str) -> Mapping[str, Any]:
        return next((s for s in self.vrrp if s.get("name") == name), {})


def _ifindex(name: str | None) -> int:
    """The interface's index (the scope id keepalived prints with an IPv6
    multicast address); 0 when it is not there."""
    try:
        return socket.if_nametoindex(name or "")
    except OSError:
        return 0


def _router_id(gd: GlobalDefs) -> str:
    # keepalived defaults router_id to the host name (set_default_router_id)
    return gd.router_id or socket.gethostname()


def _garp(vi: VrrpInstance, gd: GlobalDefs) -> dict[str, float]:
    """An instance's GARP settings (the model leaves None for "global_defs")."""

    def pick(own: float | None, default: float | None, fallback: float) -> float:
        if own is not None:
            return own
        return default if default is not None else fallback

    return {
        "delay": pick(vi.garp_master_delay, gd.vrrp_garp_master_delay, 5),
        "repeat": pick(vi.garp_master_repeat, gd.vrrp_garp_master_repeat, 5),
        "refresh": pick(vi.garp_master_refresh, gd.vrrp_garp_master_refresh, 0),
        "refresh_repeat": pick(
            vi.garp_master_refresh_repeat, gd.vrrp_garp_master_refresh_repeat, 1
        ),
        # keepalived: the lower-priority GARP settings default to the master ones
        "lower_delay": pick(
            vi.garp_lower_prio_delay,
            gd.vrrp_garp_lower_prio_delay,
            pick(vi.garp_master_delay, gd.vrrp_garp_master_delay, 5),
        ),
        "lower_repeat": pick(
            vi.garp_lower_prio_repeat,
            gd.vrrp_garp_lower_prio_repeat,
            pick(vi.garp_master_repeat, gd.vrrp_garp_master_repeat, 5),
        ),
    }


def _uid_gid(script: Script, gd: GlobalDefs) -> tuple[int | str, int | str]:
    try:
        who = resolve_user(script, gd)
    except ScriptSecurityError:
        return ("?", "?")
    return (who.uid, who.gid)


def _script_uid_gid(conf: Any, gd: GlobalDefs) -> tuple[int | str, int | str]:
    script = getattr(conf, "script", None)
    argv = script.argv if isinstance(script, Script) else ["true"]
    user = getattr(conf, "user", None)
    if user:
        return _uid_gid(Script(argv, user[0], user[1]), gd)
    if isinstance(script, Script):
        return _uid_gid(script, gd)
    return _uid_gid(Script(argv), gd)


# -- keepalived.data: global definitions ----------------------------------------------------
def global_lines(config: Config, *, checker: bool = False) -> list[str]:
    """``dump_global_data``: the lines whose values pykeepalived knows."""
    gd = config.global_defs
    out = ["------< Global definitions >------"]
    w = out.append
    w(" Network namespace = (default)")
    w(" Network namespace ipvs = (main namespace)")
    w(f" Router ID = {_router_id(gd)}")
    if gd.smtp_server is not None:
        w(f" Smtp server = {gd.smtp_server[0]}")
        w(f" Smtp server port = {gd.smtp_server[1]}")
    if gd.smtp_helo_name:
        w(f" Smtp HELO name = {gd.smtp_helo_name}")
    if gd.smtp_server is not None:
        w(f" Smtp server connection timeout = {int(gd.smtp_connect_timeout)}")
    if gd.notification_email_from:
        w(f" Email notification from = {gd.notification_email_from}")
        w(" Email notification to:")
        out.extend(f"   {addr}" for addr in gd.notification_email)
    if gd.smtp_password is not None:
        w(f" Smtp password = {MASK}")
    w(f" Default smtp_alert = {_onoff(gd.smtp_alert)}")
    w(f" Default smtp_alert_vrrp = {_onoff(gd.smtp_alert_vrrp)}")
    w(f" Default smtp_alert_checker = {_onoff(gd.smtp_alert_checker)}")
    w(" Checkers log all failures = false")
    w(" No test config before reload")
    w(" Dynamic interfaces = false")
    if gd.no_email_faults:
        w(" Send emails for fault transitions = off")
    if not checker:
        w(f" Default interface = {gd.default_interface}")
    w(" Disable local IGMP = no")
    w(f" LVS flush = {_tf(gd.lvs_flush)}")
    flush = gd.lvs_flush_on_stop
    w(f" LVS flush on stop = {'disabled' if flush is None else 'VS' if flush else 'full'}")
    w(" FIFO write vrrp states on reload = false")
    w(" VRRP notify priority changes = false")
    w(f" VRRP IPv4 mcast group = {gd.vrrp_mcast_group4 or '224.0.0.18'}")
    w(f" VRRP IPv6 mcast group = {gd.vrrp_mcast_group6 or 'ff02::12'}")
    w(f" Gratuitous ARP delay = {int(gd.vrrp_garp_master_delay)}")
    w(f" Gratuitous ARP repeat = {gd.vrrp_garp_master_repeat}")
    w(f" Gratuitous ARP refresh timer = {int(gd.vrrp_garp_master_refresh)}")
    w(f" Gratuitous ARP refresh repeat = {gd.vrrp_garp_master_refresh_repeat}")
    lower_delay = gd.vrrp_garp_lower_prio_delay
    if lower_delay is None:
        lower_delay = gd.vrrp_garp_master_delay
    lower_repeat = gd.vrrp_garp_lower_prio_repeat
    if lower_repeat is None:
        lower_repeat = gd.vrrp_garp_master_repeat
    w(f" Gratuitous ARP lower priority delay = {int(lower_delay)}")
    w(f" Gratuitous ARP lower priority repeat = {lower_repeat}")
    w(f" Num adverts before down = {gd.vrrp_down_timer_adverts}")
    w(f" Send advert after receive lower priority advert = {_tf(not gd.vrrp_lower_prio_no_advert)}")
    w(f" Send advert after receive higher priority advert = {_tf(gd.vrrp_higher_prio_send_advert)}")
    w(f" Gratuitous ARP interval = {gd.vrrp_garp_interval:f}")
    w(f" Gratuitous NA interval = {gd.vrrp_gna_interval:f}")
    w(f" VRRP default protocol version = {gd.vrrp_version}")
    w(f" VRRP check unicast_src = {_tf(gd.vrrp_check_unicast_src)}")
    w(f" VRRP skip check advert addresses = {_tf(gd.vrrp_skip_check_adv_addr)}")
    w(f" VRRP strict mode = {_tf(gd.vrrp_strict)}")
    w(f" Script security {'enabled' if gd.enable_script_security else 'disabled'}")
    uid, gid = _uid_gid(Script(["true"]), gd)
    w(f" Default script uid:gid {uid}:{gid}")
    if gd.vrrp_startup_delay:
        w(f" vrrp_startup_delay = {_g(gd.vrrp_startup_delay)}")
    # keepalived 2.3.3+/2.4 lines, only when configured (2.2.7 has no such keywords)
    if gd.json_version != 1:
        w(f" json_version {gd.json_version}")
    if gd.state_dump_file:
        w(f" state dump file {gd.state_dump_file}")
    if gd.stats_dump_file:
        w(f" stats dump file {gd.stats_dump_file}")
    if gd.json_dump_file:
        w(f" json dump file {gd.json_dump_file}")
    return out


# -- keepalived.data: VRRP ---------------------------------------------------------------------
def _sync_group_of(config: Config, name: str) -> SyncGroup | None:
    return next((sg for sg in config.vrrp_sync_groups if name in sg.group), None)


def _auth_type(vi: VrrpInstance) -> int:
    """keepalived's auth_type number: 0 none, 1 PASS, 2 AH."""
    auth = vi.authentication
    if auth is None:
        return 0
    return {"PASS": 1, "AH": 2}.get(auth.auth_type.upper(), 0)


def _tracked_scripts(vi: VrrpInstance, scripts: Mapping[str, Any]) -> list[tuple[str, int, bool]]:
    """(name, weight, reverse) of each ``track_script`` (the script's weight
    unless the reference overrides it)."""
    out = []
    for ref in vi.tracks:
        if ref.kind != "script":
            continue
        conf = scripts.get(ref.name)
        weight = ref.weight if ref.weight is not None else int(getattr(conf, "weight", 0))
        reverse = ref.reverse or bool(getattr(conf, "reverse", False))
        out.append((ref.name, weight, reverse))
    return out


def instance_lines(vi: VrrpInstance, st: Mapping[str, Any], config: Config) -> list[str]:
    """``dump_vrrp`` for one instance (keepalived 2.2.7's order and names)."""
    gd = config.global_defs
    out: list[str] = []
    w = out.append
    version = vi.version or gd.vrrp_version
    state = str(st.get("state", "INIT"))
    w(f" VRRP Instance = {vi.name}")
    w(f"   VRRP Version = {version}")
    sg = _sync_group_of(config, vi.name)
    if sg is not None:
        w(f"   Sync group = {sg.name}")
    if vi.family == 6:
        w("   Using Native IPv6")
    w(f"   State = {state}")
    if state == "BACKUP" and st.get("master_src"):
        w(f"   Master router = {st['master_src']}")
        w(f"   Master priority = {st.get('master_priority') or 0}")
        if version == 3:
            w(f"   Master advert int = {float(st.get('master_adver_int', vi.advert_int)):.2f} sec")
    if vi.unicast_peer:
        w("   Flags:")
        w("     Using unicast")
    else:
        w("   Flags: none")
    w(f"   Wantstate = {st.get('wantstate', state)}")
    w("   Number of config faults = 0")
    w(
        "   Number of interface and track script faults = "
        f"{1 if st.get('in_fault') and state == 'FAULT' else 0}"
    )
    w("   Number of track scripts init = 0")
    last = float(st.get("last_transition") or 0.0)
    w(f"   Last transition = {_timeval(last)} ({_ctime_us(last)})")
    read_timeout = st.get("read_timeout")
    if read_timeout is None:
        w("   Read timeout = DISABLED")
    else:
        w(f"   Read timeout = {_timeval(read_timeout)} ({_ctime_us(read_timeout)})")
    down = float(st.get("master_down_interval") or 0.0)
    # keepalived computes it in whole microseconds, the skew rounded down
    w(f"   Master down timer = {math.floor(down * 1e6 + 1e-6)} usecs")
    w(f"   Interface = {st.get('interface') or vi.interface or 'not configured'}")
    if vi.dont_track_primary:
        w("   VRRP interface tracking disabled")
    if vi.skip_check_adv_addr:
        w("   Skip checking advert IP addresses")
    if vi.strict_mode:
        w("   Enforcing strict VRRP compliance")
    src = st.get("source")
    configured_src = vi.unicast_src_ip or vi.mcast_src_ip
    w(
        f"   Using src_ip = {src or '(none)'}"
        f"{' (from configuration)' if configured_src is not None else ''}"
    )
    if not vi.unicast_peer:
        if vi.family == 6:
            group = vi.mcast_dst_ip or gd.vrrp_mcast_group6 or "ff02::12"
            w(f"   Multicast address {group}, ifindex {_ifindex(vi.interface)}")
        else:
            group = vi.mcast_dst_ip or gd.vrrp_mcast_group4 or "224.0.0.18"
            w(f"   Multicast address {group}")
    garp = _garp(vi, gd)
    w(f"   Gratuitous ARP delay = {int(garp['delay'])}")
    w(f"   Gratuitous ARP repeat = {int(garp['repeat'])}")
    w(f"   Gratuitous ARP refresh = {int(garp['refresh'])}")
    w(f"   Gratuitous ARP refresh repeat = {int(garp['refresh_repeat'])}")
    w(f"   Gratuitous ARP lower priority delay = {int(garp['lower_delay'])}")
    w(f"   Gratuitous ARP lower priority repeat = {int(garp['lower_repeat'])}")
    adverts = vi.down_timer_adverts or gd.vrrp_down_timer_adverts
    w(f"   Down timer adverts = {adverts}")
    lower_no = vi.lower_prio_no_advert
    if lower_no is None:
        lower_no = gd.vrrp_lower_prio_no_advert
    higher = vi.higher_prio_send_advert
    if higher is None:
        higher = gd.vrrp_higher_prio_send_advert
    w(f"   Send advert after receive lower priority advert = {_tf(not lower_no)}")
    w(f"   Send advert after receive higher priority advert = {_tf(higher)}")
    w(f"   Virtual Router ID = {vi.virtual_router_id}")
    w(f"   Priority = {vi.priority}")
    effective = st.get("effective_priority", vi.priority)
    w(f"   Effective priority = {effective}")
    w(f"   Total priority = {effective}")
    if version == 2:
        w(f"   Advert interval = {int(vi.advert_int)} sec")
    else:
        w(f"   Advert interval = {round(vi.advert_int * 1000)} milli-sec")
    if state == "BACKUP" and version == 3:
        master_int = float(st.get("master_adver_int", vi.advert_int))
        w(f"   Master advert interval = {round(master_int * 1000)} milli-sec")
    w(f"   Accept = {'disabled' if vi.accept is False else 'enabled'}")
    w(f"   Preempt = {'enabled' if vi.preempt and not vi.nopreempt else 'disabled'}")
    if vi.preempt_delay:
        w(f"   Preempt delay = {_g(vi.preempt_delay)} secs")
    w("   Promote_secondaries = disabled")
    auth_type = _auth_type(vi)
    if auth_type:
        w(f"   Authentication type = {'IPSEC_AH' if auth_type == 2 else 'SIMPLE_PASSWORD'}")
        if auth_type != 2:
            w(f"   Password = {MASK}")
    elif version == 2:
        w("   Authentication type = none")
    installed = state == "MASTER"
    dev = vi.interface or ""
    if vi.virtual_ipaddress:
        w(f"   Virtual IP ({len(vi.virtual_ipaddress)}):")
        out.extend(f"     {format_vip(v, dev, installed)}" for v in vi.virtual_ipaddress)
    if vi.virtual_ipaddress_excluded:
        w("   Virtual IP Excluded :")
        out.extend(f"     {format_vip(v, dev, installed)}" for v in vi.virtual_ipaddress_excluded)
    if vi.unicast_peer:
        # unicast_ttl has no effect in pykeepalived: adverts go out with 255
        w("   Unicast TTL = 255")
        w(f"   Check unicast src : {'yes' if vi.check_unicast_src else 'no'}")
        w("   Unicast Peer :")
        out.extend(
            f"     {peer.address} min_ttl {peer.min_ttl} max_ttl {peer.max_ttl}"
            for peer in vi.unicast_peer
        )
        # keepalived's OLD_CHKSUM_COMPAT build option (Debian's has it)
        w("   Unicast checksum compatibility = no")
    if vi.virtual_routes:
        w("   Virtual Routes :")
        out.extend(f"     {' '.join(r.words)}" for r in vi.virtual_routes)
    if vi.virtual_rules:
        w("   Virtual Rules :")
        out.extend(f"     {' '.join(r.words)}" for r in vi.virtual_rules)
    interfaces = [ref for ref in vi.tracks if ref.kind == "interface"]
    if interfaces:
        w("   Tracked interfaces :")
        for ref in interfaces:
            w(f"     {ref.name} weight {ref.weight or 0}{' reverse' if ref.reverse else ''}")
    scripts = _tracked_scripts(vi, definitions(config, "script"))
    if scripts:
        w("   Tracked scripts :")
        for name, weight, reverse in scripts:
            w(f"     {name} weight {weight}{' reverse' if reverse else ''}")
    smtp = vi.smtp_alert if vi.smtp_alert is not None else bool(gd.smtp_alert_vrrp or gd.smtp_alert)
    w(f"   Using smtp notification = {'yes' if smtp else 'no'}")
    w(f"   Notify deleted = {'Deleted' if vi.notify_deleted is not None else 'Fault'}")
    for script, what in (
        (vi.notify_backup, "Backup"),
        (vi.notify_master, "Master"),
        (vi.notify_fault, "Fault"),
        (vi.notify_stop, "Stop"),
        (vi.notify_deleted, "Deleted"),
        (vi.notify, "Generic"),
        (vi.notify_master_rx_lower_pri, "Master rx lower pri"),
    ):
        if script is not None:
            uid, gid = _uid_gid(script, gd)
            w(f"   {what} state transition script = {cmd_str(script)}, uid:gid {uid}:{gid}")
    w("   Notify priority changes = false")
    return out


def _group_state(members: Iterable[str], snap: Snapshot) -> str:
    states = {str(snap.instance(m).get("state", "INIT")) for m in members}
    if "FAULT" in states:
        return "FAULT"
    if states == {"MASTER"}:
        return "MASTER"
    return "BACKUP"


def sync_group_lines(sg: SyncGroup, snap: Snapshot) -> list[str]:
    states = [str(snap.instance(m).get("state", "INIT")) for m in sg.group]
    out = [
        f" VRRP Sync Group = {sg.name}, {_group_state(sg.group, snap)}",
        f"   Num member fault {states.count('FAULT')}, num member init {states.count('INIT')}",
        "   VRRP member instances :",
        *(f"     {m}" for m in sg.group),
    ]
    smtp = sg.smtp_alert if sg.smtp_alert is not None else False
    out.append(f"   Using smtp notification = {'yes' if smtp else 'no'}")
    return out


def script_lines(name: str, conf: Any, snap: Snapshot) -> list[str]:
    """``dump_vscript``: the ``Status`` and ``State`` lines are what exporters read."""
    st = next((t for t in snap.trackers if t.get("kind") == "script" and t.get("name") == name), {})
    rise = int(getattr(conf, "rise", 1))
    fall = int(getattr(conf, "fall", 1))
    up = bool(st.get("up", False))
    weight = int(getattr(conf, "weight", 0))
    reverse = bool(getattr(conf, "reverse", False))
    timeout = getattr(conf, "timeout", None)
    out = [
        f" VRRP Script = {name}",
        f"   Command = {cmd_str(getattr(conf, 'script', None))}",
        f"   Interval = {int(getattr(conf, 'interval', 1))} sec",
        f"   Timeout = {int(timeout or 0)} sec",
        f"   Weight = {weight}{' reverse' if reverse else ''}",
        f"   Rise = {rise}",
        f"   Fall = {fall}",
        # keepalived's result counter settles at rise+fall-1 (up) or 0 (down)
        f"   Result = {rise + fall - 1 if up else 0}",
        "   Insecure = no",
        f"   Init state = {'INIT' if st.get('pending') else 'unknown'}",
        f"   Status = {'GOOD' if up else 'BAD'}",
        "   Script uid:gid = {}:{}".format(*_script_uid_gid(conf, snap.config.global_defs)),
        "   VRRP instances :",
        "   Tracking instances :",
    ]
    for vi in snap.config.vrrp_instances:
        for tname, tweight, treverse in _tracked_scripts(vi, {name: conf}):
            if tname == name:
                out.append(f"     {vi.name}, weight {tweight}{' reverse' if treverse else ''}")
    out.append("   State = idle")
    return out


def render_data(snap: Snapshot) -> str:
    """``/tmp/keepalived.data`` (SIGUSR1, the VRRP process's dump)."""
    config = snap.config
    out = global_lines(config)
    if config.static_ipaddress:
        out.append("------< Static Addresses >------")
        out.extend(
            f"     {format_vip(v, v.dev or config.global_defs.default_interface, True)}"
            for v in config.static_ipaddress
        )
    if config.static_routes:
        out.append("------< Static Routes >------")
        out.extend(f"     {' '.join(r.words)}" for r in config.static_routes)
    if config.static_rules:
        out.append("------< Static Rules >------")
        out.extend(f"     {' '.join(r.words)}" for r in config.static_rules)
    if config.vrrp_instances:
        out.append("------< VRRP Topology >------")
        for vi in config.vrrp_instances:
            out.extend(instance_lines(vi, snap.instance(vi.name), config))
    if config.vrrp_sync_groups:
        out.append("------< VRRP Sync groups >------")
        for sg in config.vrrp_sync_groups:
            out.extend(sync_group_lines(sg, snap))
    scripts = definitions(config, "script")
    if scripts:
        out.append("------< VRRP Scripts >------")
        for name, conf in scripts.items():
            out.extend(script_lines(name, conf, snap))
    return "\n".join(out) + "\n"


# -- keepalived_check.data ------------------------------------------------------------------------
_LB_KIND = {"NAT": "NAT", "DR": "DR", "TUN": "TUN"}


def _vs_title(vs: VirtualServer) -> str:
    if vs.group:
        return f" VS GROUP = {vs.group}"
    if vs.fwmark is not None:
        return f" VS FWMARK = {vs.fwmark}"
    return f" VS VIP = {vs.address}, VPORT = {vs.port or 0}"


def _rs_lines(rs: RealServer, vs: VirtualServer, st: Mapping[str, Any]) -> list[str]:
    alive = bool(st.get("alive", False))
    weight = int(st.get("weight", rs.weight))
    delay = rs.delay_loop if rs.delay_loop is not None else vs.delay_loop
    timeout = rs.connect_timeout if rs.connect_timeout is not None else vs.connect_timeout
    out = [
        "   ------< Real server >------",
        f"   RIP = {rs.address}, RPORT = {rs.port or 0}, WEIGHT = {weight} EFF WEIGHT = {weight}",
        f"   forwarding method = {_LB_KIND.get((rs.lvs_method or vs.lb_kind).upper(), 'NAT')}",
        f"   Alpha is {'ON' if (rs.alpha if rs.alpha is not None else vs.alpha) else 'OFF'}",
        f"   connection timeout = {_g(timeout if timeout is not None else 5)}",
        f"   connection limit range = {rs.lthreshold or 0} -> {rs.uthreshold or 0}",
        f"   Delay loop = {_g(delay)}",
    ]
    inhibit = rs.inhibit_on_failure if rs.inhibit_on_failure is not None else vs.inhibit_on_failure
    out.append(f"   Inhibit on failure is {'ON' if inhibit else 'OFF'}")
    smtp = rs.smtp_alert if rs.smtp_alert is not None else False
    out.append(f"   Using smtp notification = {'yes' if smtp else 'no'}")
    out.append(f"   initial weight = {rs.weight}")
    out.append(f"   effective weight = {weight}")
    out.append(f"   alive = {int(alive)}")
    return out


def render_check_data(snap: Snapshot) -> str:
    """``/tmp/keepalived_check.data`` (SIGUSR1, the checker process's dump)."""
    config = snap.config
    out = global_lines(config, checker=True)
    if config.virtual_servers:
        out.append("------< LVS Topology >------")
        for i, vs in enumerate(config.virtual_servers):
            st = snap.lvs[i] if i < len(snap.lvs) else {}
            out.append(" ------< Virtual server >------")
            out.append(_vs_title(vs))
            if vs.virtualhost:
                out.append(f"   VirtualHost = {vs.virtualhost}")
            out.append(f"   delay_loop = {_g(vs.delay_loop)}")
            out.append(f"   lvs_sched = {vs.lb_algo}")
            if vs.persistence_timeout:
                out.append(f"   persistence timeout = {vs.persistence_timeout}")
            out.append(f"   protocol = {vs.protocol.upper() or 'none'}")
            out.append(f"   alpha is {'ON' if vs.alpha else 'OFF'}")
            out.append(f"   omega is {'ON' if vs.omega else 'OFF'}")
            out.append(f"   Inhibit on failure is {'ON' if vs.inhibit_on_failure else 'OFF'}")
            out.append(f"   quorum = {vs.quorum}, hysteresis = {vs.hysteresis}")
            if vs.ha_suspend:
                out.append("   Using HA suspend")
            if vs.sorry_server is not None:
                ss = vs.sorry_server
                out.append(f"   sorry server = [{ss.address}]:{ss.port or 0}")
            out.append(f"   alive = {int(bool(st.get('quorum_up', False)))}")
            out.append(f"   quorum_state_up = {int(bool(st.get('quorum_up', False)))}")
            reals = list(st.get("real_servers", []))
            for j, rs in enumerate(vs.real_servers):
                out.extend(_rs_lines(rs, vs, reals[j] if j < len(reals) else {}))
    return "\n".join(out) + "\n"


# -- keepalived.stats -----------------------------------------------------------------------------
def render_stats(snap: Snapshot) -> str:
    """``/tmp/keepalived.stats`` (SIGUSR2; vrrp_print.c ``vrrp_print_stats``)."""
    out: list[str] = []
    for vi in snap.config.vrrp_instances:
        s = snap.instance(vi.name).get("stats", {})

        def n(key: str, s: Mapping[str, Any] = s) -> int:
            return int(s.get(key, 0))

        out += [
            f"VRRP Instance: {vi.name}",
            "  Advertisements:",
            f"    Received: {n('advert_rcvd')}",
            f"    Sent: {n('advert_sent')}",
            f"  Became master: {n('become_master')}",
            f"  Released master: {n('release_master')}",
            "  Packet Errors:",
            f"    Length: {n('packet_len_err')}",
            f"    TTL: {n('ip_ttl_err')}",
            f"    Invalid Type: {n('invalid_type_rcvd')}",
            f"    Advertisement Interval: {n('advert_interval_err')}",
            f"    Address List: {n('addr_list_err')}",
            "  Authentication Errors:",
            f"    Invalid Type: {n('invalid_authtype')}",
            f"    Type Mismatch: {n('authtype_mismatch')}",
            f"    Failure: {n('auth_failure')}",
            "  Priority Zero:",
            f"    Received: {n('pri_zero_rcvd')}",
            f"    Sent: {n('pri_zero_sent')}",
        ]
    return "".join(line + "\n" for line in out)


# -- keepalived.json --------------------------------------------------------------------------------
class _Fixed6(float):
    """A float keepalived prints with ``%f`` (``last_transition``)."""


def _json(value: Any) -> str:
    """keepalived's json_writer: compact, ``%g`` floats (so whole numbers have
    no ``.0``: exporters decode some of them into integers), ``/`` escaped."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, _Fixed6):
        return f"{float(value):f}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_json_str(k)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v) for v in value) + "]"
    raise TypeError(f"not JSON: {value!r}")


_ESCAPES = {
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\f": "\\f",
    "\b": "\\b",
    "\\": "\\\\",
    '"': '\\"',
    "/": "\\/",
}


def _json_str(text: str) -> str:
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def instance_json(vi: VrrpInstance, st: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """vrrp_json.c ``vrrp_json_data_dump``: keepalived's field names, order and types."""
    gd = config.global_defs
    garp = _garp(vi, gd)
    state = str(st.get("state", "INIT"))
    wantstate = str(st.get("wantstate", state))
    lower_no = vi.lower_prio_no_advert
    if lower_no is None:
        lower_no = gd.vrrp_lower_prio_no_advert
    higher = vi.higher_prio_send_advert
    if higher is None:
        higher = gd.vrrp_higher_prio_send_advert
    strict = vi.strict_mode if vi.strict_mode is not None else gd.vrrp_strict
    skip = vi.skip_check_adv_addr
    if skip is None:
        skip = gd.vrrp_skip_check_adv_addr
    smtp = vi.smtp_alert if vi.smtp_alert is not None else bool(gd.smtp_alert_vrrp or gd.smtp_alert)
    installed = state == "MASTER"
    dev = vi.interface or ""
    data: dict[str, Any] = {
        "iname": vi.name,
        "dont_track_primary": int(vi.dont_track_primary),
        "skip_check_adv_addr": int(bool(skip)),
        "strict_mode": int(bool(strict)),
        "vmac_ifname": st.get("vmac") or "",
        "ifp_ifname": st.get("interface") or vi.interface or "",
        "master_priority": int(st.get("master_priority") or 0),
        "last_transition": _Fixed6(float(st.get("last_transition") or 0.0)),
        "garp_delay": float(garp["delay"]),
        "garp_refresh": int(garp["refresh"]),
        "garp_rep": int(garp["repeat"]),
        "garp_refresh_rep": int(garp["refresh_repeat"]),
        "garp_lower_prio_delay": int(garp["lower_delay"]),
        "garp_lower_prio_rep": int(garp["lower_repeat"]),
        "lower_prio_no_advert": int(bool(lower_no)),
        "higher_prio_send_advert": int(bool(higher)),
        "vrid": int(vi.virtual_router_id or 0),
        "base_priority": vi.priority,
        "effective_priority": int(st.get("effective_priority", vi.priority)),
        "vipset": installed,
        "promote_secondaries": False,
        "adver_int": float(vi.advert_int),
        "master_adver_int": float(st.get("master_adver_int", vi.advert_int)),
        "accept": int(vi.accept is not False),
        "nopreempt": bool(vi.nopreempt or not vi.preempt),
        "preempt_delay": int(vi.preempt_delay),
        "state": STATE_NUMBERS.get(state, 0),
        "wantstate": STATE_NUMBERS.get(wantstate, 0),
        "version": int(vi.version or gd.vrrp_version),
        "smtp_alert": smtp,
        "notify_deleted": vi.notify_deleted is not None,
    }
    for key, script in (
        ("script_backup", vi.notify_backup),
        ("script_master", vi.notify_master),
        ("script_fault", vi.notify_fault),
        ("script_stop", vi.notify_stop),
        ("script_deleted", vi.notify_deleted),
        ("script", vi.notify),
        ("script_master_rx_lower_pri", vi.notify_master_rx_lower_pri),
    ):
        if script is not None:
            data[key] = cmd_str(script)
    # keepalived leaves an empty list out altogether
    lists = {
        "vips": [format_vip(v, dev, installed) for v in vi.virtual_ipaddress],
        "evips": [format_vip(v, dev, installed) for v in vi.virtual_ipaddress_excluded],
        "vroutes": [" ".join(r.words) for r in vi.virtual_routes],
        "vrules": [" ".join(r.words) for r in vi.virtual_rules],
        "track_ifp": [ref.name for ref in vi.tracks if ref.kind == "interface"],
        "track_script": [
            cmd_str(getattr(definitions(config, "script").get(name), "script", None))
            for name, _w, _r in _tracked_scripts(vi, definitions(config, "script"))
        ],
    }
    data.update({k: v for k, v in lists.items() if v})
    auth_type = _auth_type(vi)
    data["auth_type"] = auth_type
    if auth_type:
        data["auth_data"] = MASK
    return data


def render_json(snap: Snapshot) -> str:
    """``/tmp/keepalived.json``: json_version 1 is a list of ``{data, stats}``
    objects, json_version 2 wraps it as ``{"vrrp": [...]}`` (keepalived 2.4)."""

    items = []
    for vi in snap.config.vrrp_instances:
        st = snap.instance(vi.name)
        stats = st.get("stats", {})
        items.append(
            {
                "data": instance_json(vi, st, snap.config),
                "stats": {k: int(stats.get(k, 0)) for k in STATS_FIELDS},
            }
        )
    body: Any = items
    if snap.config.global_defs.json_version == 2:
        body = {"vrrp": items}
    return _json(body) + "\n"
