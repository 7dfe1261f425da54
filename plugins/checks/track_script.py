"""``vrrp_script`` / ``track_script``: a command run every ``interval``.

Grammar (keepalived.conf(5), "VRRP script(s)")::

    vrrp_script NAME {
        script <STRING>|<QUOTED-STRING>
        interval N          # seconds (to 1 ms, keepalived 2.3.2+), default 1
        timeout N           # seconds (to 1 ms), default: the interval
        weight N [reverse]  # -253..253, default 0 (FAULT after <fall> failures)
        rise N              # default 1
        fall N              # default 1
        user USER [GROUP]
        init_fail
    }

and ``track_script { NAME [weight N [reverse|noreverse]] }`` in
vrrp_instance and vrrp_sync_group.  Definitions land in
``Config.ext["vrrp_script"]`` (a dict name -> :class:`VrrpScript` after
:func:`~pykeepalived.core.tracking.check_track_references`).

Behaviour follows keepalived: one success is enough to leave the initial
state (unless ``init_fail``), then ``rise`` consecutive successes bring the
script up and ``fall`` consecutive failures take it down; a run that hits
the timeout is killed with its whole process group and counts as a failure;
a run still going when the next is due is not doubled.  Log lines are
keepalived's: ``VRRP_Script(NAME) succeeded``, ``VRRP_Script(NAME) failed
(exited with status 1)``, ``VRRP_Script(NAME) timed_out``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykeepalived.api import (
    UNKNOWN_PLACE,
    BlockSpec,
    Config,
    Context,
    GlobalDefs,
    Grammar,
    Invalid,
    Kw,
    Node,
    Place,
    RunAs,
    Script,
    ScriptSecurityError,
    Tracker,
    TrackStatus,
    WatchTracker,
    build_model,
    check_script,
    flag,
    hookimpl,
    integer,
    number,
    resolve_user,
    run_script,
    script,
    track_block_kw,
    weight_and_reverse,
)

log = logging.getLogger("pykeepalived.vrrp.script")


@dataclass
class VrrpScript:
    """One ``vrrp_script NAME { ... }`` block."""

    name: str
    place: Place = UNKNOWN_PLACE
    script: Script | None = None
    interval: float = 1.0
    #: None: the interval (keepalived's default timeout of 0 means "interval").
    timeout: float | None = None
    weight: int = 0
    reverse: bool = False
    rise: int = 1
    fall: int = 1
    user: tuple[str, str | None] | None = None
    init_fail: bool = False

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.interval

    @property
    def command(self) -> Script | None:
        return self.script


def _script_line(node: Node, ctx: Context) -> Script:
    """``script <STRING>|<QUOTED-STRING> ...``: the whole line is the command.

    Unlike notify scripts, keepalived takes every word after ``script`` as
    the command and its arguments (the user comes from ``user``); a single
    quoted string is split shell-like.
    """
    if len(node.args) == 1:
        return script(node, ctx)
    return Script(list(node.args), None, None, node.place)


def _user(node: Node, ctx: Context) -> tuple[str, str | None]:
    return node.args[0], node.args[1] if len(node.args) > 1 else None


#: keepalived 2.4.3 reads interval/timeout in ms up to (UINT_MAX / TIMER_HZ) * 1000.
_MAX_SECONDS = 4294.0


def _positive(node: Node, ctx: Context) -> float:
    """Seconds with up to 3 decimals (keepalived 2.3.2+: millisecond interval
    and timeout; 2.2.7 took whole seconds only).  More decimals are a
    warning and round half up to 1 ms, as keepalived's
    ``read_decimal_unsigned_strvec`` does."""
    text = node.args[0]
    value: float = number(0, _MAX_SECONDS)(node, ctx)
    _, dot, decimals = text.partition(".")
    if dot and len(decimals) > 3:
        ctx.warn(node.place, f"number '{text}' has too many decimal places")
        value = math.floor(value * 1000 + 0.5) / 1000
    if value == 0:
        ctx.warn(node.place, f"{node.keyword} must be greater than 0, setting to 1")
        return 1.0
    return value


def script_spec() -> BlockSpec:
    spec = BlockSpec("vrrp_script")
    spec.add(Kw("script", _script_line, 1, None))
    spec.add(Kw("interval", _positive, 1, 1))
    spec.add(Kw("timeout", _positive, 1, 1))
    spec.add(Kw("weight", weight_and_reverse(-253, 253), 1, 2))
    spec.add(Kw("rise", integer(1, 2**31 - 1), 1, 1))
    spec.add(Kw("fall", integer(1, 2**31 - 1), 1, 1))
    spec.add(Kw("user", _user, 1, 2))
    spec.add(Kw("init_fail", flag, 0, 1))
    return spec


def _vrrp_script(spec: BlockSpec) -> Callable[[Node, Context], VrrpScript]:
    def conv(node: Node, ctx: Context) -> VrrpScript:
        values: dict[str, Any] = build_model(spec, node, ctx)
        weight = values.pop("weight", (0, False))
        conf = VrrpScript(node.args[0], node.place, weight=weight[0], reverse=weight[1], **values)
        if conf.script is None:
            raise Invalid(f"No script set for vrrp_script {conf.name} - removing")
        if conf.user is not None:
            # Stored on the Script itself so that script security (-t) sees who runs it.
            conf.script.user, conf.script.group = conf.user
        return conf

    return conv


class ScriptTracker(WatchTracker):
    """Runs one vrrp_script on its interval; up/down with rise/fall."""

    family = "script"

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        self.global_defs = GlobalDefs()
        super().__init__(name, conf, on_change)
        c: VrrpScript = conf
        self.conf: VrrpScript = c
        # keepalived's result counter: up iff result >= rise; init: rise-1 ("one
        # success is enough"), init_fail: 0.
        self._result = 0 if c.init_fail else c.rise - 1
        if c.init_fail:
            self.pending = False
            self.status = TrackStatus(up=False, reason="init_fail")
        self._last_status: int | None = None
        self.runs = 0

    def initial_up(self) -> bool:
        return False

    def configure(self, config: Config) -> None:
        self.global_defs = config.global_defs

    def _resolve(self) -> RunAs | str:
        cmd = self.conf.command
        if cmd is None:
            return f"no script set for vrrp_script {self.name}"
        problem = check_script(cmd, self.global_defs)
        if problem is not None:
            return problem
        try:
            return resolve_user(cmd, self.global_defs)
        except ScriptSecurityError as exc:
            return str(exc)

    async def run(self) -> None:
        run_as = self._resolve()
        if isinstance(run_as, str):
            # keepalived disables an insecure or missing script; its trackers see it failed.
            log.error("VRRP_Script(%s) disabled: %s", self.name, run_as)
            self.settle(TrackStatus(up=False, reason=f"disabled: {run_as}"))
            await asyncio.Event().wait()
            return
        cmd = self.conf.command
        assert cmd is not None
        interval = self.conf.interval
        loop = asyncio.get_running_loop()
        next_run = loop.time()
        while True:
            started = time.monotonic()
            result = await run_script(cmd.argv, run_as=run_as, timeout=self.conf.effective_timeout)
            self.runs += 1
            self._record(
                result.returncode, result.timed_out, result.error, time.monotonic() - started
            )
            next_run += interval
            now = loop.time()
            if next_run < now:  # the run overran: skip the missed slots, as keepalived does
                next_run = now + (interval - (now - next_run) % interval)
            await asyncio.sleep(next_run - now)

    def _record(self, returncode: int | None, timed_out: bool, error: str, took: float) -> None:
        reason: str
        if timed_out:
            success, exit_type, reason = False, "timed_out", ""
        elif returncode is None:
            success, exit_type, reason = False, "failed", f"({error})" if error else ""
        elif returncode < 0:
            success, exit_type, reason = False, "failed", f"(due to signal {-returncode})"
        else:
            if returncode != self._last_status:
                log.info("Script `%s` now returning %d", self.name, returncode)
            self._last_status = returncode
            success = returncode == 0
            exit_type = "succeeded" if success else "failed"
            reason = "" if success else f"(exited with status {returncode})"
        rise, fall = self.conf.rise, self.conf.fall
        initial = self.pending
        if success:
            if self._result < rise - 1:
                self._result += 1
            elif self._result != rise + fall - 1:
                if self._result < rise:
                    log.info("VRRP_Script(%s) %s", self.name, exit_type)
                    self.settle(TrackStatus(up=True, reason=exit_type))
                self._result = rise + fall - 1
        else:
            if self._result > rise:
                self._result -= 1
            else:
                if self._result == rise or initial:
                    if reason:
                        log.info("VRRP_Script(%s) %s %s", self.name, exit_type, reason)
                    else:
                        log.info("VRRP_Script(%s) %s", self.name, exit_type)
                    self.settle(TrackStatus(up=False, reason=f"{exit_type} {reason}".strip()))
                self._result = 0
        if self.pending:
            # rise > 1 with init_fail, or nothing decided yet: still settle the first run.
            self.settle(TrackStatus(up=self._result >= rise, reason=exit_type))
        log.debug("VRRP_Script(%s) run took %.3fs, result %d", self.name, took, self._result)


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    spec = script_spec()
    grammar.add(
        "top",
        Kw(
            "vrrp_script",
            _vrrp_script(spec),
            1,
            1,
            block=spec,
            needs_block=True,
            field="vrrp_script",
            multiple=True,
        ),
    )
    grammar.add("vrrp_instance", track_block_kw("track_script", "script"))
    grammar.add("vrrp_sync_group", track_block_kw("track_script", "script"))


@hookimpl
def pykeepalived_register_trackers() -> dict[str, type[Tracker]]:
    return {"script": ScriptTracker}
