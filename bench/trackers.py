#!/usr/bin/env python3
"""Tracker event -> VIP moved: pykeepalived beside keepalived 2.2.7.

Usage (root, network namespaces)::

    .venv/bin/python bench/trackers.py [--repeat N] [--cases script,process,...]

For every tracker kind of ``testing/scenarios.py`` (vrrp_script ``killall -0``
weight -60, a ``sh -c`` pidfile script with weight 0 -> FAULT,
vrrp_track_process, track_interface, track_file) the same keepalived.conf
runs on a pair of pykeepalived nodes (h1 tracked, priority 150; h2 priority
100) and on a pair of keepalived nodes (h3/h4) in one lab.  For each run it
times the tracker event (service killed, link down, file written) until the
VIP is on the peer ("away"), then the recovery until the VIP is back by
preemption ("back").  Each event comes at a random phase of the
one-second tick.  Runs are sequential so the two daemons never compete
for CPU.  Prints a side-by-side table of medians (min-max).  Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pykeepalived.testing.daemons import KEEPALIVED
from pykeepalived.testing.lab import Lab, requires_netns
from pykeepalived.testing.scenarios import Pair, tracker_cases

REPO = Path(__file__).resolve().parent.parent

KINDS = ("pyk", "ka")
LABELS = {"pyk": "pykeepalived", "ka": "keepalived"}


def run_once(lab: Lab, work: Path, case_name: str, kind: str, run: int) -> tuple[float, float]:
    case = tracker_cases()[case_name]
    hosts = (lab.hosts[0], lab.hosts[1]) if kind == "pyk" else (lab.hosts[2], lab.hosts[3])
    vrid, vip = (51, Lab.vip4(0)) if kind == "pyk" else (52, Lab.vip4(1))
    pair = Pair(lab, work / f"run{run}", case, kind=kind, hosts=hosts, vrid=vrid, vip=vip)
    try:
        pair.start(timeout=20)
        # Settle, then a random phase: tracker intervals and adverts tick once a
        # second, so a fixed delay would favour whichever daemon happens to be
        # in a lucky phase.
        time.sleep(0.5 + random.random())
        away = pair.move(case.fail, hosts[1], timeout=20)
        back = pair.move(case.recover, hosts[0], timeout=20)
        return away, back
    except AssertionError as exc:
        hints = [
            line.split(": ", 1)[-1]
            for line in pair.tracked.text().splitlines()
            if "Failed" in line or "error" in line.lower()
        ]
        raise RuntimeError(f"{exc}; tracked node says: {'; '.join(hints[:2]) or '-'}") from None
    finally:
        pair.stop()


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case and daemon")
    parser.add_argument(
        "--cases", default=",".join(tracker_cases()), help="comma-separated tracker cases"
    )
    parser.add_argument("--only", choices=KINDS, help="run one daemon only")
    args = parser.parse_args()
    reason = requires_netns()
    if reason is not None:
        print(f"needs network namespaces: {reason}", file=sys.stderr)
        return 3
    kinds = [args.only] if args.only else list(KINDS)
    if "ka" in kinds and not Path(KEEPALIVED).exists():
        print(f"{KEEPALIVED} not installed: pykeepalived only", file=sys.stderr)
        kinds.remove("ka")
    cases = [c for c in args.cases.split(",") if c]
    results: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    errors: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="pka-bench-trackers-") as tmp, Lab(4) as lab:
        for case in cases:
            for kind in kinds:
                away: list[float] = []
                back: list[float] = []
                for run in range(args.repeat):
                    try:
                        a, b = run_once(lab, Path(tmp) / case / kind, case, kind, run)
                    except (RuntimeError, TimeoutError, OSError) as exc:
                        errors[(case, kind)] = str(exc)
                        print(f"  {case:<13} {LABELS[kind]:<13} FAILED: {exc}")
                        break
                    away.append(a)
                    back.append(b)
                    print(
                        f"  {case:<13} {LABELS[kind]:<13} run {run + 1}: "
                        f"away {a:.2f}s back {b:.2f}s",
                        flush=True,
                    )
                results[(case, kind)] = (away, back)
    print()
    print("tracker event -> VIP on peer ('away') and recovery -> VIP back ('back'),")
    print(f"seconds, median (min-max) of {args.repeat} runs, advert_int 1, interval 1")
    head = f"{'case':<13}"
    for kind in kinds:
        head += f" | {LABELS[kind] + ' away':<22} | {LABELS[kind] + ' back':<22}"
    print(head)
    print("-" * len(head))
    for case in cases:
        row = f"{case:<13}"
        for kind in kinds:
            away, back = results.get((case, kind), ([], []))
            row += f" | {fmt(away):<22} | {fmt(back):<22}"
        print(row)
    for (case, kind), err in errors.items():
        print(f"note: {case} on {LABELS[kind]} failed: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
