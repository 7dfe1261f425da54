"""The public plugin API is versioned, documented and the only thing plugins import.

The surface of :mod:`pykeepalived.api` (its names, the hooks' signatures and
the base classes' protocol) is recorded per API version in
``tests/data/public_api/<version>.json``.  Changing the surface without
recording it fails here; so does removing or changing something within a
major version, and so does a public name that docs/plugins.md does not list.

To record a deliberate change: bump ``API_VERSION`` in api.py (minor for
additions, major for removals/changes), run
``python tests/test_public_api.py --record``, and update docs/plugins.md.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import grimp

import pykeepalived.api as api
from pykeepalived.core.plugin import hookspecs

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "tests" / "data" / "public_api"
DOCS = ROOT / "docs" / "plugins.md"
PROTOCOL_CLASSES = ("Checker", "BaseCheck", "Tracker", "WatchTracker", "Notifier", "Action")


def _hooks() -> dict[str, str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        n.name: f"({ast.unparse(n.args)}) -> {ast.unparse(n.returns)}"
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and any(ast.unparse(d) == "hookspec" for d in n.decorator_list)
    }


def _members(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in sorted(vars(cls).items()):
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, property):
            out[name] = "property"
        elif inspect.isfunction(value):
            kind = "async def" if inspect.iscoroutinefunction(value) else "def"
            out[name] = f"{kind}{inspect.signature(value)}"
    for name in sorted(getattr(cls, "__annotations__", {})):
        if not name.startswith("_"):
            out.setdefault(name, f"attribute: {cls.__annotations__[name]}")
    return out


def surface() -> dict[str, Any]:
    return {
        "version": api.API_VERSION,
        "names": sorted(api.__all__),
        "hooks": _hooks(),
        "classes": {c: _members(getattr(api, c)) for c in PROTOCOL_CLASSES},
    }


def _recorded() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))}


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def test_current_surface_is_recorded_for_its_version() -> None:
    now = surface()
    records = _recorded()
    assert api.API_VERSION in records, (
        f"API_VERSION {api.API_VERSION} has no record: run python tests/test_public_api.py --record"
    )
    assert records[api.API_VERSION] == now, (
        "the public API changed without a new API_VERSION and record (see this file's docstring)"
    )


def test_nothing_removed_or_changed_within_a_major_version() -> None:
    now = surface()
    for version, old in _recorded().items():
        if _major(version) != _major(api.API_VERSION):
            continue
        gone = sorted(set(old["names"]) - set(now["names"]))
        assert gone == [], f"names of API {version} removed without a major bump: {gone}"
        for hook, sig in old["hooks"].items():
            assert now["hooks"].get(hook) == sig, f"hook {hook} changed since API {version}"
        for cls, members in old["classes"].items():
            for member, sig in members.items():
                assert now["classes"][cls].get(member) == sig, (
                    f"{cls}.{member} changed since API {version}"
                )


def test_docs_list_every_public_name_and_the_version() -> None:
    text = DOCS.read_text()
    assert (
        f"API_VERSION = {api.API_VERSION}" in text or f'API_VERSION = "{api.API_VERSION}"' in text
    )
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text))
    missing = sorted(set(api.__all__) - documented)
    assert missing == [], f"docs/plugins.md does not list: {missing}"


def test_every_public_name_resolves() -> None:
    assert sorted(set(api.__all__)) == sorted(api.__all__)
    assert [n for n in api.__all__ if not hasattr(api, n)] == []


# -- plugins import only the public API -------------------------------------------------


def _plugin_sources() -> list[Path]:
    files = sorted((ROOT / "plugins").rglob("*.py"))
    files += sorted((ROOT / "examples").rglob("src/**/*.py"))
    return [f for f in files if f.name != "__init__.py" or f.read_text().strip()]


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function bodies, TYPE_CHECKING)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append("." * node.level + (node.module or ""))
            else:
                assert node.module is not None
                out.append(node.module)
                if node.module == "pykeepalived":
                    out += [f"pykeepalived.{a.name}" for a in node.names]
    return out


def test_plugins_and_example_import_only_the_public_api() -> None:
    sources = _plugin_sources()
    assert len(sources) >= 17  # every built-in plugin and the example
    allowed = {"pykeepalived", "pykeepalived.api"}
    bad: dict[str, list[str]] = {}
    for path in sources:
        own = [
            m
            for m in _imports(path)
            if m.startswith(".") or m == "pykeepalived" or m.startswith("pykeepalived.")
        ]
        wrong = [m for m in own if m not in allowed]
        if wrong:
            bad[str(path.relative_to(ROOT))] = wrong
    assert bad == {}, "plugins must import pykeepalived.api only (not core, not each other)"


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from pykeepalived.core.scripts import run_script\n"
        "from pykeepalived.plugins.checks import track_file\n"
    )
    assert sorted(_imports(bad)) == ["pykeepalived.core.scripts", "pykeepalived.plugins.checks"]


# -- no import cycles among product modules ------------------------------------------------


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_among_product_modules() -> None:
    graph = grimp.build_graph("pykeepalived")
    product = {m for m in graph.modules if not m.startswith("pykeepalived.testing")}
    assert len(product) > 50
    assert _cycles(graph, product) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for m in ("a", "b", "c"):
        graph.add_module(m)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph, {"a", "b", "c"}) == [["a", "b"]]


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        RECORDS.mkdir(parents=True, exist_ok=True)
        target = RECORDS / f"{api.API_VERSION}.json"
        target.write_text(json.dumps(surface(), indent=2, sort_keys=True) + "\n")
        print(f"recorded {target}")
