"""Diagnostics for keepalived.conf: every message carries FILE:LINE.

The parser never raises on bad input: problems are collected as
:class:`Diagnostic` objects so that one run reports all of them, each on its
own line, the way ``keepalived -t`` does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    #: Informational: an ignored or unsupported keyword; ``-t`` still passes.
    NOTICE = 0
    #: keepalived reports it and carries on; ``-t`` fails, as keepalived's does.
    WARNING = 1
    #: The configuration cannot be applied as written.
    ERROR = 2


@dataclass(frozen=True)
class Place:
    """Where a configuration item came from."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


UNKNOWN_PLACE = Place("<config>", 0)


@dataclass(frozen=True)
class Diagnostic:
    place: Place
    severity: Severity
    message: str
    #: The exit code keepalived 2.2.7 ``-t`` gives for this problem when it is
    #: not the usual 5 (failed include checks give 6).
    test_exit: int | None = None

    def __str__(self) -> str:
        kind = self.severity.name.lower()
        return f"{self.place}: {kind}: {self.message}"


@dataclass
class Diagnostics:
    """Collects warnings and errors of one configuration load."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, place: Place, message: str) -> None:
        self.items.append(Diagnostic(place, Severity.ERROR, message))

    def warning(self, place: Place, message: str, *, test_exit: int | None = None) -> None:
        self.items.append(Diagnostic(place, Severity.WARNING, message, test_exit))

    def notice(self, place: Place, message: str) -> None:
        self.items.append(Diagnostic(place, Severity.NOTICE, message))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def failing(self) -> list[Diagnostic]:
        """What makes ``-t`` fail: errors and warnings, not notices."""
        return [d for d in self.items if d.severity >= Severity.WARNING]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def __bool__(self) -> bool:
        return bool(self.items)


class ConfigError(Exception):
    """Raised by :func:`load` callers that want an exception; carries all errors."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for a close keyword, or ''."""
    import difflib  # only for a misspelt word: not loaded by a config that has none

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""
