import random

from hypothesis import given
from hypothesis import strategies as st

from roost.balancer.autostop import Running, plan
from roost.balancer.choose import Candidate, Kind, choose
from roost.balancer.services import http_service, services_of
from roost.core.lifecycle import State

RTT = {"ams": 0.0, "fra": 10.0, "ewr": 80.0, "syd": 250.0}


def dist(region):
    return RTT[region]


def cand(i, region="ams", state=State.STARTED, load=0, soft=20, hard=None, healthy=True, routable=True,
         standby=False, autostart=True):
    return Candidate(f"m{i}", region, state, healthy, routable, standby, load, soft, hard, autostart)


def pick(cands, edge="ams", exclude=frozenset()):
    return choose(cands, edge, dist, random.Random(1), exclude)


def test_least_loaded_bucket_then_closest():
    d = pick([cand(1, load=25, soft=20), cand(2, load=3)])
    assert d.kind is Kind.ROUTE and d.target.id == "m2"


def test_same_region_first_even_if_busier_within_soft():
    d = pick([cand(1, "fra", load=0), cand(2, "ams", load=19)])
    assert d.target.id == "m2"


def test_soft_limits_never_shift_traffic_to_other_regions():
    d = pick([cand(1, "ams", load=30, soft=20), cand(2, "fra", load=0)])
    assert d.kind is Kind.ROUTE and d.target.id == "m1"


def test_cross_region_when_local_is_at_hard_or_unhealthy():
    assert pick([cand(1, load=25, hard=25), cand(2, "ewr"), cand(3, "syd")]).target.id == "m2"
    assert pick([cand(1, healthy=False), cand(2, "syd")]).target.id == "m2"
    assert pick([cand(1, "ewr"), cand(2, "fra")]).target.id == "m2", "no local machine: the nearest region"


def test_autostart_when_every_running_machine_is_over_soft():
    d = pick([cand(1, load=20, soft=20), cand(2, state=State.STOPPED), cand(3, "fra", state=State.SUSPENDED)])
    assert d.kind is Kind.START and d.target.id == "m2"


def test_autostart_when_none_runs_picks_the_closest():
    d = pick([cand(1, "syd", state=State.STOPPED), cand(2, "fra", state=State.SUSPENDED)])
    assert d.kind is Kind.START and d.target.id == "m2"


def test_never_starts_standbys_cordoned_or_when_autostart_is_off():
    d = pick([cand(1, state=State.STOPPED, standby=True), cand(2, state=State.STOPPED, routable=False),
              cand(3, state=State.STOPPED, autostart=False)])
    assert d.kind is Kind.WAIT


def test_all_at_hard_limit_waits():
    d = pick([cand(1, load=5, soft=2, hard=5)])
    assert d.kind is Kind.WAIT and "hard_limit" in d.reason


def test_between_soft_and_hard_takes_the_least_loaded():
    d = pick([cand(1, load=9, soft=2, hard=10), cand(2, load=4, soft=2, hard=10)])
    assert d.target.id == "m2"


def test_excluded_machines_are_skipped_for_retries():
    d = pick([cand(1), cand(2)], exclude=frozenset({"m1"}))
    assert d.target.id == "m2"


def test_no_candidates_at_all_is_none():
    assert pick([]).kind is Kind.NONE


def test_ties_are_random_among_equals():
    seen = {choose([cand(1), cand(2), cand(3, "fra")], "ams", dist, random.Random(seed)).target.id
            for seed in range(50)}
    assert seen == {"m1", "m2"}


loads = st.integers(0, 40)


@given(st.lists(st.tuples(st.sampled_from(list(RTT)), loads, st.booleans()), min_size=1, max_size=8))
def test_a_routed_machine_is_running_healthy_and_under_hard(specs):
    cands = [cand(i, r, load=load, hard=30, healthy=h) for i, (r, load, h) in enumerate(specs)]
    d = pick(cands)
    if d.kind is Kind.ROUTE:
        assert d.target.healthy and d.target.running and d.target.load < 30
        local_open = [c for c in cands if c.region == "ams" and c.healthy and c.load < 30]
        if local_open:
            assert d.target.region == "ams"


def r(i, load=0, soft=20, t=0.0):
    return Running(f"m{i}", load, soft, t)


def test_autostop_rule():
    assert plan([r(1), r(2)], "stop", 0, False).machine_id in {"m1", "m2"}
    assert plan([r(1, 25), r(2, 25)], "stop", 0, False) is None  # 2 - (2 + 1) < 1
    assert plan([r(1, 25), r(2, 0), r(3, 0)], "stop", 0, False).machine_id in {"m2", "m3"}
    assert plan([r(1, 3)], "stop", 0, False) is None  # the only machine had traffic
    assert plan([r(1, 0)], "suspend", 0, False).action == "suspend"
    assert plan([r(1, 0), r(2, 0)], "off", 0, False) is None


def test_min_machines_running_only_in_the_primary_region():
    assert plan([r(1), r(2)], "stop", 2, True) is None
    assert plan([r(1), r(2), r(3)], "stop", 2, True) is not None
    assert plan([r(1), r(2)], "stop", 2, False) is not None


def test_autostop_stops_the_least_loaded_newest():
    assert plan([r(1, 5, t=1), r(2, 0, t=1), r(3, 0, t=2)], "stop", 0, False).machine_id == "m3"


def test_service_settings_and_fly_defaults():
    config = {"services": [
        {"internal_port": 8080, "protocol": "tcp", "autostop": True,
         "ports": [{"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["http", "tls"]}]},
        {"internal_port": 5432, "protocol": "tcp", "ports": [{"port": 5432}],
         "concurrency": {"type": "requests", "soft_limit": 5, "hard_limit": 10}, "autostart": False}]}
    web, db = services_of(config)
    assert (web.http, web.autostop, web.autostart, web.soft_limit, web.hard_limit, web.concurrency_type) == \
        (True, "stop", True, 20, None, "connections")
    assert (db.http, db.autostop, db.autostart, db.soft_limit, db.hard_limit) == (False, "off", False, 5, 10)
    assert http_service([db, web]) is web
