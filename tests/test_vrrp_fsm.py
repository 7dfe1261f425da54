"""Unit and property tests for the pure VRRP state machine."""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykeepalived.core.vrrp.fsm import (
    ALLOWED_TRANSITIONS,
    LOG_DETAIL,
    Action,
    AddVips,
    FsmParams,
    InvalidTransition,
    Log,
    PriorityChanged,
    ReceivedLowerPriority,
    RemoveVips,
    RxAdvert,
    SendAdvert,
    SendGratuitous,
    State,
    Transition,
    VrrpMachine,
    VrrpStateError,
    WantMaster,
    format_ip,
    master_down_interval,
    skew_time,
)

T = TypeVar("T")


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


IP1 = ip("192.0.2.1")
IP2 = ip("192.0.2.2")
IP0 = ip("192.0.2.0")
PEER = ip("192.0.2.12")


def params(**kw: Any) -> FsmParams:
    base: dict[str, Any] = {
        "name": "VI_1",
        "vrid": 51,
        "version": 3,
        "priority": 100,
        "advert_int": 1.0,
        "initial_state": State.BACKUP,
        "primary_ip": IP1,
    }
    base.update(kw)
    return FsmParams(**base)


def machine(**kw: Any) -> VrrpMachine:
    return VrrpMachine(params(**kw))


def of(actions: list[Action], cls: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, cls)]


def msgs(actions: list[Action]) -> list[str]:
    return [a.message for a in of(actions, Log)]


def adv(priority: int, src: bytes = PEER, advert_int: float = 1.0) -> RxAdvert:
    return RxAdvert(priority=priority, src_ip=src, advert_int=advert_int)


def started_master(**kw: Any) -> VrrpMachine:
    m = machine(**kw)
    m.start(0.0)
    deadline = m.next_deadline
    assert deadline is not None
    m.timer_expired(deadline)
    assert m.state is State.MASTER
    return m


# ---------------------------------------------------------------- timing


def test_skew_and_master_down_values_v2() -> None:
    assert skew_time(100, 1.0, 2) == 0.609375
    # VRRPv2 skew does not scale with the advert interval.
    assert skew_time(100, 5.0, 2) == 0.609375
    assert master_down_interval(100, 1.0, 2) == 3.609375
    assert master_down_interval(100, 2.0, 2) == 6.609375
    assert master_down_interval(255, 1.0, 2) == 3 + 1 / 256
    assert master_down_interval(1, 1.0, 2) == 3 + 255 / 256
    assert master_down_interval(100, 1.0, 2, down_timer_adverts=5) == 5.609375


def test_skew_and_master_down_values_v3() -> None:
    assert skew_time(100, 1.0, 3) == 0.609375
    assert skew_time(100, 2.0, 3) == 1.21875
    assert master_down_interval(100, 2.0, 3) == 7.21875
    assert master_down_interval(200, 0.5, 3) == 1.609375
    assert master_down_interval(255, 0.01, 3) == pytest.approx(0.03 + 0.01 / 256)


def test_machine_timing_properties() -> None:
    m = machine(version=2, priority=200, advert_int=2.0)
    assert m.skew_time == 56 / 256
    assert m.master_down_interval == 6 + 56 / 256
    owner = machine(priority=255, initial_state=State.BACKUP)
    assert owner.skew_time == 1 / 256


# ---------------------------------------------------------------- start


def test_start_backup_arms_master_down_timer() -> None:
    m = machine()
    assert m.state is State.INIT and m.next_deadline is None
    actions = m.start(10.0)
    assert actions == [
        Log(logging.INFO, "(VI_1) Entering BACKUP STATE (init)"),
        Transition(State.INIT, State.BACKUP, "init"),
    ]
    assert m.state is State.BACKUP
    assert m.next_deadline == 10.0 + 3.609375


def test_start_twice_raises() -> None:
    m = machine()
    m.start(0.0)
    with pytest.raises(VrrpStateError):
        m.start(1.0)


def test_backup_times_out_to_master_with_keepalived_ordering() -> None:
    m = machine()
    m.start(0.0)
    assert m.timer_expired(3.0) == []  # early call is harmless
    assert m.state is State.BACKUP
    actions = m.timer_expired(3.609375)
    assert actions == [
        Log(LOG_DETAIL, "(VI_1) Receive advertisement timeout"),
        SendAdvert(100),
        Log(logging.INFO, "(VI_1) Entering MASTER STATE"),
        AddVips(),
        SendGratuitous(),
        Transition(State.BACKUP, State.MASTER, "master down timer expired"),
    ]
    assert m.state is State.MASTER
    assert m.next_deadline == 4.609375
    assert m.timer_expired(4.609375) == [SendAdvert(100)]
    assert m.next_deadline == 5.609375


def test_owner_goes_master_immediately() -> None:
    m = machine(priority=255, initial_state=State.MASTER)
    actions = m.start(5.0)
    assert actions[0] == SendAdvert(255)
    assert of(actions, Transition) == [Transition(State.INIT, State.MASTER, "address owner")]
    assert of(actions, AddVips) == [AddVips()]
    assert "(VI_1) Entering MASTER STATE" in msgs(actions)
    assert m.state is State.MASTER
    assert m.next_deadline == 6.0


def test_owner_ignores_priority_changes() -> None:
    m = machine(priority=255, initial_state=State.MASTER)
    m.start(0.0)
    assert m.set_priority(1.0, 10) == []
    assert m.effective_priority == 255


def test_owner_with_state_backup_waits_master_down() -> None:
    m = machine(priority=255, initial_state=State.BACKUP)
    m.start(0.0)
    assert m.state is State.BACKUP
    assert m.next_deadline == 3 + 1 / 256


def test_initial_master_non_owner_waits_master_down_interval() -> None:
    """keepalived 2.2.7 (measured in a namespace lab): a non-owner with
    ``state MASTER`` waits the full Master_Down_Interval, like a backup."""
    m = machine(priority=100, initial_state=State.MASTER, advert_int=2.0)
    actions = m.start(0.0)
    assert "(VI_1) Entering BACKUP STATE (init)" in msgs(actions)
    assert m.state is State.BACKUP
    down = 3 * 2.0 + (256 - 100) * 2.0 / 256  # v3: Skew_Time scales with the interval
    assert m.next_deadline == down
    assert m.timer_expired(down - 0.01) == []
    m.timer_expired(down)
    assert m.state is State.MASTER


def test_initial_master_non_owner_yields_to_higher_advert() -> None:
    m = machine(priority=100, initial_state=State.MASTER)
    m.start(0.0)
    m.advert_received(0.5, adv(150))
    assert m.state is State.BACKUP
    assert m.next_deadline == 0.5 + 3.609375
    assert not m.wants_master


def test_initial_master_ignores_nopreempt_and_preempt_delay() -> None:
    m = machine(initial_state=State.MASTER, preempt=False, preempt_delay=30.0)
    assert m.preempt is True
    assert m.preempt_delay == 0.0
    b = machine(preempt=False, preempt_delay=30.0)
    assert b.preempt is False and b.preempt_delay == 0.0


def test_start_faulted() -> None:
    m = machine()
    assert m.set_fault(0.0, True) == []
    actions = m.start(1.0)
    assert actions == [
        Log(logging.INFO, "(VI_1) Entering FAULT STATE (init)"),
        Transition(State.INIT, State.FAULT, "init"),
    ]
    assert m.next_deadline is None
    m.set_fault(2.0, False)
    assert m.state is State.BACKUP
    assert m.next_deadline == 2.0 + 3.609375


def test_events_before_start_are_ignored() -> None:
    m = machine()
    assert m.advert_received(0.0, adv(200)) == []
    assert m.timer_expired(100.0) == []
    assert m.state is State.INIT


# ---------------------------------------------------------------- backup rx


def test_backup_accepts_higher_advert_and_resets_timer() -> None:
    m = machine()
    m.start(0.0)
    actions = m.advert_received(2.0, adv(150))
    assert "(VI_1) master set to 192.0.2.12" in msgs(actions)
    assert m.next_deadline == 2.0 + 3.609375
    assert m.master_src == PEER and m.master_priority == 150
    actions = m.advert_received(3.0, adv(150, src=IP2))
    assert "(VI_1) master changed from 192.0.2.12 to 192.0.2.2" in msgs(actions)


def test_backup_equal_priority_accepts_even_with_higher_ip() -> None:
    m = machine(primary_ip=ip("192.0.2.200"))
    m.start(0.0)
    m.advert_received(1.0, adv(100, src=IP2))
    assert m.next_deadline == 1.0 + 3.609375


def test_priority_zero_fast_takeover() -> None:
    m = machine()
    m.start(0.0)
    m.advert_received(1.0, adv(150))
    actions = m.advert_received(2.0, adv(0))
    assert "(VI_1) Backup received priority 0 advertisement" in msgs(actions)
    assert m.next_deadline == 2.0 + 0.609375
    m.timer_expired(2.609375)
    assert m.state is State.MASTER


def test_preempt_lower_advert_is_discarded() -> None:
    m = machine(priority=150)
    m.start(0.0)
    deadline = m.next_deadline
    actions = m.advert_received(1.0, adv(90))
    assert (
        msgs(actions)[-1]
        == "(VI_1) received lower priority (90) advert from 192.0.2.12 - discarding"
    )
    assert m.next_deadline == deadline
    assert deadline is not None
    m.timer_expired(deadline)
    assert m.state is State.MASTER


def test_nopreempt_accepts_lower_advert() -> None:
    m = machine(priority=150, preempt=False)
    m.start(0.0)
    for t in range(1, 20):
        m.advert_received(float(t), adv(90))
        assert m.next_deadline == t + m.master_down_interval
    assert m.state is State.BACKUP


def test_v3_backup_learns_master_adver_int() -> None:
    m = machine(version=3, advert_int=1.0)
    m.start(0.0)
    actions = m.advert_received(1.0, adv(150, advert_int=0.5))
    assert m.master_adver_int == 0.5
    assert "(VI_1) advertisement interval updated from 1000ms to 500ms by master" in msgs(actions)
    assert m.next_deadline == 1.0 + 1.5 + 156 * 0.5 / 256
    # becoming master restores the locally configured interval
    m.timer_expired(1.0 + 1.5 + 156 * 0.5 / 256)
    assert m.state is State.MASTER
    assert m.master_adver_int == 1.0
    assert m.next_deadline == pytest.approx(2.5 + 156 * 0.5 / 256 + 1.0)


def test_v3_discarded_advert_does_not_teach_interval() -> None:
    m = machine(version=3, priority=150)
    m.start(0.0)
    m.advert_received(1.0, adv(100, advert_int=4.0))
    assert m.master_adver_int == 1.0


def test_v2_does_not_learn_interval() -> None:
    m = machine(version=2)
    m.start(0.0)
    m.advert_received(1.0, adv(150, advert_int=5.0))
    assert m.master_adver_int == 1.0
    assert m.next_deadline == 1.0 + 3.609375


def test_v3_master_learns_interval_when_yielding() -> None:
    m = started_master(version=3)
    m.advert_received(10.0, adv(200, advert_int=2.0))
    assert m.state is State.BACKUP
    assert m.master_adver_int == 2.0
    assert m.next_deadline == 10.0 + 6.0 + 156 * 2.0 / 256


# ---------------------------------------------------------------- preempt delay


def test_preempt_delay() -> None:
    m = machine(priority=150, preempt_delay=10.0)
    m.start(0.0)
    actions = m.advert_received(1.0, adv(100))
    assert "(VI_1) start preempt delay (10.000000)" in msgs(actions)
    assert m.preempt_time == 11.0
    for t in range(2, 11):
        m.advert_received(float(t), adv(100))
        assert m.next_deadline == t + m.master_down_interval
    # preempt_time is reached: the lower-priority advert is now discarded
    actions = m.advert_received(11.0, adv(100))
    assert "discarding" in msgs(actions)[-1]
    assert m.next_deadline == 10.0 + m.master_down_interval
    m.timer_expired(10.0 + m.master_down_interval)
    assert m.state is State.MASTER


def test_preempt_delay_stopped_by_higher_advert_and_reset_on_backup() -> None:
    m = machine(priority=150, preempt_delay=10.0)
    m.start(0.0)
    m.advert_received(1.0, adv(100))
    actions = m.advert_received(2.0, adv(200))
    assert "(VI_1) stop preempt delay" in msgs(actions)
    assert m.preempt_time is None
    m.advert_received(3.0, adv(100))
    assert m.preempt_time == 13.0
    # go master and back: delay is reset
    m.advert_received(20.0, adv(100))
    deadline = m.next_deadline
    assert deadline is not None
    m.timer_expired(deadline)
    assert m.state is State.MASTER
    m.advert_received(30.0, adv(200))
    assert m.state is State.BACKUP
    assert m.preempt_time is None


# ---------------------------------------------------------------- master rx


def test_master_yields_to_higher_priority() -> None:
    m = started_master()
    actions = m.advert_received(10.0, adv(150))
    assert actions == [
        Log(
            logging.INFO,
            "(VI_1) Master received advert from 192.0.2.12 with higher priority 150, ours 100",
        ),
        Log(logging.INFO, "(VI_1) Entering BACKUP STATE"),
        RemoveVips(),
        Transition(State.MASTER, State.BACKUP, "advert from 192.0.2.12 with higher priority 150"),
    ]
    assert m.state is State.BACKUP
    assert m.next_deadline == 10.0 + 3.609375
    assert m.master_src == PEER


def test_master_higher_prio_send_advert() -> None:
    m = started_master(higher_prio_send_advert=True)
    actions = m.advert_received(10.0, adv(150))
    assert actions[0] == SendAdvert(100)
    assert m.state is State.BACKUP


def test_master_receives_lower_priority() -> None:
    m = started_master(priority=150)
    actions = m.advert_received(10.5, adv(90))
    assert actions == [
        Log(
            logging.INFO,
            "(VI_1) Received advert from 192.0.2.12 with lower priority 90, ours 150, "
            "forcing new election",
        ),
        SendAdvert(150),
        ReceivedLowerPriority(PEER, 90),
    ]
    assert m.state is State.MASTER
    assert m.next_deadline == 11.5


def test_master_lower_prio_no_advert_and_garp() -> None:
    m = started_master(priority=150, lower_prio_no_advert=True, garp_lower_prio_repeat=5)
    deadline = m.next_deadline
    actions = m.advert_received(4.0, adv(90))
    assert of(actions, SendAdvert) == []
    assert of(actions, SendGratuitous) == [SendGratuitous(lower_prio=True)]
    assert of(actions, ReceivedLowerPriority) == [ReceivedLowerPriority(PEER, 90)]
    assert msgs(actions) == [
        "(VI_1) Received advert from 192.0.2.12 with lower priority 90, ours 150"
    ]
    assert m.next_deadline == deadline


def test_master_receives_priority_zero() -> None:
    m = started_master()
    actions = m.advert_received(4.0, adv(0))
    assert actions == [
        SendAdvert(100),
        Log(LOG_DETAIL, "(VI_1) Master received priority 0 message"),
    ]
    assert m.state is State.MASTER
    assert m.next_deadline == 5.0


def test_equal_priority_tie_break() -> None:
    m = started_master(primary_ip=IP1)
    actions = m.advert_received(4.0, adv(100, src=IP0))
    assert m.state is State.MASTER
    assert of(actions, SendAdvert) == [SendAdvert(100)]
    actions = m.advert_received(5.0, adv(100, src=IP2))
    assert m.state is State.BACKUP
    assert msgs(actions)[0] == (
        "(VI_1) Master received advert from 192.0.2.2 with same priority 100 "
        "but higher IP address than ours"
    )


def test_equal_priority_from_own_address() -> None:
    m = started_master(primary_ip=IP1)
    actions = m.advert_received(4.0, adv(100, src=IP1))
    assert m.state is State.MASTER
    assert "WARNING - equal priority advert" in msgs(actions)[0]


def test_ipv6_tie_break() -> None:
    m = started_master(primary_ip=ip("2001:db8::1"))
    m.advert_received(4.0, adv(100, src=ip("2001:db8::2")))
    assert m.state is State.BACKUP


def test_two_address_owners() -> None:
    m = machine(priority=255, initial_state=State.MASTER, primary_ip=IP1)
    m.start(0.0)
    actions = m.advert_received(0.5, adv(255, src=IP0))
    assert m.state is State.MASTER
    assert any("CONFIGURATION ERROR" in s for s in msgs(actions))
    actions = m.advert_received(0.6, adv(255, src=IP0))
    assert not any("CONFIGURATION ERROR" in s for s in msgs(actions))
    actions = m.advert_received(0.7, adv(255, src=IP2))
    assert m.state is State.BACKUP
    assert any("CONFIGURATION ERROR" in s for s in msgs(actions))


# ---------------------------------------------------------------- priority


def test_set_priority_moves_backup_deadline_by_skew() -> None:
    m = machine(priority=100)
    m.start(0.0)
    actions = m.set_priority(1.0, 200)
    assert actions == [
        Log(logging.INFO, "(VI_1) Changing effective priority from 100 to 200"),
        PriorityChanged(100, 200),
    ]
    assert m.next_deadline == 3.0 + 56 / 256
    assert m.set_priority(1.0, 200) == []
    m.set_priority(1.0, 1000)
    assert m.effective_priority == 254
    m.set_priority(1.0, -5)
    assert m.effective_priority == 1


def test_set_priority_lowering_master_below_backup() -> None:
    a = machine(name="A", priority=150, primary_ip=IP1)
    b = machine(name="B", priority=100, primary_ip=IP2)
    sim = Sim([a, b])
    sim.start_all()
    sim.run_until(10.0)
    assert (a.state, b.state) == (State.MASTER, State.BACKUP)
    sim.apply(0, a.set_priority(sim.now, 50))
    assert a.state is State.MASTER  # keepalived does not resign on its own
    sim.run_until(20.0)
    assert (a.state, b.state) == (State.BACKUP, State.MASTER)


# ---------------------------------------------------------------- fault


def test_fault_from_backup_and_back() -> None:
    m = machine()
    m.start(0.0)
    actions = m.set_fault(1.0, True)
    assert actions == [
        Log(logging.INFO, "(VI_1) Entering FAULT STATE"),
        Transition(State.BACKUP, State.FAULT, "fault"),
    ]
    assert m.next_deadline is None
    assert m.set_fault(1.5, True) == []
    assert m.advert_received(2.0, adv(0)) == []
    assert m.timer_expired(100.0) == []
    actions = m.set_fault(3.0, False)
    assert actions == [
        Log(logging.INFO, "(VI_1) Entering BACKUP STATE"),
        Transition(State.FAULT, State.BACKUP, "fault cleared"),
    ]
    assert m.next_deadline == 3.0 + 3.609375


def test_fault_from_master_sends_priority_zero() -> None:
    m = started_master()
    actions = m.set_fault(5.0, True)
    assert actions == [
        Log(logging.INFO, "(VI_1) Entering FAULT STATE"),
        SendAdvert(0),
        Log(LOG_DETAIL, "(VI_1) sent 0 priority"),
        RemoveVips(),
        Transition(State.MASTER, State.FAULT, "fault"),
    ]
    assert m.state is State.FAULT and m.next_deadline is None


def test_owner_leaves_fault_as_backup() -> None:
    m = machine(priority=255, initial_state=State.MASTER)
    m.start(0.0)
    m.set_fault(1.0, True)
    m.set_fault(2.0, False)
    assert m.state is State.BACKUP
    assert m.next_deadline == 2.0 + 3 + 1 / 256


def test_leaving_fault_resets_learnt_interval() -> None:
    m = machine(version=3)
    m.start(0.0)
    m.advert_received(1.0, adv(200, advert_int=3.0))
    assert m.master_adver_int == 3.0
    m.set_fault(2.0, True)
    m.set_fault(3.0, False)
    assert m.master_adver_int == 1.0


# ---------------------------------------------------------------- stop


def test_stop_master() -> None:
    m = started_master()
    actions = m.stop(7.0)
    assert actions == [
        SendAdvert(0),
        Log(LOG_DETAIL, "(VI_1) sent 0 priority"),
        RemoveVips(),
        Log(logging.INFO, "(VI_1) Entering STOP STATE"),
        Transition(State.MASTER, State.STOP, "shutdown"),
    ]
    assert m.state is State.STOP and m.next_deadline is None
    assert m.stop(8.0) == []
    assert m.advert_received(8.0, adv(200)) == []
    assert m.timer_expired(100.0) == []
    assert m.set_fault(9.0, True) == []
    assert m.set_priority(9.0, 50) == []
    assert m.force_master(9.0, "x") == []


def test_stop_backup_and_init() -> None:
    m = machine()
    m.start(0.0)
    actions = m.stop(1.0)
    assert of(actions, SendAdvert) == [] and of(actions, RemoveVips) == []
    assert of(actions, Transition) == [Transition(State.BACKUP, State.STOP, "shutdown")]
    n = machine()
    assert of(n.stop(0.0), Transition) == [Transition(State.INIT, State.STOP, "shutdown")]


# ---------------------------------------------------------------- table


def test_invalid_transition_raises() -> None:
    m = machine()
    with pytest.raises(InvalidTransition):
        m._transition(State.INIT, "nope")
    m.start(0.0)
    with pytest.raises(InvalidTransition):
        m._transition(State.BACKUP, "self loop")
    assert ALLOWED_TRANSITIONS[State.STOP] == frozenset()
    assert State.MASTER not in ALLOWED_TRANSITIONS[State.FAULT]
    assert set(ALLOWED_TRANSITIONS) == set(State)
    assert State.BACKUP.value == "BACKUP"


@pytest.mark.parametrize(
    "kw",
    [
        {"version": 1},
        {"priority": 0},
        {"priority": 256},
        {"advert_int": 0.0},
        {"initial_state": State.FAULT},
        {"preempt_delay": -1.0},
        {"down_timer_adverts": 0},
        {"vrid": 0},
        {"garp_lower_prio_repeat": -1},
    ],
)
def test_params_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        params(**kw)


def test_advert_priority_out_of_range() -> None:
    m = machine()
    m.start(0.0)
    with pytest.raises(ValueError):
        m.advert_received(1.0, adv(256))


def test_format_ip() -> None:
    assert format_ip(ip("2001:db8::1")) == "2001:db8::1"
    assert format_ip(b"") == "?"
    assert format_ip(b"\x01\x02") == "0102"


# ---------------------------------------------------------------- sync group


def test_sync_group_member_waits_for_group() -> None:
    m = machine(in_sync_group=True)
    m.start(0.0)
    actions = m.timer_expired(3.609375)
    assert of(actions, WantMaster) == [WantMaster()]
    assert of(actions, Transition) == []
    assert m.state is State.BACKUP and m.wants_master
    assert m.next_deadline == 3.609375 * 2
    # a higher priority advert clears the wish
    m.advert_received(4.0, adv(200))
    assert not m.wants_master
    m.timer_expired(4.0 + 3.609375)
    actions = m.force_master(8.0, "all members want master")
    assert of(actions, Transition) == [
        Transition(State.BACKUP, State.MASTER, "sync group: all members want master")
    ]
    assert m.force_master(8.5, "again") == []
    actions = m.force_backup(9.0, "member left master")
    assert of(actions, SendAdvert) == []
    assert of(actions, RemoveVips) == [RemoveVips()]
    assert m.state is State.BACKUP and not m.wants_master
    assert m.force_backup(9.5, "again") == []


def test_sync_group_owner_asks_group_at_start() -> None:
    m = machine(priority=255, initial_state=State.MASTER, in_sync_group=True)
    m.start(0.0)
    assert m.state is State.BACKUP and m.next_deadline == 0.0
    assert of(m.timer_expired(0.0), WantMaster) == [WantMaster()]


def test_sync_group_fault() -> None:
    m = started_master(in_sync_group=False)
    actions = m.set_group_fault(5.0, True)
    assert of(actions, Transition) == [Transition(State.MASTER, State.FAULT, "sync group fault")]
    assert m.faulted and m.group_fault and not m.own_fault
    m.set_fault(6.0, True)
    m.set_fault(7.0, False)
    assert m.state is State.FAULT  # group still faulted
    m.set_group_fault(8.0, False)
    assert m.state is State.BACKUP
    assert m.force_master(9.0, "x")[-1] == Transition(State.BACKUP, State.MASTER, "sync group: x")
    m.set_fault(10.0, True)
    assert m.force_master(11.0, "x") == []
    assert m.force_backup(11.0, "x") == []


# ---------------------------------------------------------------- simulation


@dataclass(order=True)
class _Delivery:
    time: float
    seq: int
    target: int = field(compare=False)
    advert: RxAdvert = field(compare=False)


class Sim:
    """Pumps SendAdvert actions between machines on a simulated clock."""

    def __init__(self, machines: list[VrrpMachine], delay: float = 0.001) -> None:
        self.machines = machines
        self.delay = delay
        self.now = 0.0
        self.queue: list[_Delivery] = []
        self.seq = itertools.count()
        self.link_up = True
        self.transitions: list[tuple[float, int, Transition]] = []
        self.vips = [False] * len(machines)

    def apply(self, idx: int, actions: list[Action]) -> None:
        m = self.machines[idx]
        for action in actions:
            if isinstance(action, SendAdvert) and self.link_up:
                for j in range(len(self.machines)):
                    if j != idx:
                        rx = RxAdvert(action.priority, m.params.primary_ip, m.params.advert_int)
                        heapq.heappush(
                            self.queue, _Delivery(self.now + self.delay, next(self.seq), j, rx)
                        )
            elif isinstance(action, Transition):
                self.transitions.append((self.now, idx, action))
            elif isinstance(action, AddVips):
                assert not self.vips[idx]
                self.vips[idx] = True
            elif isinstance(action, RemoveVips):
                assert self.vips[idx]
                self.vips[idx] = False
        assert self.vips[idx] == (m.state is State.MASTER)

    def start_all(self, offsets: list[float] | None = None) -> None:
        for i, m in enumerate(self.machines):
            if offsets is None:
                self.apply(i, m.start(self.now))
            else:
                self.at(offsets[i], i, lambda m=m: m.start(self.now))

    def at(self, when: float, idx: int, event: Any) -> None:
        self.run_until(when)
        self.apply(idx, event())

    def run_until(self, end: float) -> None:
        for _ in range(1_000_000):
            candidates: list[tuple[float, int, int]] = []  # (time, kind, idx)
            if self.queue:
                candidates.append((self.queue[0].time, 0, -1))
            for i, m in enumerate(self.machines):
                d = m.next_deadline
                if d is not None:
                    candidates.append((d, 1, i))
            if not candidates:
                break
            t, kind, idx = min(candidates)
            if t > end:
                break
            self.now = max(self.now, t)
            if kind == 0:
                delivery = heapq.heappop(self.queue)
                self.apply(
                    delivery.target,
                    self.machines[delivery.target].advert_received(self.now, delivery.advert),
                )
            else:
                self.apply(idx, self.machines[idx].timer_expired(self.now))
        else:  # pragma: no cover
            raise AssertionError("simulation did not settle")
        self.now = max(self.now, end)


def test_initial_election_two_backups() -> None:
    a = machine(name="A", priority=150, primary_ip=IP1)
    b = machine(name="B", priority=100, primary_ip=IP2)
    sim = Sim([a, b])
    sim.start_all()
    sim.run_until(3.0 + 106 / 256 - 0.0001)
    assert (a.state, b.state) == (State.BACKUP, State.BACKUP)
    sim.run_until(3.0 + 106 / 256)
    assert (a.state, b.state) == (State.MASTER, State.BACKUP)
    sim.run_until(60.0)
    assert (a.state, b.state) == (State.MASTER, State.BACKUP)
    assert [(i, t.new) for _, i, t in sim.transitions] == [
        (0, State.BACKUP),
        (1, State.BACKUP),
        (0, State.MASTER),
    ]


def test_higher_priority_backup_preempts_running_master() -> None:
    a = machine(name="A", priority=100, primary_ip=IP1)
    b = machine(name="B", priority=200, primary_ip=IP2)
    sim = Sim([a, b])
    sim.at(0.0, 0, lambda: a.start(sim.now))
    sim.run_until(10.0)
    assert a.state is State.MASTER
    sim.at(10.0, 1, lambda: b.start(sim.now))
    sim.run_until(10.0 + b.master_down_interval + 0.01)
    assert (a.state, b.state) == (State.BACKUP, State.MASTER)


def test_nopreempt_backup_does_not_take_over() -> None:
    a = machine(name="A", priority=100, primary_ip=IP1)
    b = machine(name="B", priority=200, primary_ip=IP2, preempt=False)
    sim = Sim([a, b])
    sim.at(0.0, 0, lambda: a.start(sim.now))
    sim.at(10.0, 1, lambda: b.start(sim.now))
    sim.run_until(60.0)
    assert (a.state, b.state) == (State.MASTER, State.BACKUP)


def test_master_shutdown_gives_fast_takeover() -> None:
    a = machine(name="A", priority=150, primary_ip=IP1)
    b = machine(name="B", priority=100, primary_ip=IP2)
    sim = Sim([a, b])
    sim.start_all()
    sim.run_until(10.0)
    sim.apply(0, a.stop(sim.now))
    sim.run_until(10.0 + 0.001 + 156 / 256)
    assert b.state is State.MASTER


# ---------------------------------------------------------------- hypothesis

_ADV_INTS_V3 = [0.05, 0.1, 0.5, 1.0, 2.0]


@st.composite
def fsm_params(draw: st.DrawFn, name: str = "VI_1", ip_: bytes = IP1) -> FsmParams:
    version = draw(st.sampled_from([2, 3]))
    advert_int = (
        float(draw(st.integers(1, 3))) if version == 2 else draw(st.sampled_from(_ADV_INTS_V3))
    )
    return FsmParams(
        name=name,
        vrid=51,
        version=version,
        priority=draw(st.integers(1, 255)),
        advert_int=advert_int,
        initial_state=draw(st.sampled_from([State.BACKUP, State.MASTER])),
        preempt=draw(st.booleans()),
        preempt_delay=draw(st.sampled_from([0.0, 0.0, 1.0, 5.0])),
        down_timer_adverts=draw(st.integers(1, 5)),
        primary_ip=ip_,
        lower_prio_no_advert=draw(st.booleans()),
        higher_prio_send_advert=draw(st.booleans()),
        garp_lower_prio_repeat=draw(st.integers(0, 2)),
        in_sync_group=draw(st.booleans()),
    )


_events = st.one_of(
    st.tuples(
        st.just("adv"),
        st.integers(0, 255),
        st.sampled_from([IP0, IP1, IP2, PEER]),
        st.sampled_from([0.01, 0.5, 1.0, 3.0]),
    ),
    st.tuples(st.just("timer")),
    st.tuples(st.just("advance"), st.floats(0.0, 10.0)),
    st.tuples(st.just("prio"), st.integers(1, 254)),
    st.tuples(st.just("fault"), st.booleans()),
    st.tuples(st.just("gfault"), st.booleans()),
    st.tuples(st.just("fmaster")),
    st.tuples(st.just("fbackup")),
    st.tuples(st.just("stop")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=fsm_params(), prestart_fault=st.booleans(), events=st.lists(_events, max_size=60))
def test_random_events_keep_invariants(
    p: FsmParams, prestart_fault: bool, events: list[tuple[Any, ...]]
) -> None:
    m = VrrpMachine(p)
    now = 0.0
    vips = False
    state = State.INIT

    def check(actions: list[Action]) -> None:
        nonlocal vips, state
        for a in actions:
            if isinstance(a, Transition):
                assert a.old is state
                assert a.new in ALLOWED_TRANSITIONS[a.old]
                state = a.new
            elif isinstance(a, AddVips):
                assert not vips
                vips = True
            elif isinstance(a, RemoveVips):
                assert vips
                vips = False
            elif isinstance(a, SendAdvert):
                assert 0 <= a.priority <= 255
            elif isinstance(a, Log):
                assert a.message.startswith("(VI_1) ")
        assert m.state is state
        assert vips == (m.state is State.MASTER)
        assert 1 <= m.effective_priority <= 255
        deadline = m.next_deadline
        if m.state in (State.MASTER, State.BACKUP):
            assert deadline is not None and deadline >= 0.0
            assert deadline >= now - 40.0  # never far in the past
        else:
            assert deadline is None

    if prestart_fault:
        check(m.set_fault(now, True))
    check(m.start(now))
    for ev in events:
        kind = ev[0]
        if kind == "adv":
            check(m.advert_received(now, RxAdvert(ev[1], ev[2], ev[3])))
        elif kind == "timer":
            d = m.next_deadline
            if d is not None:
                now = max(now, d)
            check(m.timer_expired(now))
        elif kind == "advance":
            now += ev[1]
        elif kind == "prio":
            check(m.set_priority(now, ev[1]))
        elif kind == "fault":
            check(m.set_fault(now, ev[1]))
        elif kind == "gfault":
            check(m.set_group_fault(now, ev[1]))
        elif kind == "fmaster":
            check(m.force_master(now, "test"))
        elif kind == "fbackup":
            check(m.force_backup(now, "test"))
        elif kind == "stop":
            check(m.stop(now))


_sim_events = st.lists(
    st.tuples(
        st.floats(0.0, 30.0),
        st.integers(0, 1),
        st.sampled_from(["prio", "fault", "unfault", "link_down", "link_up"]),
        st.integers(1, 254),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pa=fsm_params(name="A", ip_=IP1),
    pb=fsm_params(name="B", ip_=IP2),
    offsets=st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)),
    # Less than the smallest possible skew (0.05 / 256): with
    # down_timer_adverts 1 a longer delay legitimately makes a backup flap.
    delay=st.floats(0.0, 0.0001),
    events=_sim_events,
)
def test_two_machines_converge_to_one_master(
    pa: FsmParams,
    pb: FsmParams,
    offsets: tuple[float, float],
    delay: float,
    events: list[tuple[float, int, str, int]],
) -> None:
    # The simulation has no sync-group coordinator and both share a version.
    pa = FsmParams(**{**pa.__dict__, "in_sync_group": False})
    pb = FsmParams(**{**pb.__dict__, "in_sync_group": False, "version": pa.version})
    if pb.version == 2:
        # VRRPv2 does not learn the master's interval (keepalived drops v2
        # adverts whose interval differs from ours), so both must agree.
        pb = FsmParams(**{**pb.__dict__, "advert_int": pa.advert_int})
    machines = [VrrpMachine(pa), VrrpMachine(pb)]
    sim = Sim(machines, delay=delay)
    order = sorted(range(2), key=lambda i: offsets[i])
    for i in order:
        sim.at(offsets[i], i, lambda i=i: machines[i].start(sim.now))

    for when, idx, kind, value in sorted(events, key=lambda e: e[0]):
        m = machines[idx]
        sim.run_until(max(sim.now, 5.0 + when))
        if kind == "prio":
            sim.apply(idx, m.set_priority(sim.now, value))
        elif kind == "fault":
            sim.apply(idx, m.set_fault(sim.now, True))
        elif kind == "unfault":
            sim.apply(idx, m.set_fault(sim.now, False))
        elif kind == "link_down":
            sim.link_up = False
        elif kind == "link_up":
            sim.link_up = True

    # Heal everything, then give the pair ample time to settle.
    sim.link_up = True
    for i, m in enumerate(machines):
        sim.apply(i, m.set_fault(sim.now, False))
    longest = max(m.params.down_timer_adverts + 2 for m in machines) * max(
        m.params.advert_int for m in machines
    )
    settle = 2 * max(m.preempt_delay for m in machines) + 6 * longest + 5.0
    sim.run_until(sim.now + settle)
    masters = [m for m in machines if m.state is State.MASTER]
    assert len(masters) == 1, [(m.name, m.state, m.effective_priority) for m in machines]

    # And it stays that way.
    n_transitions = len(sim.transitions)
    sim.run_until(sim.now + 4 * longest)
    assert len(sim.transitions) == n_transitions
    assert sum(sim.vips) == 1

    # A preempting backup never sits below a lower-priority master.
    (master,) = masters
    (backup,) = [m for m in machines if m is not master]
    if backup.preempt:
        assert backup.effective_priority <= master.effective_priority
