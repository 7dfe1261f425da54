"""The ``auth_hmac`` block of a vrrp_instance, as keepalived 2.4.3 parses it.

    auth_hmac {
        key ID VALUE          # 1..255; hex:..., file:PATH or ASCII; 32..64 bytes
        active_key ID         # the key adverts are signed with
        anti_replay time|monotonic
        time_window S         # 1..300 (default: max(3 x advert_int, 5))
        mode enforce|permissive|receive-only
    }

Rejections follow keepalived's ``vrrp_parser.c``: the offending line is
reported and dropped, the rest of the block stands (a bad or duplicate
``key`` leaves the other keys).  What depends on the whole instance (no
``active_key`` among the keys, ``authentication`` beside it, strict mode) is
decided in :mod:`.semantics`.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from pykeepalived.core.config import model as m
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import BlockSpec, Context, Invalid, Kw, build_model

KEY_MIN = 32
KEY_MAX = 64
WINDOW_MIN = 1
WINDOW_MAX = 300
#: keepalived reads a key file into a buffer of "hex:" + 2 x 64 digits + 8:
#: a file of more than this many bytes is "too large".
KEY_FILE_MAX = 4 + KEY_MAX * 2 + 8 - 1
_HEX_DIGITS = "0123456789abcdefABCDEF"


def decode_hex(text: str) -> bytes | None:
    """keepalived's ``read_hex_str`` without wildcards: spaces and tabs
    between bytes are skipped, a byte is two digits or a lone digit before a
    space or the end (``f`` is 0x0f); any other character, or no digit at
    all, makes the whole value invalid (None)."""
    out = bytearray()
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i == n:
            break
        if text[i] not in _HEX_DIGITS:
            return None
        value = int(text[i], 16)
        i += 1
        # keepalived reads a second digit unless a space (not a tab) or the
        # end follows
        if i < n and text[i] != " ":
            if text[i] not in _HEX_DIGITS:
                return None
            value = value << 4 | int(text[i], 16)
            i += 1
        out.append(value)
    return bytes(out) if out else None


def decode_key(text: str) -> bytes | None:
    """An inline key value: ``hex:`` then hex digits, else the ASCII text."""
    if text.startswith("hex:"):
        return decode_hex(text[4:])
    return text.encode()


def read_key_file(path: str, node: Node, ctx: Context) -> bytes | None:
    """A ``file:PATH`` key: what the inline value would be, trailing line
    ends dropped.  A file group or others may access still works, with a
    security warning, as in keepalived."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(KEY_FILE_MAX + 1)
    except OSError:
        raise Invalid(f"auth_hmac key file '{path}' cannot be opened") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        ctx.warn(node.place, f"auth_hmac key file '{path}' is readable by group or others")
    if len(raw) > KEY_FILE_MAX:
        raise Invalid(f"auth_hmac key file '{path}' is too large")
    text = raw.rstrip(b"\r\n").decode("latin-1")
    return decode_key(text)


def key_kw(node: Node, ctx: Context) -> m.AuthHmacKey:
    if len(node.args) < 2:
        raise Invalid("auth_hmac key needs an id and a value")
    text = node.args[0]
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise Invalid(f"auth_hmac key id '{text}' must be between 1 and 255")
    key_id = int(text)
    value_text = node.args[1]
    if value_text.startswith("file:"):
        value = read_key_file(value_text[5:], node, ctx)
    else:
        value = decode_key(value_text)
    size = len(value) if value is not None else 0
    if value is None or not KEY_MIN <= size <= KEY_MAX:
        raise Invalid(f"auth_hmac key {key_id} length {size} not in range [{KEY_MIN}, {KEY_MAX}]")
    existing = (ctx.values or {}).get("keys", [])
    if any(k.key_id == key_id for k in existing):
        raise Invalid(f"duplicate auth_hmac key id {key_id}")
    return m.AuthHmacKey(key_id, value, node.place)


def _active_key(node: Node, ctx: Context) -> int:
    text = node.args[0]
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise Invalid(f"auth_hmac active_key '{text}' must be between 1 and 255")
    return int(text)


def _time_window(node: Node, ctx: Context) -> int:
    text = node.args[0]
    if not text.isdigit() or not WINDOW_MIN <= int(text) <= WINDOW_MAX:
        raise Invalid(
            f"auth_hmac time_window '{text}' must be between {WINDOW_MIN} and {WINDOW_MAX} seconds"
        )
    return int(text)


def _anti_replay(node: Node, ctx: Context) -> str:
    text = node.args[0]
    if text not in ("time", "monotonic"):
        raise Invalid(f"auth_hmac anti_replay '{text}' must be time or monotonic")
    return text


def _mode(node: Node, ctx: Context) -> str:
    text = node.args[0]
    if text not in ("enforce", "permissive", "receive-only"):
        raise Invalid(f"auth_hmac mode '{text}' must be enforce, permissive or receive-only")
    return text


def auth_hmac_spec() -> BlockSpec:
    spec = BlockSpec("auth_hmac", model=m.AuthHmac)
    spec.add(Kw("key", key_kw, 2, 2, field="keys", multiple=True))
    spec.add(Kw("active_key", _active_key, 1, 1))
    spec.add(Kw("time_window", _time_window, 1, 1))
    spec.add(Kw("anti_replay", _anti_replay, 1, 1))
    spec.add(Kw("mode", _mode, 1, 1))
    return spec


def auth_hmac_kw() -> Kw:
    """``auth_hmac { ... }`` in vrrp_instance.  A second block in the same
    instance adds to the first, as keepalived keeps one per instance and
    applies every later line to it."""
    spec = auth_hmac_spec()

    def conv(node: Node, ctx: Context) -> Any:
        earlier = (ctx.values or {}).get("auth_hmac")
        new: m.AuthHmac = build_model(spec, node, ctx)
        if earlier is None:
            return new
        for key in new.keys:
            if any(k.key_id == key.key_id for k in earlier.keys):
                ctx.diag.error(key.place, f"duplicate auth_hmac key id {key.key_id}")
            else:
                earlier.keys.append(key)
        for block in node.children or []:
            name = block.keyword
            if name in ("active_key", "time_window", "anti_replay", "mode"):
                setattr(earlier, name, getattr(new, name))
        return earlier

    return Kw("auth_hmac", conv, needs_block=True, block=spec)
