"""One statement of keepalived.conf: a keyword, its arguments, its place and its block."""

from __future__ import annotations

from dataclasses import dataclass

from pykeepalived.core.config.errors import Place


@dataclass
class Node:
    keyword: str
    args: list[str]
    place: Place
    children: list[Node] | None = None
    #: True when the statement was written as a quoted word (never a keyword).
    quoted: bool = False

    def to_text(self, indent: int = 0) -> str:
        pad = "    " * indent
        head = " ".join([self.keyword, *self.args])
        if self.children is None:
            return pad + head
        inner = "\n".join(c.to_text(indent + 1) for c in self.children)
        return f"{pad}{head} {{\n{inner}\n{pad}}}" if inner else f"{pad}{head} {{\n{pad}}}"
