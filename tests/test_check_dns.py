"""DNS_CHECK against a real DNS server: dnsmasq (Debian's dnsmasq-base) in a lab
namespace, queried over the lab's wire by the checker running in another host."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.plugins.checks.dns_check import build_query, check_reply

TESTS = Path(__file__).resolve().parent


def test_query_wire_format() -> None:
    q = build_query(0x1234, "www.example.test", "A")
    assert q[:12] == bytes.fromhex("123401000001000000000000")
    assert q[12:] == b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    assert build_query(1, ".", "SOA")[12:] == b"\x00\x00\x06\x00\x01"
    assert check_reply(q, q) == "QR flag is not set"


#: Runs in the client's namespace: one DNS_CHECK attempt per (name, type), as JSON.
CLIENT = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from checkhelp import one_checker
from pykeepalived.core.lvs.checking import run_attempt

async def main():
    out = {}
    for query in sys.argv[3:]:
        name, qtype = query.split()
        checker = one_checker(
            f"DNS_CHECK {{\n connect_timeout 1\n type {qtype}\n name {name}\n}}",
            address=sys.argv[2], port=53)
        result = await run_attempt(checker, 5)
        out[query] = [result.ok, result.message]
    out["retry"] = checker.conf.options.retry
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.netns
def test_dns_check_against_dnsmasq(lab: Any) -> None:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    assert Path(dnsmasq).exists(), "dnsmasq is missing: `make setup` installs dnsmasq-base"
    net = lab(2)
    server, client = net.hosts
    # Authoritative for example.test only (--local: no forwarding, NXDOMAIN for names it
    # does not know), one host with an A record only (AAAA: NODATA), no upstream, no
    # files of the host.
    proc = server.popen(
        [
            *(dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"),
            *("--pid-file=", "--user=root", "--bind-interfaces"),
            *(f"--listen-address={server.ip4}", "--port=53", "--local=/example.test/"),
            "--host-record=www.example.test,192.0.2.1",
        ]
    )
    deadline = time.monotonic() + 10
    while f"{server.ip4}:53 " not in server.run(["ss", "-lnu"]).stdout:
        assert proc.poll() is None and time.monotonic() < deadline, "dnsmasq did not start"
        time.sleep(0.05)

    def attempts(*queries: str) -> dict[str, Any]:
        res = client.run(
            [sys.executable, "-c", CLIENT, str(TESTS), server.ip4, *queries], timeout=60
        )
        return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    got = attempts("www.example.test A", "nope.example.test A", "www.example.test AAAA")
    assert got["retry"] == 3  # keepalived's DNS_CHECK default
    assert got["www.example.test A"][0] is True, got
    assert got["nope.example.test A"] == [False, "RCODE is 3"], got  # NXDOMAIN
    assert got["www.example.test AAAA"] == [False, "no answer records"], got  # NODATA
    # The server gone: no answer, the attempt fails (ICMP port unreachable or timeout).
    proc.terminate()
    proc.wait(10)
    assert attempts("www.example.test A")["www.example.test A"][0] is False
