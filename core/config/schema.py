"""Declarative grammar of keepalived.conf blocks.

A :class:`BlockSpec` lists the keywords a block accepts (:class:`Kw`), each
with its argument count, a converter that turns the parsed :class:`Node`
into a value, and the model field it fills.  Core blocks are declared in
:mod:`.grammar`; plugins add keywords (``TCP_CHECK`` inside ``real_server``,
``vrrp_script`` at the top level, ...) through the
``pykeepalived_register_keywords`` hook, so the parser itself knows nothing
of checkers or trackers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykeepalived.core.config.errors import Diagnostics, Place, did_you_mean
from pykeepalived.core.config.lexer import Word
from pykeepalived.core.config.node import Node

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


#: Old spellings keepalived still accepts with a config error (so ``-t`` fails).
DEPRECATED: dict[str, str] = {"nb_get_retry": "retry"}


class Invalid(Exception):
    """A converter's complaint about a value; becomes FILE:LINE: message."""


@dataclass
class Context:
    """What converters may need besides the node."""

    diag: Diagnostics
    config_id: str = ""
    #: Values collected so far in the block being walked (global_defs merges
    #: with an earlier global_defs block through it).
    values: dict[str, Any] | None = None

    def warn(self, place: Place, msg: str) -> None:
        self.diag.warning(place, msg)


Converter = Callable[[Node, Context], Any]


@dataclass
class Kw:
    """One keyword of a block."""

    name: str
    convert: Converter
    min_args: int = 0
    #: None: the keyword takes the rest of the line.
    max_args: int | None = 0
    #: The block this keyword opens, if any.
    block: BlockSpec | None = None
    #: Whether a block must follow (True), may follow (None) or must not (False).
    needs_block: bool | None = False
    #: Model field to fill; defaults to the keyword with '-' turned to '_'.
    field: str | None = None
    #: Repeatable: values are appended to a list.
    multiple: bool = False
    #: The converter returns a list whose items extend the field's list
    #: (several ``track_*`` blocks all fill ``tracks``).
    extend: bool = False
    aliases: tuple[str, ...] = ()
    #: Who declared it ("core" or a plugin name), for duplicate errors.
    owner: str = "core"
    #: Recognised keepalived keyword that pykeepalived does not implement.
    unsupported: str | None = None

    @property
    def target(self) -> str:
        return self.field or self.name.replace("-", "_")


@dataclass
class ItemSpec:
    """A block whose body is a list of items (virtual_ipaddress, unicast_peer).

    ``options`` maps each option word to how many arguments it takes; a word
    that is neither an option nor an option's argument starts a new item,
    which is how flattened lists are split.  ``options=None``: one item a line.
    """

    parse: Callable[[Node, Context], Any]
    options: dict[str, int] | None = field(default_factory=dict)


class DuplicateKeyword(Exception):
    pass


@dataclass
class BlockSpec:
    name: str
    keywords: dict[str, Kw] = field(default_factory=dict)
    items: ItemSpec | None = None
    #: Build the model object from the collected values.
    model: Callable[..., Any] | None = None
    #: Keywords named by one or more arguments (``vrrp_instance NAME``).
    _aliases: dict[str, str] = field(default_factory=dict)

    def add(self, kw: Kw) -> Kw:
        for name in (kw.name, *kw.aliases):
            existing = self.lookup(name)
            if existing is not None:
                raise DuplicateKeyword(
                    f"keyword '{name}' in {self.name} is declared by both "
                    f"{existing.owner} and {kw.owner}"
                )
        self.keywords[kw.name] = kw
        for alias in kw.aliases:
            self._aliases[alias] = kw.name
        return kw

    def lookup(self, name: str) -> Kw | None:
        kw = self.keywords.get(name)
        if kw is None and name in self._aliases:
            kw = self.keywords[self._aliases[name]]
        return kw

    def child_spec(self, name: str) -> BlockSpec | None:
        if self.items is not None:
            return None
        kw = self.lookup(name)
        return kw.block if kw is not None else None

    def statement_length(self, words: Sequence[Word], i: int) -> int:
        """How many of ``words[i:]`` make up the statement starting at i."""
        rest = len(words) - i
        if self.items is not None:
            opts = self.items.options
            if opts is None:
                return rest
            j = i + 1
            while j < len(words) and words[j].text in opts:
                j += 1 + opts[words[j].text]
            return min(j - i, rest)
        kw = self.lookup(words[i].text) if not words[i].quoted else None
        if kw is None or kw.max_args is None:
            return rest
        j = i + 1
        while j < len(words):
            w = words[j]
            nargs = j - i - 1
            if nargs >= kw.min_args and not w.quoted and self.lookup(w.text) is not None:
                break
            j += 1
        return j - i


# ---------------------------------------------------------------------------
# Walking a block
# ---------------------------------------------------------------------------


def parse_block(nodes: list[Node] | None, spec: BlockSpec, ctx: Context) -> dict[str, Any]:
    """Convert the statements of one block into ``{field: value}``."""
    values: dict[str, Any] = {}
    if nodes is None:
        return values
    if spec.items is not None:
        items = []
        for node in nodes:
            try:
                items.append(spec.items.parse(node, ctx))
            except Invalid as exc:
                ctx.diag.error(node.place, f"{spec.name}: {exc}")
        values["items"] = items
        return values
    saved, ctx.values = ctx.values, values
    try:
        _walk(nodes, spec, ctx, values)
    finally:
        ctx.values = saved
    return values


def _walk(nodes: list[Node], spec: BlockSpec, ctx: Context, values: dict[str, Any]) -> None:
    for node in nodes:
        kw = spec.lookup(node.keyword) if not node.quoted else None
        if kw is None:
            hint = did_you_mean(node.keyword, spec.keywords)
            ctx.warn(node.place, f"unknown keyword '{node.keyword}' in {spec.name}{hint}")
            continue
        if node.keyword in DEPRECATED:
            ctx.warn(
                node.place,
                f"{node.keyword} is deprecated - please use '{DEPRECATED[node.keyword]}'",
            )
        if kw.unsupported is not None:
            ctx.diag.notice(
                node.place,
                f"'{node.keyword}' is not supported by pykeepalived ({kw.unsupported}); ignored",
            )
            continue
        if len(node.args) < kw.min_args:
            ctx.diag.error(
                node.place,
                f"'{node.keyword}' needs {kw.min_args} argument{'s' if kw.min_args > 1 else ''}",
            )
            continue
        if kw.max_args is not None and len(node.args) > kw.max_args:
            extra = " ".join(node.args[kw.max_args :])
            ctx.warn(node.place, f"'{node.keyword}': extra argument(s) '{extra}' ignored")
        if kw.needs_block is True and node.children is None:
            ctx.diag.error(node.place, f"'{node.keyword}' needs a {{ ... }} block")
            continue
        if kw.needs_block is False and node.children is not None:
            ctx.diag.error(node.place, f"'{node.keyword}' does not take a {{ ... }} block")
            continue
        try:
            value = kw.convert(node, ctx)
        except Invalid as exc:
            ctx.diag.error(node.place, f"{node.keyword}: {exc}")
            continue
        if kw.extend:
            values.setdefault(kw.target, []).extend(value)
        elif kw.multiple:
            values.setdefault(kw.target, []).append(value)
        else:
            values[kw.target] = value


def build_model(spec: BlockSpec, node: Node, ctx: Context, **extra: Any) -> Any:
    values = parse_block(node.children, spec, ctx)
    values.update(extra)
    if spec.model is None:
        return values
    return construct(spec.model, values, node.place)


def construct(model: Callable[..., Any], values: dict[str, Any], place: Place) -> Any:
    if dataclasses.is_dataclass(model):
        names = {f.name for f in dataclasses.fields(model)}
        if "place" in names:
            values = {**values, "place": place}
        ext = {k: v for k, v in values.items() if k not in names}
        values = {k: v for k, v in values.items() if k in names}
        if ext and "ext" in names:
            values["ext"] = ext
    return model(**values)


# ---------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------

BOOL_WORDS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


def flag(node: Node, ctx: Context) -> bool:
    """A keyword that switches something on, with keepalived's optional <BOOL>."""
    if not node.args:
        return True
    word = node.args[0].lower()
    if word not in BOOL_WORDS:
        raise Invalid(f"expected one of on|off|true|false|yes|no, got '{node.args[0]}'")
    return BOOL_WORDS[word]


def string(node: Node, ctx: Context) -> str:
    return node.args[0] if node.args else ""


def words(node: Node, ctx: Context) -> list[str]:
    return list(node.args)


def integer(lo: int | None = None, hi: int | None = None) -> Converter:
    def conv(node: Node, ctx: Context) -> int:
        return parse_int(node.args[0], lo, hi)

    return conv


def parse_int(text: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise Invalid(f"'{text}' is not an integer") from None
    _check_range(value, lo, hi, text)
    return value


def number(lo: float | None = None, hi: float | None = None) -> Converter:
    def conv(node: Node, ctx: Context) -> float:
        return parse_float(node.args[0], lo, hi)

    return conv


def parse_float(text: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Invalid(f"'{text}' is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise Invalid(f"'{text}' is not a number")
    _check_range(value, lo, hi, text)
    return value


def _check_range(value: float, lo: float | None, hi: float | None, text: str) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        raise Invalid(f"{text} is out of range {bounds}")


def choice(*options: str, upper: bool = True) -> Converter:
    allowed = {o.upper() if upper else o for o in options}

    def conv(node: Node, ctx: Context) -> str:
        word = node.args[0].upper() if upper else node.args[0]
        if word not in allowed:
            raise Invalid(f"'{node.args[0]}' is not one of {', '.join(sorted(allowed))}")
        return word

    return conv


def ip_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise Invalid(f"'{text}' is not an IP address") from None


def ip(node: Node, ctx: Context) -> IPAddress:
    return ip_address(node.args[0])


def ip_interface(text: str) -> IPInterface:
    try:
        if "/" in text:
            addr, _, plen = text.partition("/")
            return ipaddress.ip_interface(f"{ip_address(addr)}/{int(plen)}")
        return ipaddress.ip_interface(ip_address(text))
    except ValueError:
        raise Invalid(f"'{text}' is not an address with optional /prefix") from None


def port(text: str) -> int:
    return parse_int(text, 0, 65535)


def sub(spec: BlockSpec) -> Converter:
    """Converter for a keyword whose block is parsed with ``spec``."""

    def conv(node: Node, ctx: Context) -> Any:
        return build_model(spec, node, ctx)

    return conv


@dataclass
class Script:
    """A command keepalived runs: argv, and who runs it."""

    argv: list[str]
    user: str | None = None
    group: str | None = None
    place: Place | None = None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def script(node: Node, ctx: Context) -> Script:
    """``KEYWORD <STRING>|<QUOTED-STRING> [username [groupname]]``.

    As in keepalived, the first word is the command line (quote it to pass
    arguments; single quotes inside group words with spaces) and any further
    words name the user and group to run it as.
    """
    if not node.args:
        raise Invalid("needs a script")
    try:
        argv = shlex.split(node.args[0])
    except ValueError as exc:
        raise Invalid(f"cannot split command '{node.args[0]}': {exc}") from None
    if not argv:
        raise Invalid("empty script")
    user = node.args[1] if len(node.args) > 1 else None
    group = node.args[2] if len(node.args) > 2 else None
    return Script(argv, user, group, node.place)


def weight_and_reverse(lo: int, hi: int) -> Converter:
    """``weight N [reverse]``."""

    def conv(node: Node, ctx: Context) -> tuple[int, bool]:
        try:
            value = int(node.args[0], 10)
        except ValueError:
            raise Invalid(f"'{node.args[0]}' is not an integer") from None
        if not lo <= value <= hi:
            raise Invalid(f"weight {value} must be in [{lo}, {hi}]")
        reverse = False
        if len(node.args) > 1:
            if node.args[1] == "reverse":
                reverse = True
            elif node.args[1] != "noreverse":
                raise Invalid(f"unknown weight option '{node.args[1]}'")
        return value, reverse

    return conv


def parse_strtol(text: str) -> int | None:
    """A number as keepalived reads tracked files: ``strtol(buf, NULL, 0)``.

    The leading number in any C base (``0x1f``, ``017``, ``-5``), 0 when there
    is none, None when it does not fit keepalived's int range."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)", text)
    if m is None:
        return 0
    sign = -1 if m.group(1) == "-" else 1
    digits = m.group(2)
    if digits.lower().startswith("0x"):
        value = int(digits, 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    value *= sign
    if not -(2**31) <= value <= 2**31:
        return None
    return value
