"""Notifiers end to end: a failover through the real daemon in namespaces.

``h1`` (priority 150) tracks a second interface; ``h2`` (priority 100) is
its backup.  Setting that interface down sends ``h1`` to FAULT and the VIP
to ``h2``; setting it up again brings ``h1`` back (preemption).  Along the
way the test checks, in order:

* the notify scripts (``notify_backup/master/fault`` with their own
  arguments, then the generic ``notify`` with ``INSTANCE VI_1 STATE PRIO``);
* the FIFO lines (``INSTANCE "VI_1" MASTER 150``) as read by a
  ``notify_fifo_script`` reader the daemon starts;
* the smtp_alert mails received by a real aiosmtpd server on a ``mail``
  host of the lab (envelope sender and recipients, subject).

Then the seed's HAProxy + keepalived scenario with a real haproxy, and an
example plugin package's notifier when ``examples/`` provides one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.testing.daemons import KaNode, Node, PyNode, holders, wait_holder
from pykeepalived.testing.lab import Host, Lab
from pykeepalived.testing.scenarios import render, with_env

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
REPO = Path(__file__).resolve().parent.parent

NOTIFY_SH = """#!/bin/sh
echo "$*" >> {log}
"""

FIFO_READER = """#!/bin/sh
# notify_fifo_script: the daemon passes the FIFO path as the last argument.
while read -r line; do echo "$line" >> {out}; done < "$1"
"""

SMTP_SERVER = r"""
import json, sys, time
from aiosmtpd.controller import Controller

addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "helo": session.host_name,
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"

c = Controller(Handler(), hostname=addr, port=port)
c.start()
open(out + ".ready", "w").close()
while True:
    time.sleep(3600)
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _wait_lines(path: Path, n: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines := _lines(path)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines


def start_smtp(host: Host, workdir: Path, port: int = 25) -> Path:
    """A real aiosmtpd server on ``host``; returns the JSON-lines mailbox."""
    box = workdir / "mailbox.jsonl"
    host.popen([sys.executable, "-c", SMTP_SERVER, host.ip4, str(port), str(box)])
    deadline = time.monotonic() + 10
    while not Path(str(box) + ".ready").exists():
        assert time.monotonic() < deadline, "aiosmtpd did not start"
        time.sleep(0.05)
    return box


def _mails(box: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(box)]


def _subject(mail: dict[str, Any]) -> str:
    m = re.search(r"^Subject: (.*)$", mail["data"], re.M)
    return m.group(1).strip() if m else ""


#: h1's transitions, as keepalived 2.2.7 makes them in the same lab: a
#: ``state MASTER`` non-owner starts in BACKUP (init), wins, goes to FAULT
#: and comes back through BACKUP.  h2: BACKUP (init), MASTER, BACKUP.
H1_STATES = ("BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER")
H2_STATES = ("BACKUP", "MASTER", "BACKUP")


@pytest.mark.parametrize("impl", ["pykeepalived", "keepalived"])
def test_failover_notifies_scripts_fifo_and_mail(lab: type[Lab], tmp_path: Path, impl: str) -> None:
    """Run as well with keepalived 2.2.7 on both nodes: every expected value below (the
    scripts' arguments, the FIFO lines, the mails' envelope, subjects and headers) is
    then checked against the real peer in the same lab, so a hand-copied format that
    drifts from keepalived's fails there."""
    net = lab(2)
    h1, h2 = net.hosts
    mail = net.add_host("mail")
    box = start_smtp(mail, tmp_path)
    h1.ip("link", "add", "trk0", "type", "veth", "peer", "name", "trk0p")
    h1.ip("link", "set", "trk0p", "up")
    h1.ip("link", "set", "trk0", "up")

    nodes: dict[str, Node] = {}
    node_class = PyNode if impl == "pykeepalived" else KaNode
    for host, prio in ((h1, 150), (h2, 100)):
        node = node_class(host, tmp_path, host.name)
        d = node.dir
        log = d / "notify.log"
        sh = _script(d / "notify.sh", NOTIFY_SH.format(log=log))
        reader = _script(d / "fifo_reader.sh", FIFO_READER.format(out=d / "fifo.out"))
        global_extra = (
            "    notification_email {\n"
            "        ops@example.com\n        noc@example.org\n    }\n"
            f"    notification_email_from keepalived-{host.name}@example.com\n"
            f"    smtp_server {mail.ip4} 25\n"
            "    smtp_connect_timeout 5\n"
            f"    notify_fifo {d / 'notify.fifo'}\n"
            f"    notify_fifo_script {reader}\n"
        )
        extra = (
            f'    notify_master "{sh} master"\n'
            f'    notify_backup "{sh} backup"\n'
            f'    notify_fault "{sh} fault"\n'
            f'    notify "{sh} notify"\n'
            "    smtp_alert\n"
        )
        track = "    track_interface {\n        trk0\n    }\n" if host is h1 else ""
        config = render(
            host.name,
            priority=prio,
            state="MASTER" if host is h1 else "BACKUP",
            track=track,
            extra=extra,
            global_extra=global_extra,
        )
        nodes[host.name] = node.start(config)
        if host is h1:
            # h1 first, so that h2 never wins the start-up election by starting earlier.
            wait_holder(net.hosts, VIP, "h1", 15)
    n1, n2 = nodes["h1"], nodes["h2"]
    logs = lambda: f"{n1.tail()}\n{n2.tail()}"  # noqa: E731
    try:
        n2.wait_log("Entering BACKUP STATE", 10)
        # Failover: h1's tracked interface goes down -> FAULT, h2 MASTER.
        h1.link_set("trk0", False)
        wait_holder(net.hosts, VIP, "h2", 10)
        n1.wait_log("Entering FAULT STATE", 5)
        # Recovery: h1 preempts again.
        h1.link_set("trk0", True)
        wait_holder(net.hosts, VIP, "h1", 10)
        n2.wait_log("Entering BACKUP STATE", 5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None

    # -- notify scripts: per transition the specific script, then `notify`.
    want1 = []
    for state in H1_STATES:
        want1 += [state.lower(), f"notify INSTANCE VI_1 {state} 150"]
    want2 = []
    for state in H2_STATES:
        want2 += [state.lower(), f"notify INSTANCE VI_1 {state} 100"]
    got1 = _wait_lines(n1.dir / "notify.log", len(want1), 5)
    got2 = _wait_lines(n2.dir / "notify.log", len(want2), 5)
    if impl == "pykeepalived":
        assert (got1, got2) == (want1, want2), logs()
    else:
        # keepalived 2.2.7 forks the notify_* script and the generic notify at once
        # (vrrp_notify.c send_instance_notifies), so the two lines of one transition
        # may come in either order; the transitions themselves are in order.
        def pairs(lines: list[str]) -> list[set[str]]:
            return [set(lines[i : i + 2]) for i in range(0, len(lines), 2)]

        assert (pairs(got1), pairs(got2)) == (pairs(want1), pairs(want2)), logs()

    # -- FIFO lines, read by the daemon-started reader.
    fifo1 = [f'INSTANCE "VI_1" {s} 150' for s in H1_STATES]
    fifo2 = [f'INSTANCE "VI_1" {s} 100' for s in H2_STATES]
    assert _wait_lines(n1.dir / "fifo.out", len(fifo1), 5) == fifo1, logs()
    assert _wait_lines(n2.dir / "fifo.out", len(fifo2), 5) == fifo2, logs()

    # -- smtp_alert: real SMTP transactions with keepalived's subjects, one
    # mail per transition, delivered in event order per instance.
    expected = {
        router: [f"[{router}] VRRP Instance VI_1 - Entering {st} state" for st in states]
        for router, states in (("h1", H1_STATES), ("h2", H2_STATES))
    }

    def by_router() -> dict[str, list[str]]:
        got: dict[str, list[str]] = {"h1": [], "h2": []}
        for m in _mails(box):
            subject = _subject(m)
            got.setdefault(subject[1:3], []).append(subject)
        return got

    deadline = time.monotonic() + 10
    while by_router() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    got = by_router()
    print("\nmails received:", *(s for v in got.values() for s in v), sep="\n  ")
    assert got == expected, logs()
    for m in _mails(box):
        router = _subject(m)[1:3]
        assert m["from"] == f"keepalived-{router}@example.com", m
        assert sorted(m["to"]) == ["noc@example.org", "ops@example.com"], m
        assert re.search(rf"^From: .*keepalived-{router}@example\.com", m["data"], re.M), m
        assert re.search(r"^To: ops@example\.com, noc@example\.org", m["data"], re.M), m


# -- the seed's HAProxy + keepalived scenario ------------------------------------------
HAPROXY = "/usr/sbin/haproxy"

# The seed's haproxy.cfg (same on both nodes), bound to the VIP and pointing
# at a local backend.  `ip_nonlocal_bind` lets the backup bind the VIP too.
HAPROXY_CFG = """\
global
  maxconn 100

defaults
  mode          http
  retries       3
  timeout connect 5s
  timeout client 25s
  timeout server 25s
  timeout queue 10s

listen http-incoming
  mode http
  bind {vip}:8080
  option http-server-close
  option forwardfor
  default_backend app

backend app
  balance roundrobin
  option httpchk GET /
  server websrv1 127.0.0.1:8081 weight 1 maxconn 50 check inter 500
"""

FETCH = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
        print(r.read().decode().strip())
except Exception as exc:
    print(f"ERROR {type(exc).__name__}: {exc}")
"""


def _get(client: Host, url: str) -> str:
    return client.run([sys.executable, "-I", "-S", "-c", FETCH, url], timeout=10).stdout.strip()


def _wait_get(client: Host, url: str, want: str, timeout: float) -> float:
    t0 = time.monotonic()
    got = ""
    while time.monotonic() - t0 < timeout:
        got = _get(client, url)
        if got == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{url}: last answer {got!r}, wanted {want!r} within {timeout}s")


def test_haproxy_follows_the_vip(lab: type[Lab], tmp_path: Path) -> None:
    # make test installs haproxy (APT_PACKAGES): missing is a broken setup, not a skip.
    assert os.path.exists(HAPROXY), "haproxy is missing: `make setup` installs it"
    """Seed scenario: haproxy on both nodes, ``vrrp_script chk_haproxy``
    (``killall -0 haproxy``, weight 2) in each instance; a client reaches
    http://VIP:8080 on whichever node is MASTER: when haproxy dies on the
    master, when it comes back, and when the master node crashes."""
    net = lab(2)
    h1, h2 = net.hosts
    client = net.add_host("client")
    url = f"http://{VIP}:8080/"
    nodes: dict[str, PyNode] = {}
    haproxies: dict[str, subprocess.Popen[Any]] = {}
    # Per-node haproxy binary name: the lab's hosts share one PID namespace,
    # and `killall -0 haproxy` on h1 must not see h2's haproxy.
    names = {h.name: f"haproxy{net.tag[-4:]}{h.name}"[:15] for h in (h1, h2)}

    def start_haproxy(host: Host) -> None:
        d = tmp_path / f"ha-{host.name}"
        haproxies[host.name] = host.popen(
            [str(d / names[host.name]), "-db", "-f", str(d / "haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=open(d / "haproxy.log", "ab"),  # noqa: SIM115 - the child owns it
        )

    for host, prio, state in ((h1, 101, "MASTER"), (h2, 100, "BACKUP")):
        d = tmp_path / f"ha-{host.name}"
        (d / "www").mkdir(parents=True)
        (d / "www" / "index.html").write_text(f"node {host.name}\n")
        host.popen(
            [sys.executable, "-m", "http.server", "8081", "--bind", "127.0.0.1"],
            cwd=d / "www",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        host.run(["sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1"])
        (d / "haproxy.cfg").write_text(HAPROXY_CFG.format(vip=VIP))
        shutil.copy(HAPROXY, d / names[host.name])
        start_haproxy(host)
        defs = (
            "vrrp_script chk_haproxy {\n"
            f'    script "/usr/bin/killall -0 {names[host.name]}"  # check the haproxy process\n'
            "    interval 1\n    weight 2\n}\n"
        )
        track = "    track_script {\n        chk_haproxy\n    }\n"
        node = PyNode(host, tmp_path, host.name)
        node.start(render(host.name, priority=prio, state=state, defs=defs, track=track))
        nodes[host.name] = node
        if host is h1:
            wait_holder(net.hosts, VIP, "h1", 15)
    n1, n2 = nodes["h1"], nodes["h2"]

    def logs() -> str:
        ha = "\n".join(
            f"--- haproxy {h}\n{(tmp_path / f'ha-{h}' / 'haproxy.log').read_text()[-1500:]}"
            for h in ("h1", "h2")
        )
        return f"{n1.tail()}\n{n2.tail()}\n{ha}"

    try:
        n2.wait_log("Entering BACKUP STATE", 10)
        t = _wait_get(client, url, "node h1", 10)
        print(f"\nclient -> {url}: node h1 (after {t:.2f}s)")

        # haproxy dies on the master: 101 < 100 + 2, h2 takes over.
        t0 = time.monotonic()
        haproxies["h1"].kill()
        haproxies["h1"].wait(5)
        _wait_get(client, url, "node h2", 10)
        print(f"haproxy killed on h1 -> client served by h2 after {time.monotonic() - t0:.2f}s")
        # The VIP moved, and to h2 only (a client on h2 alone could also mean two holders).
        assert holders(net.hosts, VIP) == ["h2"]

        # haproxy back on h1: 101 + 2 > 102, h1 preempts.
        t0 = time.monotonic()
        start_haproxy(h1)
        _wait_get(client, url, "node h1", 10)
        print(f"haproxy restarted on h1 -> client served by h1 after {time.monotonic() - t0:.2f}s")

        # The master node crashes: daemon killed, link down, no goodbye.
        t0 = time.monotonic()
        n1.kill()
        h1.link_set("eth0", False)
        _wait_get(client, url, "node h2", 10)
        print(f"master h1 crashed -> client served by h2 after {time.monotonic() - t0:.2f}s")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None


# -- the example plugin package's notifier, pip-installed ------------------------------
EXAMPLE = REPO / "examples" / "pykeepalived-example"


def _pip_install_example(target: Path) -> Path:
    """pip-install the example package (a wheel built offline) into ``target``."""
    # A missing helper is a broken test suite, not a missing capability: no skip.
    from test_plugins import _build_wheel

    wheel = _build_wheel(EXAMPLE, target.parent)
    pip = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"),
            *("--no-cache-dir", "--disable-pip-version-check", "--target", str(target)),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return target


def test_example_plugin_receives_events(lab: type[Lab], tmp_path: Path) -> None:
    """The example's ``example_event_log`` notifier, installed with pip and
    found through its entry point by the daemon, logs every transition."""
    site = _pip_install_example(tmp_path / "site")
    net = lab(1)
    (h1,) = net.hosts
    h1.ip("link", "add", "trk0", "type", "veth", "peer", "name", "trk0p")
    h1.ip("link", "set", "trk0p", "up")
    h1.ip("link", "set", "trk0", "up")
    events = tmp_path / "events.log"
    node = PyNode(h1, tmp_path, "h1")
    with_env(node, {"PYTHONPATH": str(site)})
    node.start(
        render(
            "h1",
            priority=150,
            state="MASTER",
            track="    track_interface {\n        trk0\n    }\n",
            global_extra=f"    example_event_log {events}\n",
        )
    )
    try:
        node.wait_log("Entering MASTER STATE", 10)
        h1.link_set("trk0", False)
        node.wait_log("Entering FAULT STATE", 5)
        h1.link_set("trk0", True)
        node.mark()
        node.wait_log("Entering MASTER STATE", 10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.tail()}") from None
    want = [f"INSTANCE VI_1 {s} 150" for s in H1_STATES]
    lines = _wait_lines(events, len(want), 5)
    # "TIME KIND NAME STATE PRIORITY"
    assert [line.split(" ", 1)[1] for line in lines] == want, (lines, node.tail())
