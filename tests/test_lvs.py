"""Virtual-server manager: quorum, hysteresis, sorry server, inhibit, alpha, groups."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from checkhelp import lines, manager

from pykeepalived.core.config import load_text
from pykeepalived.core.lvs.manager import Forward, VirtualServerManager
from pykeepalived.core.plugin.base import CheckResult, EventKind

UP, DOWN = CheckResult(True), CheckResult(False)


def three(extra: str = "", rs_extra: str = "") -> str:
    reals = "\n".join(
        f"  real_server 192.0.2.{20 + i} 80 {{\n    {rs_extra}\n    TCP_CHECK {{\n connect_port {8000 + i}\n }}\n  }}"
        for i in range(1, 4)
    )
    return (
        f"virtual_server 192.0.2.100 80 {{\n protocol TCP\n  lb_kind DR\n  {extra}\n{reals}\n}}\n"
    )


def dests(m: VirtualServerManager) -> dict[str, int]:
    (svc,) = m.table()
    return {str(d.address): d.weight for d in svc.destinations}


async def test_quorum_with_hysteresis(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m, events, _ = manager(three("quorum 2\n  hysteresis 1"))
    await m.start()
    try:
        vs = m.virtual_servers[0]
        assert vs.quorum_up and dests(m) == {"192.0.2.21": 1, "192.0.2.22": 1, "192.0.2.23": 1}
        m.checker_result(0, 0, 0, False, DOWN)
        m.checker_result(0, 1, 0, False, DOWN)
        # 1 live weight: lost only below quorum - hysteresis = 1
        assert vs.quorum_up
        m.checker_result(0, 2, 0, False, DOWN)
        assert not vs.quorum_up
        assert "Lost quorum 2-1=1 > 0 for VS [192.0.2.100]:tcp:80" in lines(caplog)
        m.checker_result(0, 0, 0, True, UP)
        m.checker_result(0, 1, 0, True, UP)
        assert not vs.quorum_up  # gained only at quorum + hysteresis = 3
        m.checker_result(0, 2, 0, True, UP)
        assert vs.quorum_up
        assert "Gained quorum 2+1=3 <= 3 for VS [192.0.2.100]:tcp:80" in lines(caplog)
        assert "Removing service [192.0.2.21]:tcp:80 from VS [192.0.2.100]:tcp:80" in lines(caplog)
        assert "Adding service [192.0.2.21]:tcp:80 to VS [192.0.2.100]:tcp:80" in lines(caplog)
        vs_events = [(e.state, e.previous) for e in events if e.kind is EventKind.VIRTUAL_SERVER]
        # keepalived starts with quorum down: quorum is "gained" at start-up.
        assert vs_events == [("UP", "DOWN"), ("DOWN", "UP"), ("UP", "DOWN")]
        assert "Gained quorum 2+1=3 <= 3 for VS [192.0.2.100]:tcp:80" in lines(caplog)[:3]
        rs_events = [(e.name, e.state) for e in events if e.kind is EventKind.REAL_SERVER]
        assert rs_events[0] == ("[192.0.2.21]:tcp:80", "DOWN") and len(rs_events) == 6
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        await m.settled()
    finally:
        await m.stop()


async def test_sorry_server_replaces_pool(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m, _, backend = manager(three("quorum 2\n  sorry_server 192.0.2.99 8080"))
    await m.start()
    try:
        m.checker_result(0, 0, 0, False, DOWN)
        m.checker_result(0, 1, 0, False, DOWN)
        assert dests(m) == {"192.0.2.99": 1}
        (svc,) = m.table()
        # keepalived 2.2.7: a DR sorry server takes the virtual server's port
        # ("sorry server ports don't match - resetting").
        assert svc.destinations[0].port == 80 and svc.destinations[0].forward is Forward.DR
        assert "Adding sorry server [192.0.2.99]:tcp:80 to VS [192.0.2.100]:tcp:80" in lines(caplog)
        m.checker_result(0, 0, 0, True, UP)
        assert dests(m) == {"192.0.2.21": 1, "192.0.2.23": 1}
        assert "Removing sorry server [192.0.2.99]:tcp:80 from VS [192.0.2.100]:tcp:80" in lines(
            caplog
        )
        await m.settled()
        assert {str(d.address) for d in backend.pushes[-1][0].destinations} == {
            "192.0.2.21",
            "192.0.2.23",
        }
    finally:
        await m.stop()
    assert backend.pushes[-1] == []  # shutdown removes our services


async def test_inhibit_on_failure_keeps_weight_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m, _, _ = manager(three("inhibit_on_failure", "weight 5"))
    await m.start()
    try:
        m.checker_result(0, 1, 0, False, DOWN)
        assert dests(m) == {"192.0.2.21": 5, "192.0.2.22": 0, "192.0.2.23": 5}
        assert "Disabling service [192.0.2.22]:tcp:80 of VS [192.0.2.100]:tcp:80" in lines(caplog)
        m.checker_result(0, 1, 0, True, UP)
        assert dests(m)["192.0.2.22"] == 5
        assert "Enabling service [192.0.2.22]:tcp:80 of VS [192.0.2.100]:tcp:80" in lines(caplog)
    finally:
        await m.stop()


async def test_sorry_server_inhibit_and_quorum_down_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    m, events, _ = manager(three("alpha\n  sorry_server 192.0.2.99 80\n  sorry_server_inhibit"))
    await m.start()
    try:
        # alpha: every real server starts down, so the sorry server serves.
        assert dests(m) == {"192.0.2.99": 1}
        assert "Starting with quorum down 1-0=1 > 0 for VS [192.0.2.100]:tcp:80" in lines(caplog)
        assert "Enabling sorry server [192.0.2.99]:tcp:80 to VS [192.0.2.100]:tcp:80" in lines(
            caplog
        )
        m.checker_result(0, 2, 0, True, UP, first=True)
        assert dests(m) == {"192.0.2.23": 1, "192.0.2.99": 0}
        # an alpha checker's first failure is notified although nothing changes
        m.checker_result(0, 0, 0, False, DOWN, first=True)
        assert [(e.name, e.state) for e in events if e.kind is EventKind.REAL_SERVER][-1] == (
            "[192.0.2.21]:tcp:80",
            "DOWN",
        )
    finally:
        await m.stop()


async def test_dynamic_weight_and_weight_sum(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m, _, _ = manager(three("quorum 3"))
    await m.start()
    try:
        m.checker_result(0, 0, 0, True, CheckResult(True, weight=7))
        assert dests(m)["192.0.2.21"] == 7
        assert (
            "Changing weight from 1 to 7 for active service [192.0.2.21]:tcp:80 of VS [192.0.2.100]:tcp:80"
            in (lines(caplog))
        )
        m.checker_result(0, 1, 0, False, DOWN)
        m.checker_result(0, 2, 0, False, DOWN)
        assert m.virtual_servers[0].quorum_up  # 7 >= 3
    finally:
        await m.stop()


async def test_several_checkers_all_must_pass() -> None:
    m, _, _ = manager(
        """virtual_server 192.0.2.100 80 {
  protocol TCP
  real_server 192.0.2.21 80 {
    TCP_CHECK {
      connect_port 1
    }
    TCP_CHECK {
      connect_port 2
    }
  }
}"""
    )
    await m.start()
    try:
        m.checker_result(0, 0, 0, False, DOWN)
        m.checker_result(0, 0, 1, False, DOWN)
        m.checker_result(0, 0, 0, True, UP)
        assert dests(m) == {}
        m.checker_result(0, 0, 1, True, UP)
        assert dests(m) == {"192.0.2.21": 1}
    finally:
        await m.stop()


def test_group_expansion_and_fwmark() -> None:
    m, _, _ = manager(
        """virtual_server_group web {
  192.0.2.100-102 80
  198.51.100.0/30 443
  fwmark 7
}
virtual_server group web {
  protocol TCP
  real_server 192.0.2.21 80 {
  }
}
virtual_server fwmark 9 {
  protocol TCP
  lb_algo rr
  persistence_timeout 300
  real_server 2001:db8::21 80 {
  }
}"""
    )
    table = m.table()
    keys = [(str(s.address), s.port, s.fwmark, s.family) for s in table]
    assert keys[:3] == [
        ("192.0.2.100", 80, None, 4),
        ("192.0.2.101", 80, None, 4),
        ("192.0.2.102", 80, None, 4),
    ]
    assert ("198.51.100.3", 443, None, 4) in keys and ("None", None, 7, 4) in keys
    fwm = table[-1]
    assert (fwm.fwmark, fwm.family, fwm.scheduler, fwm.persistence_timeout) == (9, 6, "rr", 300)
    assert fwm.destinations[0].address == ipaddress.ip_address("2001:db8::21")
    assert all(len(s.destinations) == 1 for s in table)


async def test_ha_suspend_follows_vrrp_master() -> None:
    m, _, _ = manager(three("ha_suspend\n  delay_loop 0.05"))
    await m.start()
    try:
        run = m.scheduler.runs[0]
        assert m.virtual_servers[0].suspended
        assert m.scheduler._is_suspended(run)
        m.set_vrrp_master(True)
        assert not m.virtual_servers[0].suspended and not m.scheduler._is_suspended(run)
        m.set_vrrp_master(False)
        assert m.scheduler._is_suspended(run)
    finally:
        await m.stop()


def test_quorum_above_total_weight_is_reduced() -> None:
    # keepalived 2.2.7 corrects it when checking the configuration
    # (core/config/lvs_checks.py); the manager runs with the result.
    m, _, _ = manager(three("quorum 10\n  hysteresis 12"))
    vs = m.virtual_servers[0]
    assert (vs.quorum, vs.hysteresis) == (3, 2)
    failing = [
        d.message for d in load_text(three("quorum 10\n  hysteresis 12")).diagnostics.failing
    ]
    assert any("reducing quorum to 3" in line for line in failing)
