"""Fuzzing the config language: any input gives a LoadResult, never an exception."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykeepalived.core.config import LoadResult, load, load_text
from pykeepalived.core.config.errors import Diagnostic, Diagnostics, Place
from pykeepalived.core.config.grammar import Grammar
from pykeepalived.core.config.lexer import Preprocessor, Word, expand_braces, tokenize
from pykeepalived.core.config.tree import build_tree
from pykeepalived.core.plugin.manager import build_registry

GRAMMAR: Grammar = build_registry().grammar()
FUZZ = settings(
    max_examples=int(os.environ.get("PKA_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Pieces of real configs, so random sequences reach the grammar's depths.
PIECES = [
    "global_defs",
    "vrrp_instance",
    "VI_1",
    "vrrp_sync_group",
    "group",
    "virtual_server",
    "real_server",
    "virtual_server_group",
    "vrrp_script",
    "track_script",
    "track_interface",
    "vrrp_track_process",
    "track_process",
    "track_file",
    "TCP_CHECK",
    "HTTP_GET",
    "MISC_CHECK",
    "url",
    "path",
    "status_code",
    "state",
    "MASTER",
    "BACKUP",
    "interface",
    "eth0",
    "virtual_router_id",
    "priority",
    "advert_int",
    "authentication",
    "auth_type",
    "PASS",
    "AH",
    "auth_pass",
    "virtual_ipaddress",
    "unicast_peer",
    "weight",
    "-254",
    "254",
    "reverse",
    "lb_kind",
    "NAT",
    "lb_algo",
    "rr",
    "protocol",
    "TCP",
    "delay_loop",
    "connect_timeout",
    "notify_master",
    '"/bin/echo x"',
    "script",
    "interval",
    "fall",
    "rise",
    "nopreempt",
    "192.0.2.1",
    "192.0.2.1/24",
    "2001:db8::1",
    "80",
    "0",
    "1",
    "1.5",
    "256",
    "-1",
    "dev",
    "label",
    "{",
    "}",
    "\n",
    "\n",
    "\n",
    " ",
    "#",
    "!",
    "@main",
    "@^main",
    "$X=1",
    "$X",
    "${X}",
    "${_PWD}",
    "${_RANDOM 1 2}",
    "${_HASH}",
    "~SEQ(N,1,3)",
    "~SEQx(N,0,2)",
    "~LST(N,a,b)",
    "~LST({A,B},{1,2})",
    "${N}",
    "\\",
    "include",
    "includea",
    "*.conf",
    '"',
    "'",
    "fwmark",
    "sorry_server",
    "quorum",
    "static_ipaddress",
    "virtual_routes",
    "src",
    "via",
    "table",
    "metric",
    "use_vmac",
    "version",
    "3",
    "2",
]

config_text = st.lists(st.sampled_from(PIECES), max_size=80).map(" ".join)


def _check_diagnostics(diag: Diagnostics, name: str, text: str) -> None:
    """What any input must give: each problem is a Diagnostic with a place (the file it
    came from, a line in it) and a one-line message, printed as ``FILE:LINE: kind: ...``
    like keepalived -t's lines.  (Any exception escaping the call fails the test too.)"""
    last_line = len(text.splitlines()) + 1
    for d in diag.items:
        assert isinstance(d, Diagnostic) and isinstance(d.place, Place), d
        assert d.place.file and d.place.line >= 0, d
        if d.place.file == name:
            assert d.place.line <= last_line, (d, last_line)
        assert d.message and "\n" not in d.message, d
        assert str(d) == f"{d.place}: {d.severity.name.lower()}: {d.message}"


def _check(result: LoadResult, name: str, text: str) -> None:
    assert isinstance(result, LoadResult)
    _check_diagnostics(result.diagnostics, name, text)


@FUZZ
@given(st.text())
def test_tokenize_any_text(text: str) -> None:
    place, diag = Place("f", 1), Diagnostics()
    words = tokenize(text, place, diag)
    # Unquoted words are pieces of the line as written (escapes live in quotes only);
    # every problem is reported at the line's place.
    for w in words:
        assert isinstance(w, Word)
        if not w.quoted:
            assert w.text and w.text in text, (w, text)
    assert all(d.place == place for d in diag.items)
    _check_diagnostics(diag, "f", text)


@FUZZ
@given(st.text())
def test_expand_braces_any_text(text: str) -> None:
    assert expand_braces(text)


@FUZZ
@given(st.one_of(st.text(), config_text))
def test_preprocess_and_tree_any_text(text: str) -> None:
    diag = Diagnostics()
    lines = Preprocessor("main", diag).read_text(text, "f.conf")
    assert all(line.place.file == "f.conf" for line in lines)
    for root in (GRAMMAR.top, None):
        nodes = build_tree(lines, root, diag)
        assert isinstance(nodes, list)
    _check_diagnostics(diag, "f.conf", text)


@FUZZ
@given(st.one_of(st.text(), config_text))
def test_load_text_with_plugin_grammar(text: str) -> None:
    _check(load_text(text, name="f.conf", config_id="main", grammar=GRAMMAR), "f.conf", text)


@FUZZ
@given(st.binary())
def test_load_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "keepalived.conf"
        path.write_bytes(data)
        _check(
            load(str(path), config_id="main", grammar=GRAMMAR),
            str(path),
            data.decode("utf-8", errors="replace"),
        )


@FUZZ
@given(config_text)
def test_load_structured_core_grammar(text: str) -> None:
    _check(load_text(text, name="f.conf", config_id="", grammar=None), "f.conf", text)
