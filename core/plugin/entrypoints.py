"""Plugin entry points, read from the installed distributions' metadata.

``importlib.metadata.entry_points()`` is the standard way, but importing it
pulls in ``email``, ``zipfile``, ``csv``, ``tempfile`` and friends: about
2.8 MB of RSS and 25 ms of start-up for a daemon that needs one INI section
of a few small files.  This reader does what it does for the common layout
(``*.dist-info`` / ``*.egg-info`` directories in the ``sys.path``
directories, the first distribution of a name wins, as
``importlib.metadata`` dedupes them) and hands over to ``importlib.metadata``
itself when ``sys.path`` holds anything else (a zip file, an egg), so an
unusual installation is read by the standard code, not misread by ours.
``tests/test_plugins.py`` checks both give the same entry points.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

_METADATA_DIR = re.compile(r"^(?P<name>[^-]+)(?:-[^/]*)?\.(?:dist|egg)-info$")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginEntry:
    """One ``name = module[:attr]`` line of a distribution's entry points."""

    name: str
    value: str
    dist: str  # the distribution's normalized name

    def load(self) -> object:
        module, _, attrs = self.value.partition(":")
        obj: object = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


def entry_points(group: str, path: Iterable[str] | None = None) -> list[PluginEntry]:
    """Every entry point of ``group``, in ``sys.path`` order of distributions."""
    entries = list(sys.path if path is None else path)
    dirs = [os.path.abspath(p or ".") for p in entries]
    if any(os.path.isfile(d) for d in dirs):
        return _standard(group)
    found: list[PluginEntry] = []
    seen: set[str] = set()
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:  # a path entry that does not exist (yet): nothing there
            continue
        for item in names:
            m = _METADATA_DIR.match(item)
            if m is None:
                continue
            dist = normalize(m["name"])
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(d, item, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:  # no entry points, or an .egg-info *file*
                continue
            found.extend(PluginEntry(n, v, dist) for n, v in _section(text, group))
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` pairs of ``[group]`` in an entry_points.txt (INI)."""
    out: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current != group or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.split("[", 1)[0].strip()  # "mod:attr [extra]": extras do not load
        out.append((name.strip(), value))
    return out


def _standard(group: str) -> list[PluginEntry]:
    from importlib import metadata  # only for layouts the reader above does not cover

    return [
        PluginEntry(ep.name, ep.value, normalize(ep.dist.name if ep.dist else ""))
        for ep in metadata.entry_points(group=group)
    ]
