"""When a server may act as the control plane's leader, judged from the database's leases on a virtual clock."""

from __future__ import annotations

import pytest

from roost.detector.leadership import Change, LeaderConfig, Leadership
from roost.store.base import Lease
from roost.testing.memstore import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_makes_a_leader_until_a_margin_before_it_could_lapse():
    me = Leadership("a", LeaderConfig(ttl=2.0, renew_every=0.4, margin=0.4))
    # asked at local 10.0; the database answered when its clock said 500.3, lease to 502.3
    change = me.observe(Lease("control-plane", "a", 7, 502.3, 500.3), asked_at=10.0)
    assert change == Change(True, 7, "a")
    assert me.leads(10.0) and me.leads(11.59) and not me.leads(11.6)  # 10 + 2 - 0.4
    assert me.fence().term == 7 and me.fence().holder == "a"
    assert me.observe(Lease("control-plane", "a", 7, 502.7, 500.7), asked_at=10.4) is None  # renewed, same term
    assert me.leads(11.9)


def test_without_a_renewal_the_leader_stops_before_anyone_may_take_over():
    me = Leadership("a", LeaderConfig(ttl=2.0, renew_every=0.4, margin=0.4))
    me.observe(Lease("control-plane", "a", 1, 2.0, 0.0), asked_at=0.0)
    assert me.lapse(1.0) is None
    assert me.lapse(1.6) == Change(False, 0, "")
    assert not me.leads(1.6) and me.lapse(1.7) is None


def test_another_holder_makes_a_follower_that_knows_the_leader():
    me = Leadership("b")
    assert me.observe(Lease("control-plane", "a", 3, 12.0, 10.0), asked_at=5.0) is None  # was not leading either
    assert not me.leads(5.0) and me.leader == "a"
    me.observe(Lease("control-plane", "b", 4, 12.0, 10.0), asked_at=6.0)
    assert me.leads(6.0)
    assert me.observe(Lease("control-plane", "a", 5, 15.0, 13.0), asked_at=8.0) == Change(False, 0, "a")


def test_two_servers_on_one_store_never_lead_at_once_on_a_virtual_clock():
    clock = Clock()
    store = MemoryStore(clock)
    config = LeaderConfig(ttl=1.0, renew_every=0.25, margin=0.25)
    servers = {name: Leadership(name, config) for name in ("a", "b")}
    alive = {"a": True, "b": True}
    leading_at_once = 0
    terms: list[int] = []
    for step in range(400):  # 100 s in steps of 0.25 s; a pauses now and then
        clock.now += 0.25
        alive["a"] = not 100 <= step < 140 and not 300 <= step < 310
        for name, server in servers.items():
            if alive[name]:
                change = server.observe(store.acquire("control-plane", name, config.ttl), asked_at=clock.now)
                if change and change.leads:
                    terms.append(change.term)
            else:
                server.lapse(clock.now)
        leading_at_once += sum(1 for s in servers.values() if s.leads(clock.now)) > 1
    assert leading_at_once == 0
    assert terms == sorted(set(terms)) and len(terms) >= 2  # a new term for each new leader


def test_a_config_that_cannot_renew_in_time_is_refused():
    with pytest.raises(ValueError):
        LeaderConfig(ttl=1.0, renew_every=0.8, margin=0.3)
