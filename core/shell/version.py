"""``-v``/``--version`` and ``--signum``, as keepalived prints them.

Tools written for keepalived read both.  mehdy/keepalived-exporter
(internal/types/host/keepalived_host_collector_host.go) runs ``keepalived -v``
and takes the version from the second word of the first line of its
*stderr* ("Keepalived v2.2.7 (01/16,2022)"); below 1.3.8 it assumes there
is no ``--signum`` and gives up on the JSON signal.  It then runs
``keepalived --version`` and looks for ``--enable-json`` in the output before
using ``keepalived --signum=JSON``, whose *stdout* must be the number alone.

So the block keeps keepalived's shape: the version line, a ``configure
options:`` line with ``--enable-json`` and a ``Config options:`` line with
``JSON``.  Run as ``keepalived`` (a symbolic link named keepalived, see
docs/operations.md) the first line names the keepalived version whose
behaviour pykeepalived reproduces, so such tools see a keepalived they know.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final, TextIO

from pykeepalived import __version__

#: The keepalived release pykeepalived is checked against (tests use it as the oracle).
KEEPALIVED_COMPAT_VERSION: Final = "2.2.7"
#: keepalived's build-option words for what pykeepalived does.
CONFIG_OPTIONS: Final = "LVS VRRP VRRP_AUTH VRRP_VMAC JSON"


def invoked_as_keepalived(argv0: str | None = None) -> bool:
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return name == "keepalived"


def version_text(*, as_keepalived: bool = False) -> str:
    if as_keepalived:
        first = f"Keepalived v{KEEPALIVED_COMPAT_VERSION} (pykeepalived v{__version__})"
    else:
        first = f"pykeepalived v{__version__} (Keepalived v{KEEPALIVED_COMPAT_VERSION} compatible)"
    u = os.uname()
    return (
        f"{first}\n"
        "\n"
        "pykeepalived: keepalived re-implemented in Python\n"
        "\n"
        f"Running on {u.sysname} {u.release} {u.version}\n"
        "\n"
        "configure options: --enable-json --enable-vrrp-auth\n"
        "\n"
        f"Config options:  {CONFIG_OPTIONS}\n"
    )


def print_version(out: TextIO | None = None, *, as_keepalived: bool | None = None) -> int:
    """keepalived prints its version block on stderr and exits 0."""
    if as_keepalived is None:
        as_keepalived = invoked_as_keepalived()
    (out or sys.stderr).write(version_text(as_keepalived=as_keepalived))
    return 0


def signal_numbers() -> dict[str, int]:
    """``keepalived --signum=NAME`` for every name keepalived 2.2.7 (built with
    JSON) knows: the real-time ones are computed at run time from the C
    library's SIGRTMIN/SIGRTMAX (lib/signals.h: SIGJSON = SIGRTMIN+2,
    SIGSTATS_CLEAR = SIGRTMAX-1), as Python's signal module does."""
    return {
        "STOP": int(signal.SIGTERM),
        "RELOAD": int(signal.SIGHUP),
        "DATA": int(signal.SIGUSR1),
        "STATS": int(signal.SIGUSR2),
        "STATS_CLEAR": int(signal.SIGRTMAX) - 1,
        "JSON": int(signal.SIGRTMIN) + 2,
    }


def print_signum(name: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``--signum=SIGFUNC``: the number on stdout, exit 0; ``Unknown sigfunc``
    on stderr and exit 1 for a name keepalived does not know."""
    number = signal_numbers().get(name)
    if number is None:
        (err or sys.stderr).write(f"Unknown sigfunc {name}\n")
        return 1
    (out or sys.stdout).write(f"{number}\n")
    return 0
