"""Repeated adverts stamped instead of handled (fsm "Repeated adverts").

The socket layer may record only the arrival time of an exact repeat of an
advert the machine agreed to (:meth:`VrrpMachine.offer_repeat`).  The
claim is that this is invisible: a machine fed that way decides exactly
what a machine fed every advert decides, at the same times.  The property
test drives two machines side by side through random adverts, priority
changes, faults and timer expiries and compares every action, state and
deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_vrrp_fsm import IP1, PEER, adv, ip, machine

from pykeepalived.core.vrrp.fsm import Action, RxAdvert, State, VrrpMachine

OTHER = ip("192.0.2.13")


@dataclass
class Stamp:
    seen: float
    applied: float
    live: bool = False


class Stamped:
    """A machine fed the way io.Receiver feeds it: repeats are stamped."""

    def __init__(self, m: VrrpMachine) -> None:
        self.m = m
        self.stamp: Stamp | None = None
        self.stamp_adv: RxAdvert | None = None
        self.stamped = 0

    def advert(self, now: float, a: RxAdvert) -> list[Action]:
        if self.stamp is not None and self.stamp.live and a == self.stamp_adv:
            self.stamp.seen = now
            self.stamped += 1
            return []
        actions = self.m.advert_received(now, a)
        if not actions:
            stamp = Stamp(now, now)
            if self.m.offer_repeat(stamp, a):
                self.stamp, self.stamp_adv = stamp, a
        return actions


def due(m: VrrpMachine, now: float) -> list[Action]:
    deadline = m.next_deadline
    if deadline is not None and deadline <= now:
        return m.timer_expired(now)
    return []


EVENT = st.one_of(
    st.tuples(
        st.just("adv"), st.sampled_from([PEER, OTHER]), st.sampled_from([0, 50, 100, 150, 255])
    ),
    st.tuples(st.just("same"), st.none(), st.none()),  # the common case: a repeat
    st.tuples(st.just("prio"), st.none(), st.integers(1, 254)),
    st.tuples(st.just("fault"), st.none(), st.booleans()),
    st.tuples(st.just("tick"), st.none(), st.none()),
)


@settings(max_examples=400, deadline=None)
@given(
    priority=st.sampled_from([50, 100, 150]),
    preempt=st.booleans(),
    preempt_delay=st.sampled_from([0.0, 2.5]),
    steps=st.lists(st.tuples(st.floats(0.0, 1.6, allow_nan=False), EVENT), min_size=1, max_size=60),
)
def test_stamped_repeats_decide_exactly_like_handled_ones(
    priority: int, preempt: bool, preempt_delay: float, steps: list[tuple[float, Any]]
) -> None:
    kw = {"priority": priority, "preempt": preempt, "preempt_delay": preempt_delay}
    plain, fed = machine(**kw), Stamped(machine(**kw))
    assert plain.start(0.0) == fed.m.start(0.0)
    now = 0.0
    last = adv(100)
    for dt, (kind, src, value) in steps:
        now += dt
        # Timers first, as the loop would run them by this time.
        for _ in range(3):
            a, b = due(plain, now), due(fed.m, now)
            assert a == b, (now, kind)
        if kind == "adv":
            last = adv(value, src)
            a, b = plain.advert_received(now, last), fed.advert(now, last)
        elif kind == "same":
            a, b = plain.advert_received(now, last), fed.advert(now, last)
        elif kind == "prio":
            a, b = plain.set_priority(now, value), fed.m.set_priority(now, value)
        elif kind == "fault":
            a, b = plain.set_fault(now, value), fed.m.set_fault(now, value)
        else:
            a, b = [], []
        assert a == b, (now, kind, src, value)
        assert plain.state is fed.m.state
        assert plain.next_deadline == fed.m.next_deadline
        assert plain.wants_master == fed.m.wants_master


def test_repeats_are_stamped_in_the_steady_state() -> None:
    fed = Stamped(machine(priority=100))
    fed.m.start(0.0)
    assert "master set to" in str(fed.advert(1.0, adv(150)))
    for k in range(2, 11):
        assert fed.advert(float(k), adv(150)) == []
    # The first advert without effect is handled and offered; the rest
    # are stamped.
    assert fed.stamped == 8
    # The deadline counts from the last stamp.
    assert fed.m.next_deadline == 10.0 + fed.m.master_down_interval


def test_stamp_withdrawn_when_a_repeat_would_mean_more() -> None:
    fed = Stamped(machine(priority=100, preempt=True))
    fed.m.start(0.0)
    fed.advert(0.5, adv(150))
    fed.advert(1.0, adv(150))
    assert fed.stamp is not None and fed.stamp.live
    # Our priority rises above the master's: its adverts are now discarded
    # (preemption), so they must reach the machine again.
    actions = fed.m.set_priority(1.5, 200)
    assert actions and not fed.stamp.live
    assert "discarding" in str(fed.advert(2.0, adv(150)))


def test_stamp_withdrawn_on_leaving_backup() -> None:
    m = machine(priority=100)
    m.start(0.0)
    m.advert_received(1.0, adv(150))
    stamp = Stamp(1.0, 1.0)
    assert m.offer_repeat(stamp, adv(150))
    deadline = m.next_deadline
    assert deadline is not None
    m.timer_expired(deadline)  # the master went quiet
    assert m.state is State.MASTER and not stamp.live


def test_offer_refused_for_adverts_that_are_not_pure_refreshes() -> None:
    m = machine(priority=100, preempt=True)
    m.start(0.0)
    m.advert_received(1.0, adv(50))  # lower priority, preempting: discarded
    assert not m.offer_repeat(Stamp(1.0, 1.0), adv(50))
    m2 = machine(priority=100)
    m2.start(0.0)
    m2.advert_received(1.0, adv(150))
    # An advert from another router than the accepted master.
    assert not m2.offer_repeat(Stamp(1.0, 1.0), adv(150, OTHER))
    assert not m2.offer_repeat(Stamp(1.0, 1.0), adv(0))


def test_sync_group_member_waiting_keeps_stamping() -> None:
    m = machine(priority=100, in_sync_group=True, primary_ip=IP1)
    m.start(0.0)
    m.advert_received(1.0, adv(150))
    stamp = Stamp(1.0, 1.0)
    assert m.offer_repeat(stamp, adv(150))
    deadline = m.next_deadline
    assert deadline is not None
    m.timer_expired(deadline)
    assert m.wants_master and stamp.live  # still BACKUP, waiting for its group
    # The master is back: a stamped repeat cancels the wish like a handled one.
    stamp.seen = deadline + 0.5
    assert m.next_deadline == deadline + 0.5 + m.master_down_interval
    assert not m.wants_master
