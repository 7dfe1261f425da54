"""Running configured scripts, as keepalived does, without blocking the loop.

Every script (track scripts, notify scripts, MISC_CHECK) runs:

* as its configured user/group, else ``script_user``, else the
  ``keepalived_script`` user if it exists, else root (keepalived.conf(5),
  SCRIPTS);
* in a new session (its own process group), so a timeout kills the script
  and everything it started;
* with its output discarded except a bounded tail, so a script that prints
  megabytes costs nothing.

Script security (``enable_script_security``): a script that would run as
root must not be writable, nor live in a directory writable, by a non-root
user; such a script is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import logging
import os
import pwd
import signal
import stat
from dataclasses import dataclass
from typing import Any

from pykeepalived.core.config.model import Config, GlobalDefs, SyncGroup, VrrpInstance
from pykeepalived.core.config.schema import Script
from pykeepalived.core.config.trackrefs import DEFINITION_KEYS

log = logging.getLogger("pykeepalived.scripts")

DEFAULT_SCRIPT_USER = "keepalived_script"
OUTPUT_TAIL = 4096
KILL_GRACE = 0.5


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    user: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0


@dataclass(frozen=True)
class ScriptResult:
    returncode: int | None
    timed_out: bool = False
    output: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class ScriptSecurityError(Exception):
    pass


def resolve_user(script: Script, gd: GlobalDefs) -> RunAs:
    """Who runs ``script``; raises ScriptSecurityError for unknown users."""
    user = script.user
    group = script.group
    if user is None and gd.script_user is not None:
        user, group = gd.script_user
    if user is None:
        try:
            pw = pwd.getpwnam(DEFAULT_SCRIPT_USER)
        except KeyError:
            return RunAs(0, 0, "root")
        return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ScriptSecurityError(f"unknown user '{user}' for script {script.command}") from None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ScriptSecurityError(
                f"unknown group '{group}' for script {script.command}"
            ) from None
    return RunAs(pw.pw_uid, gid, pw.pw_name)


def find_executable(argv0: str) -> str | None:
    if "/" in argv0:
        return argv0 if os.path.isfile(argv0) else None
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        path = os.path.join(d, argv0)
        if os.path.isfile(path):
            return path
    return None


def insecure_path(path: str) -> str | None:
    """Why a root-run script at ``path`` is unsafe, or None.

    keepalived's rule: the file and every directory above it must not be
    writable by a non-root user (owner non-root, or group/other writable).
    """
    real = os.path.realpath(path)
    parts = [real]
    d = os.path.dirname(real)
    while True:
        parts.append(d)
        if d == "/":
            break
        d = os.path.dirname(d)
    for p in parts:
        try:
            st = os.stat(p)
        except OSError:
            return f"cannot stat {p}"
        if st.st_uid != 0:
            return f"{p} is owned by uid {st.st_uid}"
        sticky = bool(st.st_mode & stat.S_ISVTX) and p != real
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            return f"{p} is writable by group or others"
    return None


def check_script(script: Script, gd: GlobalDefs) -> str | None:
    """keepalived's security check of one script; a message or None."""
    try:
        run_as = resolve_user(script, gd)
    except ScriptSecurityError as exc:
        return str(exc)
    exe = find_executable(script.argv[0])
    where = f"{script.place}: " if script.place is not None else ""
    if exe is None:
        return f"{where}WARNING - script '{script.argv[0]}' cannot be found"
    if run_as.is_root and gd.enable_script_security:
        why = insecure_path(exe)
        if why is not None:
            return f"{where}unsafe permissions found for script '{exe}': {why} - disabling"
    return None


def all_scripts(obj: Any) -> list[Script]:
    """Every Script in a configuration tree (plugins' options included)."""
    out: list[Script] = []
    seen: set[int] = set()

    def walk(o: Any) -> None:
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, Script):
            out.append(o)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            for f in dataclasses.fields(o):
                walk(getattr(o, f.name))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return out


def insecure_scripts(config: Config) -> list[str]:
    """What ``-t`` reports about scripts (exit 6 when non-empty)."""
    gd = config.global_defs
    scripts = all_scripts(config)
    problems: list[str] = []
    as_root = False
    for s in scripts:
        msg = check_script(s, gd)
        if msg is not None:
            problems.append(msg)
        with contextlib.suppress(ScriptSecurityError):
            as_root = as_root or resolve_user(s, gd).is_root
    if scripts and as_root and not gd.enable_script_security:
        problems.append(
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
        )
    return problems


def config_test_scripts(config: Config) -> tuple[list[str], list[str]]:
    """What ``-t`` says about scripts: (config problems, security violations).

    Measured against keepalived 2.2.7 ``-t``: a tracker script (vrrp_script,
    MISC_CHECK, ...) that cannot be found, has unsafe permissions or names an
    unknown user is disabled with a config error (exit 5); a notify script
    that cannot be found is skipped silently; the definitions of trackers no
    instance uses are not checked at all; and scripts that would run as root
    without ``enable_script_security`` are a security violation (exit 6,
    which wins over 5).
    """
    gd = config.global_defs
    owners: list[VrrpInstance | SyncGroup] = [*config.vrrp_instances, *config.vrrp_sync_groups]
    used = {(r.kind, r.name) for o in owners for r in o.tracks}
    unused: set[int] = set()
    for family, key in DEFINITION_KEYS.items():
        defs = config.ext.get(key)
        items = (
            defs.items()
            if isinstance(defs, dict)
            else ((getattr(d, "name", ""), d) for d in defs or [])
        )
        for name, conf in items:
            if (family, name) not in used:
                unused.update(id(s) for s in all_scripts(conf))
    tracked = {id(s) for s in all_scripts(config.ext)}
    tracked |= {
        id(s)
        for vs in config.virtual_servers
        for rs in vs.real_servers
        for s in all_scripts(rs.checkers)
    }
    problems: list[str] = []
    as_root = False
    for s in all_scripts(config):
        if id(s) in unused:
            continue
        if find_executable(s.argv[0]) is None and id(s) not in tracked:
            continue
        msg = check_script(s, gd)
        if msg is not None:
            problems.append(msg)
            continue
        with contextlib.suppress(ScriptSecurityError):
            as_root = as_root or resolve_user(s, gd).is_root
    violations: list[str] = []
    if as_root and not gd.enable_script_security:
        violations.append(
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
        )
    return problems, violations


async def run_script(
    argv: list[str],
    *,
    run_as: RunAs | None = None,
    timeout: float,
    env: dict[str, str] | None = None,
    keep_output: bool = False,
) -> ScriptResult:
    """Run a script to completion or until ``timeout``; never raises OSError."""
    kwargs: dict[str, Any] = {}
    if run_as is not None and not run_as.is_root and os.geteuid() == 0:
        kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if env:
        full_env.update(env)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if keep_output else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if keep_output else asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=full_env,
            cwd="/",
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        return ScriptResult(None, error=f"cannot execute {argv[0]}: {exc}")
    tail = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            del tail[:-OUTPUT_TAIL]

    reader = (
        asyncio.get_running_loop().create_task(drain(), name=f"script-output:{argv[0]}")
        if keep_output
        else None
    )
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        timed_out = False
    except TimeoutError:
        timed_out = True
        await kill_group(proc)
    finally:
        if proc.returncode is None:  # cancelled
            await asyncio.shield(kill_group(proc))
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return ScriptResult(proc.returncode, timed_out, tail.decode("utf-8", "replace"))


async def kill_group(proc: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process's whole group, SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except TimeoutError:
            continue
