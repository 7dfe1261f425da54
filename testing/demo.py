"""``make demo``: a throwaway namespace lab where pykeepalived nodes hold a VIP.

Three nodes (h1 priority 150, h2 120, h3 100) run pykeepalived with the
embedded keepalived.conf below on a bridge in network namespaces of their
own.  The demo shows who holds the VIP, kills the master with SIGKILL,
measures how long until the next node owns the VIP, stops the new master
gracefully (priority-0 advert) and measures again, then restarts the first
node and shows it preempting back.  Everything is removed at the end, also
on failure or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pykeepalived.testing.lab import Host, Lab, requires_netns

VIP = "192.0.2.100"

CONFIG = """\
# Embedded demo configuration: the seed documents' two-node VRRP example,
# with documentation addresses.
global_defs {{
    router_id {name}
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass demo1234
    }}
    virtual_ipaddress {{
        {vip}/24
    }}
    notify "{notify}"
}}
"""

NOTIFY = """#!/bin/sh
echo "$(date +%H:%M:%S.%N | cut -c1-12) notify: $*" >> "{log}"
"""


def _say(msg: str) -> None:
    print(msg, flush=True)


def holder(hosts: list[Host]) -> str | None:
    owners = [h.name for h in hosts if VIP in h.addresses()]
    if len(owners) > 1:
        return "+".join(owners)
    return owners[0] if owners else None


def wait_holder(hosts: list[Host], want: str | None, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if holder(hosts) == want:
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def main() -> int:
    reason = requires_netns()
    if reason is not None:
        _say(f"demo needs network namespaces: {reason}")
        return 3
    exe = shutil.which("pykeepalived") or os.path.join(
        os.path.dirname(sys.executable), "pykeepalived"
    )
    work = Path(tempfile.mkdtemp(prefix="pykeepalived-demo-"))
    notify_log = work / "notify.log"
    notify = work / "notify.sh"
    notify.write_text(NOTIFY.format(log=notify_log))
    notify.chmod(0o755)
    prios = {"h1": ("MASTER", 150), "h2": ("BACKUP", 120), "h3": ("BACKUP", 100)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with Lab(3) as lab:
            hosts = list(lab)

            def start(h: Host) -> None:
                state, prio = prios[h.name]
                conf = work / f"{h.name}.conf"
                conf.write_text(
                    CONFIG.format(name=h.name, state=state, priority=prio, vip=VIP, notify=notify)
                )
                logf = open(work / f"{h.name}.log", "ab")  # noqa: SIM115 - closed with the lab
                procs[h.name] = h.popen(
                    [
                        *(exe, "-n", "-l", "-f", str(conf), "-p", str(work / f"{h.name}.pid")),
                        # the hosts share one filesystem: a status socket each
                        *("--status-socket", str(work / f"{h.name}.sock")),
                    ],
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )

            _say(f"pykeepalived demo: three nodes on a bridge, one VIP ({VIP})")
            for h in hosts:
                _say(f"  {h.name}: {h.ip4:<13} priority {prios[h.name][1]}")
                start(h)
            t = wait_holder(hosts, "h1", 15)
            _say(
                f"\n[1] election: VIP on {holder(hosts)} after {t:.2f}s"
                if t
                else "\n[1] election FAILED"
            )
            if t is None:
                return _fail(work)
            time.sleep(1)

            _say("\n[2] h1 crashes: kill -9 and its link goes down, no goodbye advert")
            t0 = time.monotonic()
            procs["h1"].kill()
            hosts[0].link_set("eth0", False)
            t = wait_holder(hosts[1:], "h2", 10)
            _say(
                f"    VIP moved to h2 in {time.monotonic() - t0:.2f}s (3 x advert_int + skew)"
                if t
                else "    FAILED"
            )
            if t is None:
                return _fail(work)

            _say("\n[3] stop h2 gracefully (SIGTERM): it sends a priority-0 advert")
            t0 = time.monotonic()
            procs["h2"].terminate()
            t = wait_holder(hosts[1:], "h3", 10)
            _say(
                f"    VIP moved to h3 in {time.monotonic() - t0:.2f}s (skew time only)"
                if t
                else "    FAILED"
            )
            if t is None:
                return _fail(work)

            _say("\n[4] h1 comes back (rebooted, priority 150): it preempts h3")
            hosts[0].ip("addr", "del", f"{VIP}/24", "dev", "eth0", check=False)
            hosts[0].link_set("eth0", True)
            t0 = time.monotonic()
            start(hosts[0])
            t = wait_holder(hosts, "h1", 15)
            _say(f"    VIP back on h1 after {time.monotonic() - t0:.2f}s" if t else "    FAILED")
            if t is None:
                return _fail(work)
            time.sleep(0.5)

            _say("\nnotify script calls, in order:")
            if notify_log.exists():
                for line in notify_log.read_text().splitlines():
                    _say("    " + line)
            _say("\nlog of h3 (keepalived's wording):")
            for line in (work / "h3.log").read_text().splitlines()[-8:]:
                _say("    " + line)
        _say("\ndemo finished; namespaces and processes removed.")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fail(work: Path) -> int:
    for log in sorted(work.glob("*.log")):
        _say(f"--- {log.name}")
        _say(log.read_text()[-3000:])
    return 1


if __name__ == "__main__":
    sys.exit(main())
