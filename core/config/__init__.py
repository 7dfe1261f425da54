"""keepalived.conf: preprocessing, grammar, typed model, semantics."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pykeepalived.core.config import semantics
from pykeepalived.core.config.errors import ConfigError, Diagnostic, Diagnostics, Place, Severity
from pykeepalived.core.config.grammar import Grammar, core_grammar
from pykeepalived.core.config.lexer import Line, Preprocessor
from pykeepalived.core.config.model import Config
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import Context, construct, parse_block
from pykeepalived.core.config.tree import build_tree

__all__ = [
    "Config",
    "ConfigError",
    "Diagnostic",
    "Diagnostics",
    "Grammar",
    "LoadResult",
    "Place",
    "Severity",
    "core_grammar",
    "default_config_id",
    "load",
    "load_text",
]


def default_config_id() -> str:
    """keepalived's default config id: the host name up to the first dot."""
    return socket.gethostname().split(".", 1)[0]


@dataclass
class LoadResult:
    config: Config
    diagnostics: Diagnostics
    tree: list[Node]

    @property
    def ok(self) -> bool:
        return not self.diagnostics.errors


def load(path: str, *, config_id: str | None = None, grammar: Grammar | None = None) -> LoadResult:
    """Read, parse and check a keepalived.conf file.  Never raises on bad input."""
    cid = config_id if config_id is not None else default_config_id()
    diag = Diagnostics()
    pre = Preprocessor(cid, diag)
    lines = pre.read_file(path)
    return _finish(lines, diag, cid, grammar, [path])


def load_text(
    text: str, *, name: str = "<string>", config_id: str = "", grammar: Grammar | None = None
) -> LoadResult:
    diag = Diagnostics()
    pre = Preprocessor(config_id, diag)
    lines = pre.read_text(text, name)
    return _finish(lines, diag, config_id, grammar, [name])


def _finish(
    lines: list[Line],
    diag: Diagnostics,
    cid: str,
    grammar: Grammar | None,
    files: list[str],
) -> LoadResult:
    g = grammar if grammar is not None else core_grammar()
    tree = build_tree(lines, g.top, diag)
    ctx = Context(diag, cid)
    values = parse_block(tree, g.top, ctx)
    cfg: Config = construct(Config, values, Place(files[0], 0))
    cfg.config_id = cid
    cfg.files = files
    semantics.apply(cfg, diag)
    return LoadResult(cfg, diag, tree)
