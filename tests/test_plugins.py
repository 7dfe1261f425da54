"""The plugin author's side: loading rules, errors, docs, and a real pip install."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import types
import venv
import zipfile
from pathlib import Path

import pytest

from pykeepalived import hookimpl
from pykeepalived.core.config.grammar import Grammar
from pykeepalived.core.config.schema import Kw, string
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import Checker, CheckResult
from pykeepalived.core.plugin.manager import DISABLE_AUTOLOAD_ENV, PluginError, build_registry
from pykeepalived.core.shell.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pykeepalived-example"
DOCS = ROOT / "docs" / "plugins.md"

# lb_kind after the real server: keepalived 2.2.7 -t fails without one
# ("no forwarding method set"), and TCP_CHECK stays on line 5.
TCP_CONF = "virtual_server 192.0.2.1 80 {\n protocol TCP\n lb_algo rr\n real_server 192.0.2.2 80 {\n TCP_CHECK {\n connect_timeout 3\n }\n }\n lb_kind NAT\n}\n"


def _plugin(name: str, **hooks: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, hookimpl(fn))  # type: ignore[call-overload]
    return mod


def _keyword_plugin(name: str, keyword: str) -> types.ModuleType:
    def pykeepalived_register_keywords(grammar: Grammar) -> None:
        grammar.add("real_server", Kw(keyword, string, 1, 1))

    return _plugin(name, pykeepalived_register_keywords=pykeepalived_register_keywords)


class _Dummy(Checker):
    keyword = "DUP_CHECK"

    async def check(self) -> CheckResult:
        return CheckResult(True)


# -- loading rules ------------------------------------------------------------------------


def test_duplicate_keyword_names_both_plugins() -> None:
    registry = build_registry(
        extra=[
            ("alpha_plugin", _keyword_plugin("a", "DUP_KW")),
            ("beta_plugin", _keyword_plugin("b", "DUP_KW")),
        ],
        autoload=False,
    )
    with pytest.raises(PluginError) as exc:
        registry.grammar()
    assert "DUP_KW" in str(exc.value)
    assert "alpha_plugin" in str(exc.value) and "beta_plugin" in str(exc.value)


def test_duplicate_keyword_with_a_builtin_names_both() -> None:
    registry = build_registry(extra=[("mine", _keyword_plugin("m", "TCP_CHECK"))], autoload=False)
    with pytest.raises(PluginError, match=r"TCP_CHECK.*tcp_check.*mine"):
        registry.grammar()


def test_duplicate_checker_class_names_both_plugins() -> None:
    def pykeepalived_register_checkers() -> dict[str, type[Checker]]:
        return {"DUP_CHECK": _Dummy}

    a = _plugin("a", pykeepalived_register_checkers=pykeepalived_register_checkers)
    b = _plugin("b", pykeepalived_register_checkers=pykeepalived_register_checkers)
    with pytest.raises(PluginError, match=r"DUP_CHECK.*one_plugin.*two_plugin"):
        build_registry(extra=[("one_plugin", a), ("two_plugin", b)], autoload=False)


def test_misspelled_hook_is_a_startup_error() -> None:
    def pykeepalived_register_checker() -> dict[str, type[Checker]]:  # missing 's'
        return {}

    bad = _plugin("bad", pykeepalived_register_checker=pykeepalived_register_checker)
    with pytest.raises(PluginError, match="pykeepalived_register_checker"):
        build_registry(extra=[("typo_plugin", bad)], autoload=False)


def test_disable_plugin() -> None:
    full = build_registry()
    assert "tcp_check" in full.plugin_names() and "TCP_CHECK" in full.checkers
    reduced = build_registry(["tcp_check"])
    assert "tcp_check" not in reduced.plugin_names()
    assert "TCP_CHECK" not in reduced.checkers
    assert reduced.grammar().block("real_server").lookup("TCP_CHECK") is None


def test_cli_disable_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(TCP_CONF)
    assert cli_main(["-t", "-f", str(conf)]) == 0
    assert cli_main(["-t", "-f", str(conf), "--disable-plugin", "tcp_check"]) == 5
    assert (
        f"{conf}:5: warning: unknown keyword 'TCP_CHECK' in real_server" in capsys.readouterr().err
    )


def _fake_distribution(root: Path, dist: str, entry_name: str, module: str, source: str) -> None:
    """A real installed distribution on sys.path: dist-info with an entry point."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pykeepalived]\n{entry_name} = {module}\n")
    (root / f"{module}.py").write_text(source)


THIRD_PARTY = """\
from pykeepalived import hookimpl
from pykeepalived.core.config.schema import Kw, string

@hookimpl
def pykeepalived_register_keywords(grammar):
    grammar.add("global_defs", Kw("third_party_kw", string, 1, 1))
"""


def test_autoload_env_loads_only_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(tmp_path, "pka_third_party", "third_party", "pka_tp_plugin", THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    assert "third_party" in build_registry().plugin_names()
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    names = build_registry().plugin_names()
    assert "third_party" not in names
    assert "tcp_check" in names  # built-ins still load


def test_plugin_failing_to_import_is_reported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_distribution(
        tmp_path, "pka_broken", "broken_plugin", "pka_broken_mod", "import no_such_module_xyz\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    registry = build_registry()
    [failure] = [f for f in registry.failures if f.name == "broken_plugin"]
    assert "no_such_module_xyz" in failure.error
    assert "tcp_check" in registry.plugin_names()  # the others still load
    conf = tmp_path / "k.conf"
    conf.write_text(TCP_CONF)
    cli_main(["-t", "-f", str(conf)])
    err = capsys.readouterr().err
    assert re.search(
        r"plugin broken_plugin failed to load: ModuleNotFoundError: .*no_such_module_xyz", err
    )


def test_pytest_fixtures_register_a_plugin(
    pykeepalived_plugin: list[object], pykeepalived_registry
) -> None:  # type: ignore[no-untyped-def]
    pykeepalived_plugin.append(_keyword_plugin("fixture_mod", "FIXTURE_KW"))
    registry = pykeepalived_registry()
    assert registry.grammar().block("real_server").lookup("FIXTURE_KW") is not None


# -- documentation ------------------------------------------------------------------------


def _hookspec_signatures() -> dict[str, str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        n.name: f"def {n.name}({ast.unparse(n.args)}) -> {ast.unparse(n.returns)}:"
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and any(ast.unparse(d) == "hookspec" for d in n.decorator_list)
    }


def test_every_hookspec_is_documented_with_its_exact_signature() -> None:
    specs = _hookspec_signatures()
    assert len(specs) >= 8
    doc_lines = {line.strip() for line in DOCS.read_text().splitlines()}
    missing = [sig for sig in specs.values() if sig not in doc_lines]
    assert missing == [], "docs/plugins.md lacks these exact signatures"


def test_docs_name_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^def (pykeepalived_\w+)\(", DOCS.read_text(), re.M))
    assert documented == set(_hookspec_signatures())


def test_hookspecs_match_the_plugin_manager() -> None:
    registry = build_registry(autoload=False)
    assert set(_hookspec_signatures()) == {
        name for name in dir(registry.pm.hook) if name.startswith("pykeepalived_")
    }


# -- a real pip install of the example package ---------------------------------------------


def _build_wheel(project: Path, out: Path) -> Path:
    """Build a wheel of a pure-Python src-layout project from its pyproject.toml.

    Offline and dependency-free (no setuptools/wheel needed); entry points
    come from the project's own [project.entry-points] table.
    """
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    name, version = meta["name"], meta["version"]
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted((project / "src").rglob("*.py")):
        files[path.relative_to(project / "src").as_posix()] = path.read_bytes()
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: pykeepalived-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    eps = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in meta.get("entry-points", {}).items()
    )
    files[f"{info}/entry_points.txt"] = eps.encode()
    record = []
    for arc, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arc, data in files.items():
            zf.writestr(arc, data)
    return wheel


EXAMPLE_CONF = """\
global_defs {
    example_event_log /tmp/pka-example-events.log
}
virtual_server 192.0.2.10 25 {
    protocol TCP
    lb_algo wlc
    lb_kind NAT
    real_server 192.0.2.11 25 {
        EXAMPLE_CHECK {
            expect "220 "
            connect_timeout 3
        }
    }
}
"""


def test_pip_installed_example_plugin_end_to_end(tmp_path: Path) -> None:
    """A fresh venv, the project visible through a .pth, the example pip-installed."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # pykeepalived and its dependencies, from the project's own environment
    (Path(purelib) / "pykeepalived-dev.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    )
    wheel = _build_wheel(EXAMPLE, tmp_path)
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (Path(purelib) / "pykeepalived_example" / "plugin.py").is_file()
    conf = tmp_path / "keepalived.conf"
    conf.write_text(EXAMPLE_CONF)
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}

    def cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [py, "-m", "pykeepalived.core.shell.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **extra_env},
            cwd=tmp_path,
        )

    ok = cli("-t", "-f", str(conf))
    assert ok.returncode == 0, ok.stderr
    dump = cli("--dump-conf-json", "-f", str(conf))
    assert dump.returncode == 0, dump.stderr
    data = json.loads(dump.stdout)
    [rs] = data["virtual_servers"][0]["real_servers"]
    [checker] = rs["checkers"]
    assert checker["kind"] == "EXAMPLE_CHECK"
    assert checker["options"]["expect"] == "220 " and checker["options"]["connect_timeout"] == 3
    assert data["global_defs"]["ext"]["example_event_log"] == "/tmp/pka-example-events.log"
    # the same venv without third-party plugins: the keyword is unknown again
    only_builtins = cli("-t", "-f", str(conf), **{DISABLE_AUTOLOAD_ENV: "1"})
    assert only_builtins.returncode == 5
    assert "unknown keyword 'EXAMPLE_CHECK'" in only_builtins.stderr
    disabled = cli("-t", "-f", str(conf), "--disable-plugin", "example")
    assert disabled.returncode == 5
    # the example's own tests pass against the installed package
    tests = subprocess.run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


# -- lifecycle hooks in the daemon ---------------------------------------------------------


async def test_async_unconfigure_finishes_before_the_daemon_exits() -> None:
    """An async pykeepalived_unconfigure used to be cancelled by asyncio.run
    as soon as main() returned; it now gets the shutdown budget."""
    import argparse
    import asyncio

    from pykeepalived.core.config import load_text
    from pykeepalived.core.shell.daemon import Daemon

    finished: list[str] = []

    async def pykeepalived_unconfigure(config: object) -> None:
        await asyncio.sleep(0.2)
        finished.append("unconfigure")

    plugin = _plugin("slow_unconfigure", pykeepalived_unconfigure=pykeepalived_unconfigure)
    registry = build_registry(autoload=False, extra=[("slow_unconfigure", plugin)])
    result = load_text("global_defs {\n router_id r1\n}\n", grammar=registry.grammar())
    # -C (checker only) with no virtual server: no VRRP thread, no IPVS.
    args = argparse.Namespace(
        check=True, vrrp=False, http_listen=None, status_socket=None, file="t.conf"
    )
    daemon = Daemon(args, result, registry)
    asyncio.get_running_loop().call_later(0.1, daemon._stop.set)
    assert await daemon.main() == 0
    assert finished == ["unconfigure"]


async def test_lifecycle_hooks_run_one_plugin_at_a_time_under_a_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """core/plugin/hookspecs.py: an awaitable from pykeepalived_configure is awaited
    plugin by plugin under a timeout; a hanging or raising plugin is logged
    by name and the next plugin still runs."""
    import argparse
    import asyncio

    from pykeepalived.core.config import load_text
    from pykeepalived.core.shell import daemon as daemon_mod

    monkeypatch.setattr(daemon_mod, "HOOK_TIMEOUT", 0.2)
    order: list[str] = []

    def make(name: str, behaviour: str) -> types.ModuleType:
        async def pykeepalived_configure(config: object) -> None:
            order.append(f"{name}:start")
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if behaviour == "raise":
                raise RuntimeError("boom")
            order.append(f"{name}:done")

        return _plugin(name, pykeepalived_configure=pykeepalived_configure)

    extra = [(n, make(n, b)) for n, b in (("p_hang", "hang"), ("p_raise", "raise"), ("p_ok", "ok"))]
    registry = build_registry(autoload=False, extra=extra)
    result = load_text("global_defs {\n router_id r1\n}\n", grammar=registry.grammar())
    args = argparse.Namespace(
        check=True, vrrp=False, http_listen=None, status_socket=None, file="t.conf"
    )
    d = daemon_mod.Daemon(args, result, registry)
    await d.start()
    await d.stop()
    started = [o for o in order if o.endswith(":start")]
    assert sorted(started) == ["p_hang:start", "p_ok:start", "p_raise:start"]
    assert "p_ok:done" in order and "p_hang:done" not in order
    # one at a time: each plugin started only after the previous one finished
    for i, entry in enumerate(order[1:], start=1):
        if entry.endswith(":start"):
            prev = order[i - 1]
            assert prev.endswith(":done") or prev.split(":")[0] in ("p_hang", "p_raise"), order
    text = caplog.text
    assert "plugin p_hang: pykeepalived_configure took more than" in text
    assert "plugin p_raise: pykeepalived_configure failed" in text


def test_notifier_keywords_belong_to_their_plugins() -> None:
    """notify_*, FIFO and mail keywords are registered by the plugins that act
    on them: with the plugin disabled, keepalived.conf's keyword is unknown."""
    from pykeepalived.core.config import load_text

    text = (
        "global_defs {\n smtp_server 192.0.2.25 2525\n notification_email {\n a@example.org\n }\n"
        " vrrp_notify_fifo /run/fifo\n}\n"
        "vrrp_instance V {\n interface eth0\n virtual_router_id 1\n smtp_alert\n"
        " notify_master /bin/true\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n"
    )
    full = load_text(text, grammar=build_registry().grammar())
    assert full.ok and not full.diagnostics.warnings, full.diagnostics.items
    gd = full.config.global_defs
    assert gd.smtp_server == ("192.0.2.25", 2525) and gd.notification_email == ["a@example.org"]
    [vi] = full.config.vrrp_instances
    assert vi.notify_master is not None and vi.notify_master.argv == ["/bin/true"]
    owners = {
        kw.name: kw.owner
        for block in ("global_defs", "vrrp_instance")
        for kw in build_registry().grammar().blocks[block].keywords.values()
    }
    assert owners["smtp_server"] == owners["notification_email"] == "smtp_alert"
    assert owners["vrrp_notify_fifo"] == "notify_fifo"
    assert owners["notify_master"] == "notify_script"
    for plugin, keyword in (
        ("smtp_alert", "smtp_server"),
        ("notify_fifo", "vrrp_notify_fifo"),
        ("notify_script", "notify_master"),
    ):
        without = load_text(text, grammar=build_registry((plugin,)).grammar())
        assert any(
            f"unknown keyword '{keyword}'" in d.message for d in without.diagnostics.items
        ), plugin


# -- the entry-point reader against importlib.metadata (the oracle) -------------------
def _oracle(group: str, path: list[str]) -> set[tuple[str, str, str]]:
    """What importlib.metadata finds for ``group`` on ``path``."""
    from importlib import metadata

    from pykeepalived.core.plugin.entrypoints import normalize

    dists = metadata.distributions(path=path)
    seen: set[str] = set()
    out: set[tuple[str, str, str]] = set()
    for dist in dists:
        name = normalize(dist.metadata["Name"])
        if name in seen:  # importlib.metadata.entry_points() keeps the first
            continue
        seen.add(name)
        for ep in dist.entry_points.select(group=group):
            out.add((ep.name, ep.value.split("[", 1)[0].strip(), name))
    return out


@pytest.mark.parametrize("group", ["pykeepalived", "console_scripts", "pytest11"])
def test_entry_point_reader_matches_importlib_metadata(group: str) -> None:
    from pykeepalived.core.plugin.entrypoints import entry_points

    ours = {(e.name, e.value, e.dist) for e in entry_points(group)}
    assert ours == _oracle(group, sys.path)
    if group == "pykeepalived":
        assert ("tcp_check", "pykeepalived.plugins.checks.tcp_check", "pykeepalived") in {
            (n, v.split(":")[0], d) for n, v, d in ours
        }


def test_entry_point_reader_edge_cases(tmp_path: Path) -> None:
    """Shadowed distributions, extras, comments, other groups, an .egg-info
    directory, a metadata dir without entry points, and a path that is missing."""
    from pykeepalived.core.plugin.entrypoints import entry_points

    first, second = tmp_path / "first", tmp_path / "second"
    for root, value in ((first, "mod_a:hooks"), (second, "mod_shadowed")):
        info = root / "My_Plugin-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: My_Plugin\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"# a comment\n[console_scripts]\nx = y:z\n\n[pykeepalived]\n# another\n"
            f"alpha = {value} [extra]\n"
        )
    egg = second / "legacy.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 0.3\n")
    (egg / "entry_points.txt").write_text("[pykeepalived]\nbeta=legacy_mod\n")
    bare = second / "bare-2.dist-info"
    bare.mkdir()
    (bare / "METADATA").write_text("Metadata-Version: 2.1\nName: bare\nVersion: 2\n")
    path = [str(first), str(tmp_path / "missing"), str(second)]
    ours = {(e.name, e.value, e.dist) for e in entry_points("pykeepalived", path)}
    assert ours == {("alpha", "mod_a:hooks", "my-plugin"), ("beta", "legacy_mod", "legacy")}
    assert ours == _oracle("pykeepalived", path)


def test_entry_point_reader_hands_zip_paths_to_importlib(tmp_path: Path) -> None:
    """A zip file on the path is read by importlib.metadata (ours reads directories)."""
    from pykeepalived.core.plugin import entrypoints

    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "zipped-1.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1\n"
        )
        zf.writestr("zipped-1.dist-info/entry_points.txt", "[pykeepalived]\nzipped = zipped_mod\n")
    old = sys.path[:]
    sys.path.append(str(archive))
    try:
        found = {(e.name, e.dist) for e in entrypoints.entry_points("pykeepalived")}
    finally:
        sys.path[:] = old
    assert ("zipped", "zipped") in found
    assert ("tcp_check", "pykeepalived") in found
