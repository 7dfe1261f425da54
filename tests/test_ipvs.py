"""IPVS backend, host side: kernel-terms conversion and the diff (pure), the
no-IPVS fallback, and the VM session that runs tests/ipvs_vm against a real
IPVS kernel."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pykeepalived.core.lvs.ipvs import (
    DestAttrs,
    DestKey,
    FlushOnStop,
    FwdMethod,
    IpvsBackend,
    KernelService,
    NoIpvsBackend,
    OpKind,
    ServiceAttrs,
    ServiceKey,
    available,
    kernel_table,
    open_backend,
    plan,
)
from pykeepalived.core.lvs.ipvs.netlink import (
    IpvsMsg,
    _netmask_bytes,
    _service_nla,
    parse_service,
)
from pykeepalived.core.lvs.ipvs.table import AF_INET, AF_INET6, SVC_F_PERSISTENT
from pykeepalived.core.lvs.manager import Forward, IpvsDest, IpvsService

A = ipaddress.ip_address
TCP, UDP = 6, 17


def web(*dests: IpvsDest, **kw: object) -> IpvsService:
    svc = IpvsService("TCP", A("192.0.2.1"), 80, scheduler="rr", destinations=list(dests))
    for name, value in kw.items():
        setattr(svc, name, value)
    return svc


def rs(last: int, weight: int = 1, forward: Forward = Forward.NAT) -> IpvsDest:
    return IpvsDest(A(f"198.51.100.{last}"), 80, weight, forward)


WEB = ServiceKey(AF_INET, TCP, A("192.0.2.1"), 80)


def dkey(last: int) -> DestKey:
    return DestKey(AF_INET, A(f"198.51.100.{last}"), 80)


# -- desired table -> kernel terms --------------------------------------------------------------


def test_kernel_terms_of_a_full_service() -> None:
    svc = IpvsService(
        "UDP",
        A("192.0.2.40"),
        53,
        scheduler="sh",
        flags=["sh-port", "sh-fallback"],
        persistence_timeout=60,
        persistence_granularity="255.255.255.0",
        ops=True,
        destinations=[IpvsDest(A("198.51.100.81"), 53, 3, Forward.DR, 100, 10)],
    )
    (ks,) = kernel_table([svc]).values()
    assert ks.key == ServiceKey(AF_INET, UDP, A("192.0.2.40"), 53)
    # persistent 0x1 | one-packet 0x4 | sched1 0x8 (fallback) | sched2 0x10 (port)
    assert ks.attrs == ServiceAttrs("sh", 0x1D, 60, 0xFFFFFF00)
    assert ks.dests == {
        DestKey(AF_INET, A("198.51.100.81"), 53): DestAttrs(FwdMethod.DROUTE, 3, 100, 10)
    }


def test_kernel_terms_defaults_fwmark_and_ipv6() -> None:
    fwm = IpvsService("TCP", None, None, fwmark=7, scheduler="wrr", family=6)
    v6 = IpvsService(
        "TCP",
        A("2001:db8::1"),
        443,
        persistence_timeout=30,
        persistence_granularity="64",
        family=6,
        destinations=[IpvsDest(A("2001:db8::10"), 443, forward=Forward.TUN)],
    )
    plain = web()
    plain.persistence_granularity = "255.255.0.0"  # ignored: not persistent (as keepalived)
    table = kernel_table([fwm, v6, plain])
    assert list(table) == [
        ServiceKey(AF_INET6, fwmark=7),
        ServiceKey(AF_INET6, TCP, A("2001:db8::1"), 443),
        WEB,
    ]
    assert [t.attrs for t in table.values()] == [
        ServiceAttrs("wrr", 0, 0, 128),
        ServiceAttrs("wlc", SVC_F_PERSISTENT, 30, 64),
        ServiceAttrs("rr", 0, 0, 0xFFFFFFFF),
    ]
    assert str(ServiceKey(AF_INET6, fwmark=7)) == "FWM 7 (IPv6)"
    assert str(WEB) == "[192.0.2.1]:tcp:80"


def test_kernel_terms_reject_what_the_kernel_cannot_hold(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        web(flags=["no-such-flag"]),
        IpvsService("ICMP", A("192.0.2.2"), 80),
        IpvsService("TCP", A("2001:db8::2"), 80, family=4),
        IpvsService("TCP", A("192.0.2.3"), 80, persistence_timeout=5, persistence_granularity="x"),
        IpvsService(
            "TCP",
            A("2001:db8::3"),
            80,
            persistence_timeout=5,
            persistence_granularity="129",
            family=6,
        ),
        IpvsService("TCP", None, None),
    ]
    good = IpvsService("TCP", A("192.0.2.9"), 80, destinations=[rs(1), rs(1, 5)])
    table = kernel_table([*bad, good, web(rs(2))])
    assert list(table) == [ServiceKey(AF_INET, TCP, A("192.0.2.9"), 80), WEB]
    assert table[ServiceKey(AF_INET, TCP, A("192.0.2.9"), 80)].dests[dkey(1)].weight == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(bad), errors
    assert "unknown scheduler flag 'no-such-flag'" in errors[0]
    assert "listed twice" in caplog.text


def test_granularity_as_prefix_length() -> None:
    svc = web(persistence_timeout=10, persistence_granularity="24")
    assert kernel_table([svc])[WEB].attrs.netmask == 0xFFFFFF00


# -- the diff -------------------------------------------------------------------------------------


def current_of(*services: IpvsService) -> dict[ServiceKey, KernelService]:
    return kernel_table(services)


def kinds(ops: list) -> list[tuple[str, str | None]]:  # type: ignore[type-arg]
    return [(op.kind.name, str(op.dest) if op.dest else str(op.service)) for op in ops]


def test_plan_empty_kernel_adds_services_then_their_dests() -> None:
    ops = plan(kernel_table([web(rs(1), rs(2))]), {}, set())
    assert kinds(ops) == [
        ("ADD_SERVICE", "[192.0.2.1]:tcp:80"),
        ("ADD_DEST", "[198.51.100.1]:80"),
        ("ADD_DEST", "[198.51.100.2]:80"),
    ]


def test_plan_same_table_is_nothing() -> None:
    table = kernel_table([web(rs(1), rs(2))])
    assert plan(table, current_of(web(rs(2), rs(1))), set(table)) == []


def test_plan_weight_change_is_an_edit_in_place() -> None:
    ops = plan(kernel_table([web(rs(1, 5), rs(2))]), current_of(web(rs(1), rs(2))), {WEB})
    assert kinds(ops) == [("EDIT_DEST", "[198.51.100.1]:80")]
    assert ops[0].dest_attrs == DestAttrs(FwdMethod.MASQ, 5)


def test_plan_adds_before_it_deletes_and_edits_the_service() -> None:
    want = kernel_table([web(rs(2), rs(3, forward=Forward.DR), scheduler="wlc")])
    have = current_of(web(rs(1), rs(2), rs(3)))
    assert kinds(plan(want, have, {WEB})) == [
        ("EDIT_SERVICE", "[192.0.2.1]:tcp:80"),
        ("EDIT_DEST", "[198.51.100.3]:80"),
        ("DEL_DEST", "[198.51.100.1]:80"),
    ]


def test_plan_deletes_only_services_we_own() -> None:
    other = IpvsService("TCP", A("192.0.2.99"), 80, destinations=[rs(9)])
    mine = IpvsService("UDP", A("192.0.2.2"), 53)
    have = current_of(web(rs(1)), other, mine)
    ops = plan({}, have, {WEB, kernel_table([mine]).popitem()[0]})
    assert kinds(ops) == [
        ("DEL_SERVICE", "[192.0.2.1]:tcp:80"),
        ("DEL_SERVICE", "[192.0.2.2]:udp:53"),
    ]
    # An owned service that is gone already needs nothing.
    assert plan({}, {}, {WEB}) == []


def test_plan_takes_over_a_desired_service_it_did_not_create() -> None:
    have = current_of(web(rs(1), rs(7), scheduler="wlc"))
    ops = plan(kernel_table([web(rs(1))]), have, set())
    assert kinds(ops) == [("EDIT_SERVICE", "[192.0.2.1]:tcp:80"), ("DEL_DEST", "[198.51.100.7]:80")]


def test_plan_local_node_report_equals_nat() -> None:
    have = current_of(web(rs(1)))
    old = have[WEB].dests[dkey(1)]
    have[WEB].dests[dkey(1)] = DestAttrs(FwdMethod.LOCALNODE, old.weight)
    assert plan(kernel_table([web(rs(1))]), have, {WEB}) == []
    assert [op.kind for op in plan(kernel_table([web(rs(1, 2))]), have, {WEB})] == [
        OpKind.EDIT_DEST
    ]


# -- netlink encoding round trip (no kernel needed) ----------------------------------------------


@pytest.mark.parametrize(
    ("key", "attrs"),
    [
        (WEB, ServiceAttrs("rr", 0x1, 300, 0xFFFFFF00)),
        (ServiceKey(AF_INET6, TCP, A("2001:db8::1"), 443), ServiceAttrs("wlc", 0x1, 30, 64, "sip")),
        (ServiceKey(AF_INET, fwmark=7), ServiceAttrs("wrr", 0x4, 0, 0xFFFFFFFF)),
    ],
)
def test_service_message_round_trip(key: ServiceKey, attrs: ServiceAttrs) -> None:
    msg = IpvsMsg()
    msg["cmd"] = 1
    msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", _service_nla(key, attrs))]
    msg.encode()
    back = IpvsMsg(msg.data)
    back.decode()
    assert parse_service(back.get_attr("IPVS_CMD_ATTR_SERVICE")) == (key, attrs)


def test_ipv6_netmask_is_a_prefix_length_in_host_order() -> None:
    assert _netmask_bytes(AF_INET6, 64) == (64).to_bytes(4, sys.byteorder)
    assert _netmask_bytes(AF_INET, 0xFFFFFF00) == b"\xff\xff\xff\x00"


# -- no IPVS here ---------------------------------------------------------------------------------


def test_flush_on_stop_words() -> None:
    assert FlushOnStop.from_words(None) is FlushOnStop.NO
    assert FlushOnStop.from_words([]) is FlushOnStop.ALL
    assert FlushOnStop.from_words(["VS"]) is FlushOnStop.VS
    with pytest.raises(ValueError, match="VS expected"):
        FlushOnStop.from_words(["ALL"])


def test_without_ipvs_a_null_backend_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    reason = asyncio.run(available(load_module=False))
    if reason is None:
        pytest.skip("this kernel has IPVS; the fallback cannot be seen here")
    assert "IPVS" in reason
    backend = asyncio.run(open_backend(load_module=False, kind="ipvs"))
    assert isinstance(backend, NoIpvsBackend)
    caplog.set_level(logging.WARNING)
    backend.apply([web(rs(1))])
    backend.apply([])
    said = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(said) == 1 and reason in said[0]
    assert backend.services == []


def test_start_and_stop_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    if asyncio.run(available(load_module=False)) is None:
        pytest.skip("this kernel has IPVS; the failure path cannot be seen here")
    backend = IpvsBackend(flush_at_start=True, flush_on_stop=FlushOnStop.VS)
    asyncio.run(backend.start())
    asyncio.run(backend.stop())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "IPVS: cannot flush the table at startup: no IPVS generic netlink family (ip_vs not loaded)",
        "IPVS: cannot clean up the table at shutdown: no IPVS generic netlink family (ip_vs not loaded)",
    ]


# -- the VM session -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
IPVS_VM = REPO.parent / "shared" / "tools" / "ipvs-vm"
VM_TIMEOUT = 280


def _vm_missing() -> str | None:
    if not IPVS_VM.exists():
        return f"no {IPVS_VM} (the IPVS VM tool lives in ../shared beside the checkout)"
    if os.geteuid() != 0:
        return "the IPVS VM needs root (apt, /var/cache/ipvs-vm)"
    if shutil.which("qemu-system-x86_64") is None and shutil.which("apt-get") is None:
        return "no qemu-system-x86_64 and no apt-get to install it"
    return None


#: The VM session started in the background (``start_vm_session``), if any.
_VM: dict[str, Any] = {}


def _vm_command() -> list[str]:
    python = Path(sys.executable)
    cmd = [str(IPVS_VM), "--timeout", str(VM_TIMEOUT), "--", str(python), "-m", "pytest"]
    return [*cmd, "tests/ipvs_vm", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]


def start_vm_session() -> None:
    """Boot the VM session now, in the background (tests/conftest.py calls this
    once the tests are collected).  It spends about three minutes on one core
    of an emulated CPU; run beside the rest of the suite instead of within
    it, ``make test`` is that much shorter.  Its output goes to a temporary
    file; :func:`test_ipvs_in_vm` waits for it and judges it."""
    if "proc" in _VM or _vm_missing() is not None:
        return
    out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  # read by test_ipvs_in_vm
    _VM["out"] = out
    _VM["started"] = time.monotonic()
    _VM["proc"] = subprocess.Popen(
        _vm_command(),
        cwd=REPO,
        env=dict(os.environ, PKA_IPVS_VM="1"),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_vm_session() -> None:
    """End a VM session still running (an interrupted or failed pytest run)."""
    proc = _VM.get("proc")
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.ipvs
def test_ipvs_in_vm() -> None:
    """tests/ipvs_vm in one VM boot: real IPVS, ipvsadm and keepalived as oracles."""
    missing = _vm_missing()
    if missing:
        pytest.skip(missing)
    start_vm_session()  # already running unless this test was picked alone
    proc: subprocess.Popen[str] = _VM["proc"]
    try:
        proc.wait(timeout=max(1.0, _VM["started"] + VM_TIMEOUT + 60 - time.monotonic()))
    except subprocess.TimeoutExpired:
        stop_vm_session()
    took = time.monotonic() - _VM["started"]
    _VM["out"].seek(0)
    stdout = _VM["out"].read()
    print(stdout)
    print(f"ipvs-vm session: {took:.1f}s (started when the tests were collected)")
    # Exit 125 is ipvs-vm's "the VM itself failed" (no kernel with ip_vs, apt-get failed,
    # qemu died, the guest never ran the command).  The capabilities it needs were checked
    # above (root, and qemu or apt-get to install it; /dev/kvm is optional: without it
    # the guest is emulated by TCG), so a VM that fails here is a failure, not a skip.
    assert proc.returncode != 125, f"the IPVS VM failed to run:\n{stdout[-6000:]}"
    assert proc.returncode == 0, stdout[-6000:]
    assert " passed" in stdout and " skipped" not in stdout, stdout[-3000:]
