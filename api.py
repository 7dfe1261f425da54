"""The public plugin API of pykeepalived: everything a plugin imports.

::

    from pykeepalived.api import hookimpl, Checker, CheckResult, checker_kw

A plugin (built-in or installed with pip) imports this module and nothing
else of pykeepalived.  Every other module (``pykeepalived.core.*``) is
internal and may change in any release; :data:`API_VERSION` is what a plugin
can rely on:

* the names in ``__all__`` below, and the signatures of the hooks in
  ``pykeepalived.core.plugin.hookspecs`` (documented in docs/plugins.md);
* a minor bump (1.0 -> 1.1) adds names or optional hook arguments;
* a major bump (1.x -> 2.0) removes or changes something.

``tests/test_public_api.py`` holds the recorded surface: a name that
disappears or a hook whose signature changes fails it until the recorded
surface, docs/plugins.md and :data:`API_VERSION` change together.

The async rule (pluggy has none): hook functions are plain functions; those
documented as "may return an awaitable" are awaited by the core one plugin at
a time under a timeout.  Plugin classes expose ``async`` methods that the
core calls in the same isolated way; a plugin that raises or hangs never
stops adverts or the state machine.
"""

from __future__ import annotations

from pykeepalived import hookimpl
from pykeepalived.core.config.errors import UNKNOWN_PLACE, Place
from pykeepalived.core.config.grammar import Grammar, items_kw, track_block_kw
from pykeepalived.core.config.model import (
    CheckerConf,
    Config,
    GlobalDefs,
    RealServer,
    SyncGroup,
    VirtualServer,
    VrrpInstance,
)
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import (
    BlockSpec,
    Context,
    Converter,
    Invalid,
    IPAddress,
    ItemSpec,
    Kw,
    Script,
    build_model,
    choice,
    flag,
    integer,
    ip,
    number,
    parse_block,
    parse_float,
    parse_int,
    parse_strtol,
    port,
    script,
    string,
    sub,
    weight_and_reverse,
    words,
)
from pykeepalived.core.labels import format_rs, format_vs, subject_of, virtual_server_of
from pykeepalived.core.lvs.checking import (
    BaseCheck,
    CheckOptions,
    checker_kw,
    common_keywords,
    make_socket,
    setting,
    sock_connect,
    tcp_connect,
)
from pykeepalived.core.lvs.http_client import (
    HTTP_PROTOCOLS,
    HttpAnswer,
    http_get,
    http_host,
    http_request,
    ssl_client_context,
)
from pykeepalived.core.plugin.base import (
    SPLIT_BRAIN,
    SPLIT_BRAIN_CLEARED,
    Action,
    Checker,
    CheckResult,
    CheckTarget,
    EventKind,
    Notifier,
    StateEvent,
    Tracker,
    TrackStatus,
    WatchTracker,
)
from pykeepalived.core.scripts import (
    RunAs,
    ScriptResult,
    ScriptSecurityError,
    check_script,
    kill_group,
    resolve_user,
    run_script,
)
from pykeepalived.core.tracking import InterfaceTrackConf

#: The version of this module's surface (see the module docstring).
API_VERSION = "1.0"

__all__ = [
    "API_VERSION",
    "HTTP_PROTOCOLS",
    "SPLIT_BRAIN",
    "SPLIT_BRAIN_CLEARED",
    "UNKNOWN_PLACE",
    "Action",
    "BaseCheck",
    "BlockSpec",
    "CheckOptions",
    "CheckResult",
    "CheckTarget",
    "Checker",
    "CheckerConf",
    "Config",
    "Context",
    "Converter",
    "EventKind",
    "GlobalDefs",
    "Grammar",
    "HttpAnswer",
    "IPAddress",
    "InterfaceTrackConf",
    "Invalid",
    "ItemSpec",
    "Kw",
    "Node",
    "Notifier",
    "Place",
    "RealServer",
    "RunAs",
    "Script",
    "ScriptResult",
    "ScriptSecurityError",
    "StateEvent",
    "SyncGroup",
    "TrackStatus",
    "Tracker",
    "VirtualServer",
    "VrrpInstance",
    "WatchTracker",
    "build_model",
    "check_script",
    "checker_kw",
    "choice",
    "common_keywords",
    "flag",
    "format_rs",
    "format_vs",
    "hookimpl",
    "http_get",
    "http_host",
    "http_request",
    "integer",
    "ip",
    "items_kw",
    "kill_group",
    "make_socket",
    "number",
    "parse_block",
    "parse_float",
    "parse_int",
    "parse_strtol",
    "port",
    "resolve_user",
    "run_script",
    "script",
    "setting",
    "sock_connect",
    "ssl_client_context",
    "string",
    "sub",
    "subject_of",
    "tcp_connect",
    "track_block_kw",
    "virtual_server_of",
    "weight_and_reverse",
    "words",
]
