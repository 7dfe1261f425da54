"""--http-listen: /status JSON, /metrics in Prometheus format, /healthz."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pykeepalived.core.shell.cli import main as cli_main
from pykeepalived.core.shell.http_api import HttpApi, parse_listen, render_metrics
from pykeepalived.testing.daemons import PyNode, instance, wait_holder
from pykeepalived.testing.lab import free_port

SNAPSHOT: dict[str, Any] = {
    "uptime": 12.5,
    "vrrp_instances": [
        {
            "name": "VI_1",
            "interface": "eth0",
            "state": "MASTER",
            "priority": 150,
            "effective_priority": 148,
            "counters": {
                "adverts_sent": 7,
                "adverts_received": 2,
                "rx_drop_auth_failure": 3,
                "became_master": 1,
                "became_backup": 1,
            },
        }
    ],
    "virtual_servers": [
        {
            "virtual_server": "[192.0.2.100]:tcp:80",
            "quorum_up": True,
            "real_servers": [
                {"real_server": "[192.0.2.21]:tcp:80", "alive": True, "weight": 3},
                {"real_server": "[192.0.2.22]:tcp:80", "alive": False, "weight": 0},
            ],
        }
    ],
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition as prometheus_client's own text parser reads it (it raises on
    anything a Prometheus server would reject: bad names, labels, values, TYPE lines)."""
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name  # every family has its HELP
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in got, key  # no sample twice
            got[key] = s.value
    return got


def test_render_metrics() -> None:
    text = render_metrics(SNAPSHOT)
    samples = _samples(text)
    expected = {
        ("pykeepalived_vrrp_state", (("instance", "VI_1"), ("interface", "eth0"))): 2,
        ("pykeepalived_vrrp_effective_priority", (("instance", "VI_1"),)): 148,
        ("pykeepalived_vrrp_adverts_sent_total", (("instance", "VI_1"),)): 7,
        (
            "pykeepalived_vrrp_received_dropped_total",
            (("instance", "VI_1"), ("reason", "auth_failure")),
        ): 3,
        ("pykeepalived_vrrp_transitions_total", (("instance", "VI_1"), ("state", "MASTER"))): 1,
        ("pykeepalived_lvs_quorum_up", (("virtual_server", "[192.0.2.100]:tcp:80"),)): 1,
        (
            "pykeepalived_lvs_real_server_up",
            (("real_server", "[192.0.2.22]:tcp:80"), ("virtual_server", "[192.0.2.100]:tcp:80")),
        ): 0,
    }
    assert {k: samples.get(k) for k in expected} == expected
    # Counters are declared as counters (the parser strips _total from the family name).
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["pykeepalived_vrrp_adverts_sent"] == "counter"
    assert types["pykeepalived_vrrp_state"] == "gauge"


def test_metrics_label_values_are_escaped() -> None:
    # Instance names are free text in keepalived.conf: quotes, backslashes and newlines
    # must come out escaped, or the whole scrape is rejected.
    weird = 'VI "a"\\b\nc'
    snap = json.loads(json.dumps(SNAPSHOT))
    snap["vrrp_instances"][0]["name"] = weird
    samples = _samples(render_metrics(snap))
    assert (("instance", weird),) in {k[1] for k in samples}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9650", ("127.0.0.1", 9650)),
        ("[::1]:80", ("::1", 80)),
        ("9650", ("127.0.0.1", 9650)),  # loopback unless told otherwise
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:", ":80", "127.0.0.1:0", "a:70000", "0"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_cli_rejects_bad_listen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["--http-listen", "nonsense", "-t", "-f", "/dev/null"])
    assert exc.value.code == 2
    assert "--http-listen" in capsys.readouterr().err


async def test_server_in_process() -> None:
    port = free_port()
    api = HttpApi("127.0.0.1", port, lambda: SNAPSHOT)
    await api.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/status") as r:
                assert r.status == 200
                assert (await r.json())["vrrp_instances"][0]["name"] == "VI_1"
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert _samples(await r.text())[("pykeepalived_up", ())] == 1
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert await r.text() == "ok\n"
    finally:
        await api.close()


class HttpNode(PyNode):
    port = 9650

    def argv(self) -> list[str]:
        return [*super().argv(), "--http-listen", f"127.0.0.1:{self.port}"]

    def get(self, path: str) -> str:
        code = (
            "import urllib.request,sys;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{self.port}{path}',"
            " timeout=5).read().decode())"
        )
        return self.host.run([sys.executable, "-c", code]).stdout


@pytest.mark.netns
def test_daemon_serves_metrics(lab: Any, tmp_path: Path) -> None:
    net = lab(1)
    (h1,) = net.hosts
    node = HttpNode(h1, tmp_path, "master")
    node.start("global_defs {\n router_id m\n}\n" + instance(priority=150, state="MASTER"))
    wait_holder(net.hosts, "192.0.2.100", "h1", 10)
    metrics = node.get("/metrics")
    # The whole live scrape parses (a real daemon's snapshot has every family filled).
    samples = _samples(metrics)
    assert samples[("pykeepalived_vrrp_state", (("instance", "VI_1"), ("interface", "eth0")))] == 2
    status = json.loads(node.get("/status"))
    assert status["vrrp_instances"][0]["state"] == "MASTER"
    assert node.get("/healthz") == "ok\n"
    assert node.terminate() == 0
