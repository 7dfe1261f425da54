"""Build a tree of :class:`Node` from preprocessed lines.

keepalived's own parser is line based: one keyword and its arguments per
line.  Configs pasted through web pages often arrive flattened onto one line
(``global_defs { router_id X } vrrp_instance VI_1 { state MASTER ... }``),
which keepalived misreads.  We split such statements where the grammar says
a keyword has fewer arguments than the words on the line and a later word
is itself a keyword of the same block; a config written one statement per
line is never split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pykeepalived.core.config.errors import Diagnostics, Place
from pykeepalived.core.config.lexer import Line, Word
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import BlockSpec

#: keepalived.conf nests at most a few blocks (virtual_server > real_server >
#: HTTP_GET > url); deeper input is hostile or broken, and reading it
#: recursively would exhaust Python's stack (a RecursionError traceback).
MAX_DEPTH = 32


@dataclass
class _Tok:
    word: Word
    place: Place
    eol: bool  # last word of its physical line


@dataclass
class _Stream:
    toks: list[_Tok]
    pos: int = 0
    diag: Diagnostics = field(default_factory=Diagnostics)

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None


def build_tree(lines: Sequence[Line], root: BlockSpec | None, diag: Diagnostics) -> list[Node]:
    toks: list[_Tok] = []
    for line in lines:
        for i, w in enumerate(line.words):
            toks.append(_Tok(w, line.place, i == len(line.words) - 1))
    stream = _Stream(toks, 0, diag)
    nodes = _parse_body(stream, root, top=True)
    return nodes


def _parse_body(
    s: _Stream, spec: BlockSpec | None, top: bool = False, depth: int = 0
) -> list[Node]:
    nodes: list[Node] = []
    if depth > MAX_DEPTH:
        _skip_block(s)
        return nodes
    while True:
        tok = s.peek()
        if tok is None:
            return nodes
        if tok.word.is_close:
            if top:
                s.diag.error(tok.place, "unexpected '}' with no open block")
                s.pos += 1
                continue
            return nodes
        if tok.word.is_open:
            s.diag.error(tok.place, "'{' without a keyword before it")
            s.pos += 1
            _open_block(s, None, tok.place, depth)
            _expect_close(s, tok.place)
            continue
        statement = _collect(s)
        pieces = _split(statement, spec)
        if len(pieces) > 1:
            # keepalived reads one statement per line and ignores or misreads
            # the rest (keepalived 2.2.7 -t reports it); we read each piece
            # as its own line, and say so, so that -t fails as keepalived's does.
            s.diag.warning(
                pieces[1][1],
                f"'{pieces[1][0][0].text}' follows '{pieces[0][0][0].text}' on the same line: "
                "keepalived reads one statement per line and misreads this; "
                "pykeepalived reads them as separate lines",
            )
        for words, place, last in pieces:
            node = Node(words[0].text, [w.text for w in words[1:]], place, quoted=words[0].quoted)
            nodes.append(node)
            if last:
                nxt = s.peek()
                if nxt is not None and nxt.word.is_open:
                    s.pos += 1
                    child = spec.child_spec(node.keyword) if spec is not None else None
                    node.children = _open_block(s, child, nxt.place, depth)
                    _expect_close(s, nxt.place)


def _open_block(s: _Stream, spec: BlockSpec | None, opened: Place, depth: int) -> list[Node]:
    """The statements of the block whose '{' (at ``opened``) was just read."""
    if depth + 1 > MAX_DEPTH:
        s.diag.error(opened, f"blocks nested more than {MAX_DEPTH} deep; this block is ignored")
    return _parse_body(s, spec, depth=depth + 1)


def _skip_block(s: _Stream) -> None:
    """Move to the '}' closing the current block (or the end), iteratively."""
    level = 0
    while (tok := s.peek()) is not None:
        if tok.word.is_close:
            if level == 0:
                return
            level -= 1
        elif tok.word.is_open:
            level += 1
        s.pos += 1


def _expect_close(s: _Stream, opened: Place) -> None:
    tok = s.peek()
    if tok is None:
        s.diag.error(opened, "block opened here is never closed (missing '}')")
        return
    s.pos += 1


def _collect(s: _Stream) -> list[_Tok]:
    """Words of one statement: up to the end of the line, '{' or '}'."""
    out: list[_Tok] = []
    while True:
        tok = s.peek()
        if tok is None or tok.word.is_open or tok.word.is_close:
            return out
        out.append(tok)
        s.pos += 1
        if tok.eol:
            # A '{' on the next line still opens this statement's block.
            return out


def _split(toks: list[_Tok], spec: BlockSpec | None) -> list[tuple[list[Word], Place, bool]]:
    """Split a statement that holds several flattened ones."""
    words = [t.word for t in toks]
    places = [t.place for t in toks]
    if spec is None:
        return [(words, places[0], True)]
    out: list[tuple[list[Word], Place, bool]] = []
    i = 0
    while i < len(words):
        n = spec.statement_length(words, i)
        out.append((words[i : i + n], places[i], False))
        i += n
    last_words, last_place, _ = out[-1]
    out[-1] = (last_words, last_place, True)
    return out
