"""``notify_action``: rebind or reload a service after a VRRP transition.

A pykeepalived extension of ``vrrp_instance`` (see docs/actions.md)::

    vrrp_instance VI_1 {
        ...
        notify_action master {
            systemd_reload haproxy.service     # systemctl reload UNIT
            systemd_restart nginx.service      # systemctl restart UNIT
            command "/usr/local/bin/rebind 192.0.2.100" [user [group]]
            delay 2                            # seconds after the event (default 0)
            timeout 20                         # seconds per step (default 30)
        }
        notify_action backup { systemd_reload haproxy.service }
    }

The state is one of master, backup, fault, stop, deleted.  Steps run in the
order written, each under ``timeout``, after ``delay``.  A ``command`` runs
like a notify script (its user, script security); systemctl runs as the
daemon.  If the instance changes state again while an action is still in its
delay, that action is cancelled (logged): only the latest transition acts.
Actions of one instance never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pykeepalived.api import (
    UNKNOWN_PLACE,
    Action,
    BlockSpec,
    Config,
    Context,
    EventKind,
    Grammar,
    Invalid,
    Kw,
    Node,
    Notifier,
    Place,
    Script,
    ScriptSecurityError,
    StateEvent,
    build_model,
    check_script,
    hookimpl,
    number,
    resolve_user,
    run_script,
    script,
)

log = logging.getLogger("pykeepalived.actions.service")

KEYWORD = "notify_action"
STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "DELETED")
DEFAULT_TIMEOUT = 30.0


@dataclass
class Step:
    """One thing to do: ``systemd_reload``, ``systemd_restart`` or ``command``."""

    kind: str
    argv: list[str]
    place: Place = UNKNOWN_PLACE
    #: For ``command``: who runs it (its user/group, else script_user rules).
    script: Script | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {' '.join(self.argv if self.kind == 'command' else self.argv[2:])}"


@dataclass
class ServiceAction:
    """One ``notify_action STATE { ... }`` block."""

    state: str
    place: Place = UNKNOWN_PLACE
    steps: list[Step] = field(default_factory=list)
    delay: float = 0.0
    timeout: float = DEFAULT_TIMEOUT


def _systemd(verb: str) -> Callable[[Node, Context], Step]:
    def conv(node: Node, ctx: Context) -> Step:
        return Step(f"systemd_{verb}", ["systemctl", verb, node.args[0]], node.place)

    return conv


def _command(node: Node, ctx: Context) -> Step:
    s = script(node, ctx)
    return Step("command", list(s.argv), node.place, s)


def _block_spec() -> BlockSpec:
    spec = BlockSpec(KEYWORD)
    spec.add(Kw("systemd_reload", _systemd("reload"), 1, 1, field="steps", multiple=True))
    spec.add(Kw("systemd_restart", _systemd("restart"), 1, 1, field="steps", multiple=True))
    spec.add(Kw("command", _command, 1, 3, field="steps", multiple=True))
    spec.add(Kw("delay", number(0, 3600), 1, 1))
    spec.add(Kw("timeout", number(0.001, 3600), 1, 1))
    return spec


def _converter(spec: BlockSpec) -> Callable[[Node, Context], ServiceAction]:
    def conv(node: Node, ctx: Context) -> ServiceAction:
        return _convert(spec, node, ctx)

    return conv


def _convert(spec: BlockSpec, node: Node, ctx: Context) -> ServiceAction:
    word = node.args[0].upper()
    if word not in STATES:
        raise Invalid(
            f"state '{node.args[0]}' is not one of {', '.join(s.lower() for s in STATES)}"
        )
    values = build_model(spec, node, ctx)
    steps: list[Step] = values.get("steps", [])
    if not steps:
        raise Invalid("needs at least one of systemd_reload, systemd_restart, command")
    return ServiceAction(
        word,
        node.place,
        steps,
        float(values.get("delay", 0.0)),
        float(values.get("timeout", DEFAULT_TIMEOUT)),
    )


def actions_of(obj: object) -> list[ServiceAction]:
    ext = getattr(obj, "ext", None) or {}
    found = ext.get(KEYWORD, [])
    return [a for a in found if isinstance(a, ServiceAction)]


class ServiceActionRunner(Action):
    name = "service"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._delaying: set[str] = set()
        longest = 0.0
        for vi in config.vrrp_instances:
            for a in actions_of(vi):
                longest = max(longest, a.timeout * len(a.steps))
                for step in a.steps:
                    if step.script is not None:
                        why = check_script(step.script, config.global_defs)
                        if why is not None:
                            log.error("(%s) %s: %s", vi.name, KEYWORD, why)
        # notify() only waits for the instance's previous action to finish.
        self.timeout = longest + 5.0

    def _matching(self, ev: StateEvent) -> list[ServiceAction]:
        vi = ev.subject if ev.subject is not None else self.config.instance(ev.name)
        return [a for a in actions_of(vi) if a.state == ev.state]

    def wants(self, event: StateEvent) -> bool:
        if event.kind is not EventKind.INSTANCE:
            return False
        return event.name in self._tasks or bool(self._matching(event))

    async def notify(self, event: StateEvent) -> None:
        name = event.name
        prev = self._tasks.get(name)
        if prev is not None and not prev.done():
            if name in self._delaying:
                log.info("(%s) %s cancelled: now %s", name, KEYWORD, event.state)
                prev.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await prev
        self._tasks.pop(name, None)
        todo = self._matching(event)
        if todo:
            self._tasks[name] = asyncio.get_running_loop().create_task(
                self._run(name, event.state, todo), name=f"action:{name}:{event.state}"
            )

    async def _run(self, name: str, state: str, todo: list[ServiceAction]) -> None:
        for action in todo:
            if action.delay > 0:
                self._delaying.add(name)
                try:
                    await asyncio.sleep(action.delay)
                finally:
                    self._delaying.discard(name)
            for step in action.steps:
                await self._step(name, state, step, action.timeout)

    async def _step(self, name: str, state: str, step: Step, timeout: float) -> None:
        run_as = None
        if step.script is not None:
            gd = self.config.global_defs
            why = check_script(step.script, gd)
            if why is not None:
                log.warning("(%s) %s %s refused: %s", name, KEYWORD, step.label, why)
                return
            try:
                run_as = resolve_user(step.script, gd)
            except ScriptSecurityError as exc:
                log.warning("(%s) %s %s refused: %s", name, KEYWORD, step.label, exc)
                return
        log.info("(%s) %s %s: %s", name, KEYWORD, state, step.label)
        result = await run_script(step.argv, run_as=run_as, timeout=timeout, keep_output=True)
        if result.timed_out:
            log.warning(
                "(%s) %s %s timed out after %gs - killed", name, KEYWORD, step.label, timeout
            )
        elif result.error:
            log.error("(%s) %s %s: %s", name, KEYWORD, step.label, result.error)
        elif result.returncode != 0:
            tail = result.output.strip().splitlines()[-1:] or [""]
            log.warning(
                "(%s) %s %s exited with status %s %s",
                name,
                KEYWORD,
                step.label,
                result.returncode,
                tail[0],
            )

    async def wait_idle(self) -> None:
        """Wait for every scheduled action (for tests)."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    spec = _block_spec()
    grammar.add(
        "vrrp_instance",
        Kw(KEYWORD, _converter(spec), 1, 1, block=spec, needs_block=True, multiple=True),
    )


@hookimpl
def pykeepalived_register_actions() -> dict[str, type[Notifier]]:
    return {"service": ServiceActionRunner}
