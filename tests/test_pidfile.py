"""The pid-file check treats a killed, not yet reaped daemon as gone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pykeepalived.core.shell.pidfile import alive, running_pid


def test_a_zombie_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        # not reaped: signal 0 still finds it, /proc says Z
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not alive(proc.pid)
        pid_file = tmp_path / "keepalived.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert running_pid(str(pid_file)) is None
        assert not pid_file.exists()  # the stale file is removed
    finally:
        proc.wait()


def test_a_live_process_is_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file = tmp_path / "keepalived.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert alive(proc.pid)
        assert running_pid(str(pid_file)) == proc.pid
    finally:
        proc.kill()
        proc.wait()
