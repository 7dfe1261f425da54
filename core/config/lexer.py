"""keepalived.conf preprocessing and tokenizing.

keepalived reads its configuration line by line.  Before a line is split into
words it goes through, in this order (keepalived.conf(5), "Conditional
configuration", "Parameter substitution", "Sequence blocks", "List blocks"):

1. ``@ID`` / ``@^ID`` conditional prefix against the config id;
2. ``$NAME=VALUE`` definitions (multi-line with a trailing ``\\``);
3. ``~SEQ(...)`` / ``~SEQx(...)`` / ``~LST(...)`` repetition;
4. ``$NAME`` / ``${NAME}`` substitution, recursive, and the predefined
   ``${_PWD} ${_INSTANCE} ${_RANDOM [MIN [MAX]]} ${_ENV NAME} ${_HASH} ${_BANG}``;
   a substituted line is processed again from step 1;
5. comments (``#`` or ``!`` outside quotes, anywhere on a line) are cut and
   the rest split into words, quotes removed; ``{`` and ``}`` are words of
   their own unless quoted;
6. ``include`` and its variants pull in other files, relative to the
   directory of the including file.

The output is a flat list of :class:`Line` objects, each keeping its
file:line, for the tree builder.
"""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pykeepalived.core.config.errors import Diagnostics, Place

MAX_INCLUDE_DEPTH = 32
MAX_EXPANSION_DEPTH = 32
MAX_SEQ_ITEMS = 100_000

#: include_check options (keepalived.conf(5), global_defs include_check).
INCLUDE_CHECKS = ("readable", "match", "wildcard_match", "brace_match")
#: The checks each include variant adds to the current include_check level.
INCLUDE_KEYWORDS: dict[str, frozenset[str]] = {
    "include": frozenset(),
    "includer": frozenset({"readable"}),
    "includem": frozenset({"match"}),
    "includew": frozenset({"wildcard_match"}),
    "includeb": frozenset({"brace_match"}),
    "includea": frozenset(INCLUDE_CHECKS),
}
#: keepalived 2.2.7 -t exits 6 when an include check fails (measured).
INCLUDE_CHECK_EXIT = 6

_DEF_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_PARAM_RE = re.compile(r"\$\{([^{}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)")
_REPEAT_RE = re.compile(r"^~(SEQx?|LST)\(")


@dataclass(frozen=True)
class Word:
    text: str
    quoted: bool = False

    @property
    def is_open(self) -> bool:
        return self.text == "{" and not self.quoted

    @property
    def is_close(self) -> bool:
        return self.text == "}" and not self.quoted


@dataclass(frozen=True)
class Line:
    words: tuple[Word, ...]
    place: Place


@dataclass
class Preprocessor:
    """Turns a configuration file into logical :class:`Line` objects."""

    config_id: str
    diag: Diagnostics
    params: dict[str, str] = field(default_factory=dict)
    _pwd: str = "."
    _depth: int = 0
    #: include_check level of the file being read (saved/restored per file).
    _include_check: frozenset[str] = frozenset()

    # -- files ---------------------------------------------------------
    def read_file(self, path: str, place: Place | None = None) -> list[Line]:
        return list(self._read_file(path, place))

    def read_text(self, text: str, name: str = "<string>") -> list[Line]:
        return list(self._read_lines(text.splitlines(), name))

    def _read_file(self, path: str, place: Place | None) -> Iterator[Line]:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            self.diag.error(place or Place(path, 0), f"cannot read {path}: {exc.strerror}")
            return
        text = data.decode("utf-8", errors="replace")
        old_pwd, old_check = self._pwd, self._include_check
        self._pwd = os.path.dirname(os.path.abspath(path))
        try:
            yield from self._read_lines(text.splitlines(), path)
        finally:
            self._pwd, self._include_check = old_pwd, old_check

    def _read_lines(self, raw_lines: list[str], name: str) -> Iterator[Line]:
        pending: tuple[str, list[str], Place] | None = None  # multi-line $NAME= \
        for lineno, raw in enumerate(raw_lines, start=1):
            place = Place(name, lineno)
            if pending is not None:
                pname, parts, _ = pending
                stripped = strip_comment(raw).rstrip()
                if not stripped.strip():
                    # keepalived.conf(5)'s nested example has blank lines
                    # inside a multi-line definition: they do not end it.
                    continue
                if stripped.endswith("\\"):
                    parts.append(stripped[:-1])
                    continue
                parts.append(stripped)
                self.params[pname] = "\n".join(p for p in parts if p.strip())
                pending = None
                continue
            # Comments go first, so that ${_HASH} and ${_BANG} substituted
            # later are plain characters (keepalived.conf(5)).
            text = strip_comment(raw).strip()
            if not text:
                continue
            # A multi-line definition: "$NAME= \" with nothing else after '='.
            text_cond = self._conditional(text)
            if text_cond is None:
                continue
            m = _DEF_RE.match(text_cond)
            if m and m.group(2).strip() == "\\":
                pending = (m.group(1), [], place)
                continue
            yield from self._process(text_cond, place, 0)
        if pending is not None:
            pname, parts, _ = pending
            self.params[pname] = "\n".join(p for p in parts if p.strip())

    # -- one logical line -------------------------------------------------
    def _conditional(self, text: str) -> str | None:
        """Apply an ``@ID``/``@^ID`` prefix; None if the line is excluded."""
        if not text.startswith("@"):
            return text
        negate = text.startswith("@^")
        body = text[2:] if negate else text[1:]
        ident, _, rest = body.partition(" ")
        if "\t" in ident:
            ident, _, tail = ident.partition("\t")
            rest = tail + " " + rest
        matches = ident == self.config_id
        if matches == negate:
            return None
        return rest.strip()

    def _process(self, text: str, place: Place, depth: int) -> Iterator[Line]:
        if depth > MAX_EXPANSION_DEPTH:
            self.diag.error(place, "parameter expansion nested too deeply (recursive definition?)")
            return
        if depth:
            cond = self._conditional(text.strip())
            if cond is None:
                return
            text = cond
        m = _DEF_RE.match(text)
        if m:
            self.params[m.group(1)] = m.group(2).strip()
            return
        if _REPEAT_RE.match(text):
            yield from self._repeat(text, place, depth)
            return
        # One level at a time: a multi-line value is split first, so that
        # definitions inside it ($RS_NUM=2) take effect before the lines
        # after them are substituted (keepalived.conf(5), nested example).
        substituted = self._substitute(text, place, once=True)
        if substituted != text:
            for part in substituted.split("\n"):
                if part.strip():
                    yield from self._process(part.strip(), place, depth + 1)
            return
        words = tokenize(text, place, self.diag, comments=False)
        if not words:
            return
        if words[0].text in INCLUDE_KEYWORDS and not words[0].quoted:
            yield from self._include(
                tokenize(text, place, Diagnostics(), split_braces=False, comments=False), place
            )
            return
        if words[0].text == "include_check" and not words[0].quoted:
            self._set_include_check(words[1:], place)
            return
        yield Line(tuple(words), place)

    # -- substitution -----------------------------------------------------
    def _substitute(self, text: str, place: Place, *, once: bool = False) -> str:
        if "$" not in text:
            return text

        def repl(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner is None:
                name = m.group(2)
                return self.params.get(name, m.group(0))
            value = self._predefined(inner.strip(), place)
            if value is not None:
                return value
            return self.params.get(inner, m.group(0))

        if once:
            return _PARAM_RE.sub(repl, text)
        result = text
        for _ in range(MAX_EXPANSION_DEPTH):
            new = _PARAM_RE.sub(repl, result)
            if new == result:
                return new
            result = new
        self.diag.error(place, "parameter substitution does not terminate (recursive definition?)")
        return result

    def _predefined(self, inner: str, place: Place) -> str | None:
        head, _, rest = inner.partition(" ")
        if head == "_PWD":
            return self._pwd
        if head == "_INSTANCE":
            return self.config_id
        if head == "_HASH":
            return "#"
        if head == "_BANG":
            return "!"
        if head == "_ENV":
            return os.environ.get(rest.strip(), "")
        if head == "_RANDOM":
            bounds = rest.split()
            try:
                lo = int(bounds[0]) if bounds else 0
                hi = int(bounds[1]) if len(bounds) > 1 else 32767
            except ValueError:
                self.diag.error(place, f"${{_RANDOM}} bounds must be integers: '{rest}'")
                return "0"
            if lo > hi:
                lo, hi = hi, lo
            return str(random.randint(lo, hi))
        return None

    # -- ~SEQ / ~LST --------------------------------------------------------
    def _repeat(self, text: str, place: Place, depth: int) -> Iterator[Line]:
        kind_m = _REPEAT_RE.match(text)
        assert kind_m is not None
        kind = kind_m.group(1)
        close = _matching_paren(text, kind_m.end() - 1)
        if close < 0:
            self.diag.error(place, f"~{kind}: missing ')'")
            return
        spec = self._substitute(text[kind_m.end() : close], place)
        rest = text[close + 1 :].strip()
        bindings = (
            _list_bindings(spec, place, self.diag)
            if kind == "LST"
            else _seq_bindings(spec, kind == "SEQx", place, self.diag)
        )
        saved = dict(self.params)
        for binding in bindings:
            self.params.update(binding)
            yield from self._process(rest, place, depth + 1)
        # The loop variables do not outlive the line (keepalived.conf(5) asks
        # users not to rely on it either way).
        for key in {k for b in bindings for k in b}:
            if key in saved:
                self.params[key] = saved[key]
            else:
                self.params.pop(key, None)

    # -- include ------------------------------------------------------------
    def _set_include_check(self, words: list[Word], place: Place) -> None:
        """``include_check [[+|-]OPTION ...]``; no option means all of them."""
        if not words:
            self._include_check = frozenset(INCLUDE_CHECKS)
            return
        checks = set(self._include_check) if words[0].text[:1] in "+-" else set()
        for w in words:
            sign, name = (w.text[0], w.text[1:]) if w.text[:1] in "+-" else ("+", w.text)
            if name not in INCLUDE_CHECKS:
                self.diag.warning(place, f"include_check: unknown option '{w.text}'")
            elif sign == "-":
                checks.discard(name)
            else:
                checks.add(name)
        self._include_check = frozenset(checks)

    def _include(self, words: list[Word], place: Place) -> Iterator[Line]:
        keyword = words[0].text
        if len(words) < 2:
            self.diag.error(place, f"{keyword}: missing file name")
            return
        if self._depth >= MAX_INCLUDE_DEPTH:
            self.diag.error(place, f"{keyword}: includes nested more than {MAX_INCLUDE_DEPTH} deep")
            return
        pattern = " ".join(w.text for w in words[1:])
        full = pattern if os.path.isabs(pattern) else os.path.join(self._pwd, pattern)
        checks = self._include_check | INCLUDE_KEYWORDS[keyword]
        paths: list[str] = []
        missing_alternative = False
        for expanded in expand_braces(full):
            if glob.has_magic(expanded):
                paths.extend(sorted(glob.glob(expanded)))
            elif os.path.exists(expanded):
                paths.append(expanded)
            else:
                missing_alternative = True
        braces = len(expand_braces(full)) > 1
        failed = False
        # keepalived 2.2.7's wording; plain `include` only logs (never a config error).
        if not paths:
            if glob.has_magic(full) and not braces:
                msg = f"No config files matched '{pattern}'."
                failed = "wildcard_match" in checks
            else:
                msg = f"Config files missing '{pattern}'."
                failed = "wildcard_match" in checks or ("match" in checks and not braces)
                failed = failed or ("brace_match" in checks and braces and missing_alternative)
        elif missing_alternative and braces:
            msg = f'Some config files missing: "{pattern}".'
            failed = "brace_match" in checks
        else:
            msg = ""
        if msg:
            if failed:
                self.diag.warning(place, f"{keyword}: {msg}", test_exit=INCLUDE_CHECK_EXIT)
            else:
                self.diag.notice(place, f"{keyword}: {msg}")
        self._depth += 1
        try:
            for path in paths:
                if not os.access(path, os.R_OK):
                    if "readable" in checks:
                        self.diag.warning(
                            place, f"{keyword}: cannot read '{path}'", test_exit=INCLUDE_CHECK_EXIT
                        )
                    else:
                        self.diag.notice(place, f"{keyword}: cannot read '{path}'")
                    continue
                if os.path.isdir(path):
                    continue
                yield from self._read_file(path, place)
        finally:
            self._depth -= 1


def _matching_paren(text: str, open_idx: int) -> int:
    depth = 0
    for i in range(open_idx, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _parse_number(text: str) -> int:
    return int(text.strip(), 0)


def _seq_bindings(spec: str, hexfmt: bool, place: Place, diag: Diagnostics) -> list[dict[str, str]]:
    parts = [p.strip() for p in spec.split(",")]
    name = parts[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not 2 <= len(parts) <= 4:
        diag.error(place, f"~SEQ: expected (var, [start, [step,]] end), got '({spec})'")
        return []
    try:
        nums = [_parse_number(p) for p in parts[1:]]
    except ValueError:
        diag.error(place, f"~SEQ: numbers expected in '({spec})'")
        return []
    if len(nums) == 1:
        end = nums[0]
        start = 1 if end > 0 else -1
        step = 1 if end >= start else -1
    elif len(nums) == 2:
        start, end = nums
        step = 1 if end >= start else -1
    else:
        start, step, end = nums
    if step == 0 or (step > 0 and start > end) or (step < 0 and start < end):
        return []
    count = (end - start) // step + 1
    if count > MAX_SEQ_ITEMS:
        diag.error(place, f"~SEQ: {count} repetitions is more than {MAX_SEQ_ITEMS}")
        return []
    return [
        {name: (f"{v:x}" if hexfmt else str(v))}
        for v in range(start, end + step // abs(step), step)
    ]


def _list_bindings(spec: str, place: Place, diag: Diagnostics) -> list[dict[str, str]]:
    spec = spec.strip()
    if spec.startswith("{"):
        groups = re.findall(r"\{([^{}]*)\}", spec)
        if len(groups) < 2:
            diag.error(place, f"~LST: expected ({{vars}}, {{values}}...), got '({spec})'")
            return []
        names = [n.strip() for n in groups[0].split(",")]
        out: list[dict[str, str]] = []
        for g in groups[1:]:
            values = [v.strip() for v in g.split(",")]
            if len(values) != len(names):
                diag.error(place, f"~LST: {{{g}}} does not have {len(names)} values")
                return []
            out.append(dict(zip(names, values, strict=True)))
        return out
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) < 2 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", parts[0]):
        diag.error(place, f"~LST: expected (var, value, ...), got '({spec})'")
        return []
    return [{parts[0]: v} for v in parts[1:]]


def expand_braces(pattern: str) -> list[str]:
    """csh-style brace expansion: ``a{b,c{d,e}}`` -> ``ab acd ace``."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    commas: list[int] = []
    for i in range(start, len(pattern)):
        ch = pattern[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if not commas:
                    head = pattern[: i + 1]
                    return [head + rest for rest in expand_braces(pattern[i + 1 :])]
                pieces = []
                prev = start + 1
                for c in [*commas, i]:
                    pieces.append(pattern[prev:c])
                    prev = c + 1
                out: list[str] = []
                for piece in pieces:
                    out.extend(expand_braces(pattern[:start] + piece + pattern[i + 1 :]))
                return out
        elif ch == "," and depth == 1:
            commas.append(i)
    return [pattern]


_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


def strip_comment(text: str) -> str:
    """``text`` up to its first ``#`` or ``!`` outside quotes."""
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "#!":
            return text[:i]
        i += 1
    return text


def tokenize(
    text: str,
    place: Place,
    diag: Diagnostics,
    *,
    split_braces: bool = True,
    comments: bool = True,
) -> list[Word]:
    """Split one logical line into words, as keepalived does.

    ``split_braces=False`` keeps ``{`` and ``}`` inside words (include
    patterns such as ``conf.d/{a,b}.conf``).
    """
    words: list[Word] = []
    buf: list[str] = []
    quoted = False
    in_word = False
    quote: str | None = None
    i = 0
    n = len(text)

    def flush() -> None:
        nonlocal buf, quoted, in_word
        if in_word:
            words.append(Word("".join(buf), quoted))
        buf, quoted, in_word = [], False, False

    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == quote:
                quote = None
            elif ch == "\\" and i + 1 < n:
                i += 1
                i = _escape(text, i, buf)
                continue
            else:
                buf.append(ch)
            i += 1
            continue
        if ch in "\"'":
            quote = ch
            quoted = in_word = True
        elif ch in "#!" and comments:
            break
        elif ch.isspace():
            flush()
        elif ch == "{" and buf and buf[-1] == "$" and "}" in text[i:]:
            # An undefined ${NAME} stays as it is (keepalived.conf(5)).
            end = text.index("}", i)
            buf.append(text[i : end + 1])
            i = end + 1
            continue
        elif ch in "{}" and split_braces:
            flush()
            words.append(Word(ch))
        else:
            buf.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        diag.error(place, f"unterminated quoted string (missing {quote})")
    flush()
    return words


def _escape(text: str, i: int, buf: list[str]) -> int:
    """Decode the escape whose letter is at text[i]; return the next index."""
    ch = text[i]
    if ch in _ESCAPES:
        buf.append(_ESCAPES[ch])
        return i + 1
    if ch in "01234567":
        j = i
        while j < len(text) and j < i + 3 and text[j] in "01234567":
            j += 1
        buf.append(chr(int(text[i:j], 8) & 0xFF))
        return j
    if ch == "x":
        j = i + 1
        while j < len(text) and text[j] in "0123456789abcdefABCDEF":
            j += 1
        if j > i + 1:
            buf.append(chr(int(text[i + 1 : j], 16) & 0xFF))
            return j
        buf.append("x")
        return i + 1
    if ch == "c" and i + 1 < len(text):
        buf.append(chr(ord(text[i + 1].upper()) ^ 0x40))
        return i + 2
    buf.append(ch)
    return i + 1
