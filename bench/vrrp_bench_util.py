"""Shared pieces of bench/failover and bench/scale (run as root from the repo).

The daemons are started with the helpers the tests use
(``testing/daemons.py``): :class:`PyNode` for pykeepalived and
:class:`KaNode` for the reference keepalived.

:class:`Watcher` (``pykeepalived.testing.watch``) runs a small observer
inside a lab host: adverts heard and addresses added and removed, each
stamped with CLOCK_MONOTONIC, the bench's ``time.monotonic()``.  Failover
times are therefore measured from the kernel's point of view, not by
polling ``ip addr``.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from pykeepalived.testing.daemons import KaNode, Node, PyNode
from pykeepalived.testing.watch import Watcher

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["KaNode", "Node", "PyNode", "Watcher", "fmt_stats", "proc_tree", "require_root"]


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (keepalived forks a VRRP child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                data = fh.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def fmt_stats(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ±{statistics.stdev(values):.3f}"


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces): sudo .venv/bin/python bench/...")
