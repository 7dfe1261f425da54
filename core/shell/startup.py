"""What the command line and the daemon share: exit codes and loading a configuration.

Exit codes follow keepalived 2.2 (measured against Debian's keepalived -t):
0 ok, 3 cannot run, 4 configuration errors at start-up, 5 ``-t`` found
configuration problems, 6 ``-t`` found scripts that would run insecurely.
"""

from __future__ import annotations

import argparse
import sys

from pykeepalived.core.config import LoadResult, default_config_id, load
from pykeepalived.core.plugin.manager import PluginError, PluginRegistry, build_registry

EXIT_OK = 0
EXIT_FATAL = 3
EXIT_CONFIG = 4
EXIT_CONFIG_TEST = 5
EXIT_SCRIPT_SECURITY = 6

DEFAULT_CONF = "/etc/keepalived/keepalived.conf"
#: keepalived 2.2.7's main pid file (RUNSTATEDIR "/keepalived.pid"), so that
#: ``kill -HUP $(cat /run/keepalived.pid)`` finds us.
DEFAULT_PID_FILE = "/run/keepalived.pid"
#: The status socket (``pykeepalived status`` reads it); the daemon makes the directory.
DEFAULT_STATUS_SOCKET = "/run/pykeepalived/status.sock"


def load_config(args: argparse.Namespace) -> tuple[LoadResult, PluginRegistry] | None:
    """Build the plugin registry and load ``args.file`` with its grammar.

    None when the plugins themselves cannot be loaded (the message is on
    stderr); configuration problems are in the LoadResult's diagnostics."""
    try:
        registry = build_registry(args.disable_plugin)
        grammar = registry.grammar()
    except PluginError as exc:
        print(f"pykeepalived: {exc}", file=sys.stderr)
        return None
    for failure in registry.failures:
        print(
            f"pykeepalived: plugin {failure.name} failed to load: {failure.error}", file=sys.stderr
        )
    cid = args.config_id if args.config_id is not None else default_config_id()
    result = load(args.file, config_id=cid, grammar=grammar)
    return result, registry
