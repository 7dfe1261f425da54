"""Health checkers outside a daemon: for a checker plugin's unit tests, the
suite's and the micro-benchmarks.

* :func:`one_checker` -- the checker a ``real_server`` block configures, built
  by the same configuration and scheduler code the daemon runs;
* :func:`unanswered_tcp_port` -- a local TCP port whose SYNs get no answer
  (a listener with a full accept queue), for connect timeouts without
  sending anything off the machine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pykeepalived.core.plugin.base import Checker
    from pykeepalived.core.plugin.manager import PluginRegistry

__all__ = ["one_checker", "unanswered_tcp_port"]


def one_checker(
    block: str,
    address: str = "127.0.0.1",
    port: int = 80,
    vs_extra: str = "",
    *,
    registry: PluginRegistry | None = None,
) -> Checker:
    """The checker configured by ``block`` (e.g. ``"TCP_CHECK {\\n}"``) in one
    real server ``address``:``port`` of a virtual server with ``vs_extra``;
    ``registry`` defaults to the built-in plugins only."""
    from pykeepalived.core.config import load_text
    from pykeepalived.core.lvs.manager import NullBackend, VirtualServerManager
    from pykeepalived.core.plugin.manager import build_registry

    reg = registry or build_registry(autoload=False)
    # keepalived skips a real server of another family than its virtual server.
    vip = "2001:db8::100" if ":" in address else "192.0.2.100"
    text = (
        f"virtual_server {vip} 80 {{\n  lb_algo wlc\n  protocol TCP\n  delay_loop 1\n"
        f"  {vs_extra}\n  real_server {address} {port} {{\n{block}\n  }}\n}}\n"
    )
    result = load_text(text, grammar=reg.grammar())
    errors = [str(d) for d in result.diagnostics.errors]
    if errors:
        raise ValueError("; ".join(errors))
    manager = VirtualServerManager(
        result.config, reg.checkers, backend=NullBackend(), emit=lambda event: None
    )
    runs = manager.scheduler.runs
    if len(runs) != 1:
        raise ValueError(f"{len(runs)} checkers configured, not one")
    return runs[0].checker


@contextmanager
def unanswered_tcp_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on ``host`` that takes no more connections: a listener with a
    backlog of 0 whose queue a few unaccepted connections fill, so the
    kernel drops further SYNs and a connect waits for its timeout."""
    full = socket.socket()
    fillers: list[socket.socket] = []
    try:
        full.bind((host, 0))
        full.listen(0)
        port = int(full.getsockname()[1])
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex((host, port))
            fillers.append(c)
        time.sleep(0.05)  # the handshakes complete and fill the queue
        yield port
    finally:
        for c in fillers:
            c.close()
        full.close()
