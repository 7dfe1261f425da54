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

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_vrrp_fsm import IP1, PEER, adv, ip, machine
from test_vrrp_rx_batching import netns as veth_netns  # noqa: F401  (the fixture)

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


# -- the real receiver and instance (core/vrrp/io.py, core/vrrp/instance.py) --------------
#
# The tests above check the state machine's side of the contract (offer_repeat, the
# stamp's ``live``), driving it the way io.Receiver does.  This one runs the real thing:
# a VrrpManager (its io.Receiver on v0, the instance's RepeatSlot) fed real datagrams
# through the kernel (a raw socket on the other end of a veth pair, in a namespace).
# The same advert schedule runs twice, once as shipped and once with stamping refused
# (VrrpMachine.offer_repeat -> False: every advert is dispatched and handled), and the
# two must decide alike.

REAL_SCRIPT = r"""
import asyncio, ipaddress, json, socket, struct, sys
from pykeepalived.core.config import load_text
from pykeepalived.core.vrrp import packet as pk
from pykeepalived.core.vrrp.effects import Netlink
from pykeepalived.core.vrrp.fsm import VrrpMachine
from pykeepalived.core.vrrp.manager import VrrpManager

STAMPING = sys.argv[1] == "stamping"
if not STAMPING:
    VrrpMachine.offer_repeat = lambda self, slot, rx: False

def advert(prio):
    adv = pk.make_advert(version=2, vrid=7, priority=prio, advert_int=1,
                         addresses=(ipaddress.ip_address("198.51.100.7"),),
                         auth_type=pk.AuthType.NONE, auth_pass="", family=socket.AF_INET)
    return pk.encode_advert(adv)

def sender(ttl):
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"v1")
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                  socket.inet_aton("0.0.0.0") + socket.inet_aton("192.0.2.1")
                  + struct.pack("@i", socket.if_nametoindex("v1")))
    tx.bind(("192.0.2.1", 0))
    return tx

tx, tx_ttl254 = sender(255), sender(254)
out = {"transitions": []}

async def main():
    loop = asyncio.get_running_loop()
    conf = ("global_defs {\n router_id t\n}\n"
            "vrrp_instance VI_1 {\n state BACKUP\n interface v0\n virtual_router_id 7\n"
            " priority 100\n advert_int 1\n virtual_ipaddress {\n 198.51.100.7/32\n }\n}\n")
    mgr = VrrpManager(Netlink(), lambda e: None)
    mgr.start(load_text(conf).config, loop)
    inst = mgr.instances["VI_1"]
    t0 = loop.time()
    seen = []
    async def watch():
        while True:
            if not seen or seen[-1][0] != inst.state.value:
                seen.append((inst.state.value, loop.time() - t0))
            await asyncio.sleep(0.01)
    watcher = asyncio.create_task(watch(), name="test:watch")
    # The master's advert, 20 times, 0.1 s apart (advert_int says 1 s: far inside the
    # 3.61 s Master_Down_Interval however busy the machine).
    for _ in range(20):
        tx.sendto(advert(150), ("224.0.0.18", 0))
        await asyncio.sleep(0.1)
    slot = inst._repeat_slot
    out["slot_live"] = slot is not None and slot.live
    out["hits"] = slot.hits if slot is not None else 0
    # The same VRRP bytes with IP TTL 254: the slot's check (the TTL) does not match,
    # so it is dispatched, validated and dropped (RFC 3768 7.1: TTL must be 255).
    tx_ttl254.sendto(advert(150), ("224.0.0.18", 0))
    await asyncio.sleep(0.1)
    out["hits_after_ttl"] = inst._repeat_slot.hits if inst._repeat_slot is not None else 0
    tx.sendto(advert(150), ("224.0.0.18", 0))
    t_last = loop.time() - t0
    await asyncio.sleep(0.1)
    status = inst.status()
    out["received"] = status["counters"]["adverts_received"]
    out["ttl_drops"] = status["counters"].get("rx_drop_ttl", 0)
    out["state_while_heard"] = inst.state.value
    out["mdi"] = inst.fsm.master_down_interval
    # Silence: the master-down deadline must count from the last advert, stamped or not.
    end = loop.time() + 15
    while inst.state.value != "MASTER" and loop.time() < end:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    watcher.cancel()
    out["transitions"] = seen
    out["t_last"] = t_last
    mgr.stop()

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.netns
def test_real_receiver_stamps_repeats_and_decides_like_dispatch(
    veth_netns: str,  # noqa: F811  (the fixture imported above)
) -> None:
    runs = {}
    for mode in ("stamping", "dispatch"):
        res = subprocess.run(
            ["ip", "netns", "exec", veth_netns, sys.executable, "-c", REAL_SCRIPT, mode],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    stamped, plain = runs["stamping"], runs["dispatch"]
    # As shipped, the receiver stamps the master's repeats: the first advert is handled
    # (master set), the second offered, the other 18 only stamped.
    assert stamped["slot_live"] and stamped["hits"] == 18, stamped
    assert plain["hits"] == 0 and not plain["slot_live"], plain
    # A repeat whose IP TTL differs is not stamped; it is checked and dropped, both ways.
    assert stamped["hits_after_ttl"] == 18
    assert stamped["ttl_drops"] == plain["ttl_drops"] == 1
    # Every advert counts as received, stamped or handled (22 sent).
    assert stamped["received"] == plain["received"] == 22
    for run in (stamped, plain):
        assert run["state_while_heard"] == "BACKUP"
        states = [s for s, _ in run["transitions"]]
        assert states == ["BACKUP", "MASTER"], run["transitions"]
        # Master_Down_Interval after the last advert (protocol bound: not before it,
        # and within a generous margin after it).
        took_over = run["transitions"][-1][1] - run["t_last"]
        assert run["mdi"] - 0.05 <= took_over <= run["mdi"] + 1.5, (took_over, run["mdi"])
