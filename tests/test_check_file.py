"""FILE_CHECK: up/down and weight from a track_file."""

from __future__ import annotations

from pathlib import Path

from checkhelp import manager

from pykeepalived.core.lvs.checking import run_attempt


def make(tmp_path: Path, check: str) -> tuple[object, Path]:
    f = tmp_path / "weight"
    m, _, _ = manager(
        f"""track_file rsweight {{
  file "{f}"
  weight 2
}}
virtual_server 192.0.2.100 80 {{
    lb_algo wlc
  protocol TCP
  real_server 192.0.2.21 80 {{
    weight 10
    FILE_CHECK {{
{check}
    }}
  }}
}}"""
    )
    return m.scheduler.runs[0].checker, f


async def test_file_check_up_down(tmp_path: Path) -> None:
    checker, f = make(tmp_path, "track_file rsweight\n      weight 0")
    assert (await run_attempt(checker, 2)).ok  # missing file reads as 0
    f.write_text("1\n")
    assert not (await run_attempt(checker, 2)).ok
    f.write_text("0\n")
    assert (await run_attempt(checker, 2)).ok


async def test_file_check_dynamic_weight(tmp_path: Path) -> None:
    checker, f = make(tmp_path, "track_file rsweight\n      dynamic")
    f.write_text("3")
    result = await run_attempt(checker, 2)
    assert result.ok and result.weight == 16  # 10 + 3 * track_file weight 2
    f.write_text("-200")
    assert not (await run_attempt(checker, 2)).ok  # -400 <= -254
    checker, f = make(tmp_path, "track_file rsweight\n      weight 1 reverse\n      dynamic")
    f.write_text("4")
    assert (await run_attempt(checker, 2)).weight == 6
