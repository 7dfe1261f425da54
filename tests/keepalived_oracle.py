"""keepalived 2.2.7 as the oracle for configuration checks: run ``keepalived -t`` on a
file and read back its exit code and its per-line messages.

keepalived -t only parses and checks (no sockets, no interfaces touched).  `make test`
installs keepalived (APT_PACKAGES), so a missing one fails the test, never skips it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

KEEPALIVED = "/usr/sbin/keepalived"

#: keepalived's config messages: "(FILE: Line N) TEXT", or "(Line N) TEXT"
#: (keepalived 2.2.7 names no file for some, e.g. in global_defs of the
#: top-level file).
_LINE = re.compile(r"^\((?:(?P<file>.+): )?Line (?P<line>\d+)\) (?P<text>.*)$")


def keepalived_test(conf: Path, *args: str) -> tuple[int, list[tuple[int, str]]]:
    """``keepalived -t -f CONF ARGS``: its exit code and, for CONF itself, the
    (line, message) pairs it printed."""
    assert os.path.exists(KEEPALIVED), f"no {KEEPALIVED}: install keepalived (make setup)"
    proc = subprocess.run(
        [KEEPALIVED, "-t", "-f", str(conf.resolve()), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    messages = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = _LINE.match(line)
        if m and m["file"] in (str(conf.resolve()), None):
            messages.append((int(m["line"]), m["text"]))
    return proc.returncode, messages
