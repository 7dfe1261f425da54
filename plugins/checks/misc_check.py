"""MISC_CHECK: run a program; its exit status says whether the real server is up.

Exit 0: up.  Exit 1: down.  With ``misc_dynamic``, exit 2..255 means up with
weight ``status - 2`` (keepalived.conf(5)); without it any non-zero status is
down.  The script runs as ``user USER [GROUP]``, else script_user, under
``misc_timeout`` (default: delay_loop), its process group killed on timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pykeepalived.api import (
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    Config,
    Context,
    GlobalDefs,
    Grammar,
    Invalid,
    Kw,
    Node,
    Script,
    checker_kw,
    flag,
    hookimpl,
    integer,
    resolve_user,
    run_script,
    script,
)


@dataclass
class MiscOptions(CheckOptions):
    misc_path: Script | None = None
    misc_timeout: int | None = None
    misc_dynamic: bool = False
    user: tuple[str, str | None] | None = None

    def validate(self) -> None:
        if self.misc_path is None:
            raise Invalid("No script path has been specified for MISC_CHECKER - skipping")


def _user(node: Node, ctx: Context) -> tuple[str, str | None]:
    return node.args[0], (node.args[1] if len(node.args) > 1 else None)


def _misc_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("misc_path", script, 1, 3))
    spec.add(Kw("misc_timeout", integer(1, 86400), 1, 1))
    spec.add(Kw("misc_dynamic", flag, 0, 1))
    spec.add(Kw("user", _user, 1, 2))


class MiscCheck(BaseCheck):
    keyword: ClassVar[str] = "MISC_CHECK"
    log_name: ClassVar[str] = "MISC_CHECK"
    default_retry: ClassVar[int] = 0

    options: MiscOptions

    def __init__(self, conf: Any, target: Any) -> None:
        super().__init__(conf, target)
        self.options = conf.options
        self._gd = GlobalDefs()
        self.last_status: int | None = None

    def configure(self, config: Config) -> None:
        self._gd = config.global_defs

    @property
    def timeout(self) -> float:
        opts = self.options
        return float(opts.misc_timeout or opts.delay_loop or 60.0)

    @property
    def _script(self) -> Script:
        assert self.options.misc_path is not None
        s = self.options.misc_path
        if self.options.user is not None:
            return Script(s.argv, self.options.user[0], self.options.user[1], s.place)
        return s

    async def check(self) -> CheckResult:

        s = self._script
        result = await run_script(s.argv, run_as=resolve_user(s, self._gd), timeout=self.timeout)
        self.last_status = result.returncode
        if result.timed_out:
            return CheckResult(False, f"timed out after {self.timeout:g}s")
        if result.returncode is None:
            return CheckResult(False, result.error or "could not run")
        code = result.returncode
        if code == 0:
            return CheckResult(True, "succeeded")
        if self.options.misc_dynamic and 2 <= code <= 255:
            return CheckResult(True, f"succeeded (exit status {code})", weight=code - 2)
        return CheckResult(False, f"exited with status {code}")

    def _prefix(self) -> str:
        return f"Misc check for [{self.where} VS {self.target.virtual_server}] by [{self._script.command}]"

    def success_line(self, result: CheckResult) -> str:
        return f"{self._prefix()} {result.message}."

    def failure_line(self, result: CheckResult, retries: int) -> str:
        return f"{self._prefix()} failed ({result.message})."

    def attempt_failed_line(self, result: CheckResult) -> str:
        return self.failure_line(result, 0)


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add(
        "real_server", checker_kw("MISC_CHECK", MiscOptions, _misc_keywords, connection=False)
    )


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"MISC_CHECK": MiscCheck}
