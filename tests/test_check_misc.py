"""MISC_CHECK: exit status, misc_dynamic weights, timeout."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from checkhelp import lines, manager, one_checker

from pykeepalived.core.lvs.checking import run_attempt


def script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "check.sh"
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return str(p)


async def test_exit_status(tmp_path: Path) -> None:
    ok = await run_attempt(
        one_checker(f'MISC_CHECK {{\n misc_path "{script(tmp_path, "exit 0")}"\n}}'), 5
    )
    assert ok.ok and ok.weight is None
    bad = await run_attempt(
        one_checker(f'MISC_CHECK {{\n misc_path "{script(tmp_path, "exit 1")}"\n}}'), 5
    )
    assert not bad.ok and bad.message == "exited with status 1"
    # without misc_dynamic, 2..255 is a failure
    assert not (
        await run_attempt(
            one_checker(f'MISC_CHECK {{\n misc_path "{script(tmp_path, "exit 12")}"\n}}'), 5
        )
    ).ok


async def test_misc_dynamic_weight(tmp_path: Path) -> None:
    checker = one_checker(
        f'MISC_CHECK {{\n misc_path "{script(tmp_path, "exit 12")}"\n misc_dynamic\n}}'
    )
    result = await run_attempt(checker, 5)
    assert result.ok and result.weight == 10


async def test_timeout_kills_script(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    checker = one_checker(
        f'MISC_CHECK {{\n misc_path "{script(tmp_path, f"sleep 2; touch {marker}")}"\n misc_timeout 1\n}}'
    )
    assert checker.timeout == 1.0
    result = await run_attempt(checker, 3)
    assert not result.ok and "timed out" in result.message
    await asyncio.sleep(1.3)
    assert not marker.exists()


async def test_dynamic_weight_reaches_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = script(tmp_path, "exit 7")
    m, _, _ = manager(
        f"""virtual_server 192.0.2.100 80 {{
  protocol TCP
  delay_loop 0.1
  real_server 192.0.2.21 80 {{
    weight 3
    MISC_CHECK {{
      misc_path "{path}"
      misc_dynamic
      warmup 0
    }}
  }}
}}"""
    )
    await m.start()
    try:
        for _ in range(100):
            if m.virtual_servers[0].reals[0].weight == 5:
                break
            await asyncio.sleep(0.02)
        assert m.table()[0].destinations[0].weight == 5
        assert any(
            line.startswith("Misc check for [[192.0.2.21]:tcp:80 VS [192.0.2.100]:tcp:80]")
            for line in lines(caplog)
        )
    finally:
        await m.stop()


def test_missing_path_is_a_config_error() -> None:
    from checkhelp import registry

    from pykeepalived.core.config import load_text

    res = load_text(
        "virtual_server 192.0.2.1 80 {\n real_server 192.0.2.2 80 {\n  MISC_CHECK {\n   misc_timeout 3\n  }\n }\n}\n",
        grammar=registry().grammar(),
    )
    assert any(
        "<string>:3:" in str(d) and "No script path" in str(d) for d in res.diagnostics.errors
    )
