"""FILE_CHECK: a real server's health (and weight) read from a track_file.

``FILE_CHECK { track_file NAME  weight N [reverse]  dynamic }`` reads the
integer in the file of ``track_file NAME`` (or, a pykeepalived extension,
``file PATH``).  Weight 0: any non-zero value is down.  Otherwise the value
times the weight (negated with ``reverse``) is the contribution; at -254 or
below the real server is down, and with ``dynamic`` the contribution is
added to the real server's weight.  The file is polled every second (the
track_file tracker of VRRP uses inotify; one second keeps this plugin small).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from pykeepalived.api import (
    BaseCheck,
    BlockSpec,
    Checker,
    CheckOptions,
    CheckResult,
    CheckTarget,
    Config,
    Context,
    Grammar,
    Invalid,
    Kw,
    Node,
    checker_kw,
    flag,
    hookimpl,
    parse_int,
    parse_strtol,
    string,
)

#: keepalived's fault threshold for tracked values (track_file, track_script).
WEIGHT_FAULT = -254


@dataclass
class FileOptions(CheckOptions):
    track_file: str | None = None
    file: str | None = None
    weight: tuple[int, bool] | None = None
    dynamic: bool = False

    def validate(self) -> None:
        if self.track_file is None and self.file is None:
            raise Invalid("FILE_CHECK has no track_file specified - ignoring")


def _weight(node: Node, ctx: Context) -> tuple[int, bool]:
    value = parse_int(node.args[0], -2147483647, 2147483647)
    rest = node.args[1:]
    if rest and rest[0] not in ("reverse", "noreverse"):
        raise Invalid(f"unexpected '{rest[0]}' (expected reverse)")
    return value, bool(rest) and rest[0] == "reverse"


def _file_keywords(spec: BlockSpec) -> None:
    spec.add(Kw("track_file", string, 1, 1))
    spec.add(Kw("file", string, 1, 1))
    spec.add(Kw("weight", _weight, 1, 2))
    spec.add(Kw("dynamic", flag, 0, 1))


def _parse(text: str) -> int | None:
    return parse_strtol(text)


class FileCheck(BaseCheck):
    keyword: ClassVar[str] = "FILE_CHECK"
    log_name: ClassVar[str] = "FILE_CHECK"
    fixed_delay_loop: ClassVar[float | None] = 1.0

    options: FileOptions

    def __init__(self, conf: Any, target: CheckTarget) -> None:
        super().__init__(conf, target)
        self.options = conf.options
        self.path = self.options.file
        weight, reverse = self.options.weight if self.options.weight is not None else (1, False)
        self.multiplier = -weight if reverse else weight
        self._weight_given = self.options.weight is not None

    def configure(self, config: Config) -> None:
        name = self.options.track_file
        if name is None:
            return
        defined = config.ext.get("track_file") or {}
        for tf in defined.values() if isinstance(defined, dict) else defined:
            if getattr(tf, "name", None) == name:
                self.path = getattr(tf, "file", None)
                if not self._weight_given:
                    w = int(getattr(tf, "weight", 1))
                    self.multiplier = -w if getattr(tf, "reverse", False) else w
                return
        raise ValueError(f"track_file {name} is not defined")

    @property
    def timeout(self) -> float:
        return 2.0

    async def check(self) -> CheckResult:
        assert self.path is not None
        value = await asyncio.to_thread(self._read)
        if self.multiplier == 0:
            return CheckResult(value == 0, f"value {value}")
        contribution = value * self.multiplier
        if contribution <= WEIGHT_FAULT:
            return CheckResult(False, f"value {value}")
        weight = self.real_server_weight + contribution if self.options.dynamic else None
        return CheckResult(True, f"value {value}", weight=weight)

    def _read(self) -> int:
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read(4096)
        except FileNotFoundError:
            return 0  # keepalived: a missing file reads as 0
        value = _parse(text)
        return value if value is not None else 0

    def success_line(self, result: CheckResult) -> str:
        return f"FILE_CHECK {self.path} for service {self.where} is up ({result.message})."

    def failure_line(self, result: CheckResult, retries: int) -> str:
        return f"FILE_CHECK {self.path} for service {self.where} is down ({result.message})."


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    grammar.add("real_server", checker_kw("FILE_CHECK", FileOptions, _file_keywords, common=False))


@hookimpl
def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
    return {"FILE_CHECK": FileCheck}
