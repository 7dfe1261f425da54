"""IpvsBackend against a real IPVS kernel, with ipvsadm as the oracle."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time

import pytest
from vmhelp import ipvsadm_conns, ipvsadm_rules, run

from pykeepalived.core.lvs.ipvs import FlushOnStop, IpvsBackend, OpKind, kernel_table
from pykeepalived.core.lvs.manager import Forward, IpvsDest, IpvsService

A = ipaddress.ip_address


def table1() -> list[IpvsService]:
    return [
        IpvsService(
            "TCP",
            A("192.0.2.1"),
            80,
            scheduler="rr",
            persistence_timeout=300,
            persistence_granularity="255.255.255.0",
            destinations=[
                IpvsDest(A("198.51.100.1"), 80, 2),
                IpvsDest(A("198.51.100.2"), 8080, 1, Forward.DR, 100, 10),
            ],
        ),
        IpvsService(
            "UDP",
            A("192.0.2.40"),
            53,
            scheduler="wrr",
            destinations=[IpvsDest(A("198.51.100.81"), 53, 1), IpvsDest(A("198.51.100.82"), 53, 1)],
        ),
        IpvsService(
            "TCP",
            None,
            None,
            fwmark=7,
            scheduler="wrr",
            ops=True,
            destinations=[IpvsDest(A("198.51.100.3"), 0, 5, Forward.DR)],
        ),
        IpvsService(
            "UDP",
            A("2001:db8::1"),
            53,
            scheduler="sh",
            flags=["sh-port", "sh-fallback"],
            persistence_timeout=60,
            persistence_granularity="64",
            family=6,
            destinations=[IpvsDest(A("2001:db8::10"), 53, 1, Forward.TUN)],
        ),
    ]


RULES1 = sorted(
    [
        "-A -t 192.0.2.1:80 -s rr -p 300 -M 255.255.255.0",
        "-a -t 192.0.2.1:80 -r 198.51.100.1:80 -m -w 2",
        "-a -t 192.0.2.1:80 -r 198.51.100.2:8080 -g -w 1",  # -x/-y: not in -S
        "-A -u 192.0.2.40:53 -s wrr",
        "-a -u 192.0.2.40:53 -r 198.51.100.81:53 -m -w 1",
        "-a -u 192.0.2.40:53 -r 198.51.100.82:53 -m -w 1",
        "-A -f 7 -s wrr -o",
        "-a -f 7 -r 198.51.100.3:0 -g -w 5",
        "-A -u [2001:db8::1]:53 -s sh -p 60 -M 64 -b sh-fallback,sh-port",
        "-a -u [2001:db8::1]:53 -r [2001:db8::10]:53 -i -w 1 --tun-type ipip",
    ]
)


def send_udp(address: str, port: int, count: int) -> None:
    """Datagrams from distinct source ports: each is a new IPVS connection."""
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"q", (address, port))


def wait_for_conns(service: str, total: int) -> dict[str, int]:
    # The kernel's estimator folds per-CPU counters into what it reports
    # every 2 s (ip_vs_est.c).
    deadline = time.monotonic() + 10
    while True:
        conns = ipvsadm_conns(service)
        if sum(conns.values()) >= total or time.monotonic() > deadline:
            return conns
        time.sleep(0.25)


async def test_apply_programs_exactly_the_table() -> None:
    backend = IpvsBackend()
    result = await backend.apply(table1())
    assert not result.failed
    assert ipvsadm_rules() == RULES1
    (line,) = [x for x in run("ipvsadm", "-Ln", "--thresholds").splitlines() if ":8080" in x]
    assert line.split()[1:4] == ["198.51.100.2:8080", "100", "10"]
    # What we read back is what we asked for, in the same terms.
    read = await backend.read()
    assert {k: (v.attrs, v.dests) for k, v in read.items()} == {
        k: (v.attrs, v.dests) for k, v in kernel_table(table1()).items()
    }
    again = await backend.apply(table1())
    assert again.done == [] and again.failed == []


async def test_changes_are_edits_in_place_and_connections_survive() -> None:
    backend = IpvsBackend()
    await backend.apply(table1())
    send_udp("192.0.2.40", 53, 4)
    before = wait_for_conns("-u 192.0.2.40:53", 4)
    assert sum(before.values()) == 4 and set(before) == {"198.51.100.81:53", "198.51.100.82:53"}
    entries = run("ipvsadm", "-Lnc").count("192.0.2.40:53")
    assert entries == 4

    new = table1()
    web, dns, fwm, _v6 = new
    dns.destinations[0].weight = 3  # edit in place
    dns.destinations.append(IpvsDest(A("198.51.100.83"), 53, 1))
    dns.scheduler = "rr"  # service edit
    web.destinations.pop()  # one real server goes
    new.remove(fwm)  # one service goes
    new.append(
        IpvsService("SCTP", A("192.0.2.50"), 9, destinations=[IpvsDest(A("198.51.100.9"), 9)])
    )
    result = await backend.apply(new)

    assert [(op.kind, str(op.dest or op.service)) for op in result.done] == [
        (OpKind.DEL_SERVICE, "FWM 7"),
        (OpKind.DEL_DEST, "[198.51.100.2]:8080"),
        (OpKind.EDIT_SERVICE, "[192.0.2.40]:udp:53"),
        (OpKind.EDIT_DEST, "[198.51.100.81]:53"),
        (OpKind.ADD_DEST, "[198.51.100.83]:53"),
        (OpKind.ADD_SERVICE, "[192.0.2.50]:sctp:9"),
        (OpKind.ADD_DEST, "[198.51.100.9]:9"),
    ]
    expected = [r for r in RULES1 if "-f 7" not in r and "198.51.100.2:" not in r]
    expected = [
        r.replace("-A -u 192.0.2.40:53 -s wrr", "-A -u 192.0.2.40:53 -s rr") for r in expected
    ]
    expected = [r.replace("198.51.100.81:53 -m -w 1", "198.51.100.81:53 -m -w 3") for r in expected]
    expected += [
        "-a -u 192.0.2.40:53 -r 198.51.100.83:53 -m -w 1",
        "-A --sctp-service 192.0.2.50:9 -s wlc",
        "-a --sctp-service 192.0.2.50:9 -r 198.51.100.9:9 -m -w 1",
    ]
    assert ipvsadm_rules() == sorted(expected)
    # Same real-server objects: their counters and the connections stay.
    after = ipvsadm_conns("-u 192.0.2.40:53")
    assert after == {**before, "198.51.100.83:53": 0}
    assert run("ipvsadm", "-Lnc").count("192.0.2.40:53") == entries


async def test_only_owned_services_are_removed_and_desired_ones_taken_over() -> None:
    run("ipvsadm", "-A", "-t", "192.0.2.99:80", "-s", "rr")  # someone else's
    run("ipvsadm", "-a", "-t", "192.0.2.99:80", "-r", "198.51.100.99:80", "-m")
    run("ipvsadm", "-A", "-t", "192.0.2.1:80", "-s", "wlc")  # ours-to-be, left over
    run("ipvsadm", "-a", "-t", "192.0.2.1:80", "-r", "198.51.100.7:80", "-m")
    run("ipvsadm", "-a", "-t", "192.0.2.1:80", "-r", "198.51.100.1:80", "-m", "-w", "2")
    foreign = [r for r in ipvsadm_rules() if "192.0.2.99" in r]

    backend = IpvsBackend()
    web = table1()[0]
    result = await backend.apply([web])
    assert [(op.kind, str(op.dest or op.service)) for op in result.done] == [
        (OpKind.EDIT_SERVICE, "[192.0.2.1]:tcp:80"),
        (OpKind.ADD_DEST, "[198.51.100.2]:8080"),
        (OpKind.DEL_DEST, "[198.51.100.7]:80"),
    ]
    assert ipvsadm_rules() == sorted(foreign + [r for r in RULES1 if "192.0.2.1:" in r])

    await backend.apply([])
    assert ipvsadm_rules() == foreign


@pytest.mark.parametrize(
    ("policy", "left"),
    [(FlushOnStop.NO, True), (FlushOnStop.VS, True), (FlushOnStop.ALL, False)],
)
async def test_stop_follows_lvs_flush_on_stop(policy: FlushOnStop, left: bool) -> None:
    run("ipvsadm", "-A", "-t", "192.0.2.99:80", "-s", "rr")
    backend = IpvsBackend(flush_on_stop=policy)
    await backend.apply(table1())
    await backend.stop()
    assert ipvsadm_rules() == (["-A -t 192.0.2.99:80 -s rr"] if left else [])


async def test_lvs_flush_empties_the_table_at_start() -> None:
    run("ipvsadm", "-A", "-t", "192.0.2.99:80", "-s", "rr")
    await IpvsBackend().start()
    assert ipvsadm_rules() == ["-A -t 192.0.2.99:80 -s rr"]
    await IpvsBackend(flush_at_start=True).start()
    assert ipvsadm_rules() == []


async def test_kernel_errors_are_logged_and_the_rest_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="pykeepalived.ipvs")
    bad_sched = IpvsService(
        "TCP",
        A("192.0.2.5"),
        80,
        scheduler="nosuch",
        destinations=[IpvsDest(A("198.51.100.5"), 80)],
    )
    # An IPv6 real server in an IPv4 NAT service: the kernel refuses (mixed
    # families only for tunnelling).
    web = table1()[0]
    web.destinations.append(IpvsDest(A("2001:db8::5"), 80))
    backend = IpvsBackend()
    result = await backend.apply([bad_sched, web])
    assert [(op.kind, code) for op, code in result.failed] == [
        (OpKind.ADD_SERVICE, errno.ENOENT),
        (OpKind.ADD_DEST, errno.EINVAL),
    ]
    assert ipvsadm_rules() == [r for r in RULES1 if "192.0.2.1:" in r]
    assert "IPVS cmd IPVS_CMD_NEW_SERVICE(1) error: No such file or directory(2)" in caplog.text
    # The next apply retries what is still different, and nothing else.
    again = await backend.apply([bad_sched, web])
    assert [op.kind for op, _ in again.failed] == [OpKind.ADD_SERVICE, OpKind.ADD_DEST]
    assert again.done == []


async def test_an_overtaken_apply_is_skipped() -> None:
    backend = IpvsBackend()
    first, second, third = table1(), table1()[:2], table1()[:1]
    results = await asyncio.gather(
        backend.apply(first), backend.apply(second), backend.apply(third)
    )
    assert [r.skipped for r in results] == [False, True, False]
    assert ipvsadm_rules() == [r for r in RULES1 if "192.0.2.1:" in r]
