"""Router.route_now (the edge's cached decision) agrees with the balancer's `choose` on every
table and load: same kind of decision, and a target in the same bucket, at the same distance (and, between
soft and hard limits, with the same load) as the one `choose` picks."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.balancer.choose import Kind, choose
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import Router
from roost.proxy.starter import Starter
from roost.proxy.table import RoutingTable

RTT = {("ams", "ams"): 0.0, ("ams", "fra"): 10.0, ("ams", "ewr"): 80.0, ("ams", "syd"): 250.0}

machine_st = st.fixed_dictionaries({
    "region": st.sampled_from(["ams", "fra", "ewr", "syd"]),
    "state": st.sampled_from(["started", "started", "started", "stopped", "suspended", "created"]),
    "host_ok": st.booleans() | st.just(True),
    "cordoned": st.sampled_from([False, False, True]),
    "load": st.integers(0, 8),
    "autostart": st.booleans(),
    "standby": st.just(False) | st.booleans(),
})


def rtt(a: str, b: str) -> float:
    return RTT.get((a, b), RTT.get((b, a), 100.0))


def build(machines: list[dict], soft: int, hard: int | None) -> tuple[Router, RoutingTable, Loads]:
    table = RoutingTable()
    objects = [{"kind": "host", "key": "ok", "object": {"id": "ok", "region": "ams", "status": "ok"}},
               {"kind": "host", "key": "gone", "object": {"id": "gone", "region": "ams", "status": "unreachable"}}]
    concurrency = {"type": "requests", "soft_limit": soft, **({"hard_limit": hard} if hard is not None else {})}
    loads = Loads()
    for i, spec in enumerate(machines):
        mid = f"m{i}"
        config = {"services": [{"protocol": "tcp", "internal_port": 8080, "autostart": spec["autostart"],
                                "concurrency": concurrency, "ports": [{"port": 80, "handlers": ["http"]}]}]}
        if spec["standby"]:
            config["standbys"] = ["x"]
        objects.append({"kind": "machine", "key": mid, "object": {
            "id": mid, "app": "web", "region": spec["region"], "state": spec["state"], "private_ip": "127.0.0.1",
            "cordoned": spec["cordoned"], "roost": {"host_id": "ok" if spec["host_ok"] else "gone",
                                                    "ports": {"8080": 9000 + i}}, "config": config}})
        for _ in range(spec["load"]):
            loads.acquire(mid)
    table.reset(objects, 1)
    router = Router(table, loads, Starter(table, "http://127.0.0.1:1", "t"), "ams", rtt, Metrics())
    return router, table, loads


@settings(max_examples=400, deadline=None)
@given(st.lists(machine_st, min_size=0, max_size=6), st.integers(1, 6), st.one_of(st.none(), st.integers(1, 9)),
       st.integers(0, 2**32))
def test_route_now_agrees_with_choose(machines: list[dict], soft: int, hard: int | None, seed: int) -> None:
    if hard is not None and hard < soft:
        hard = soft
    router, table, loads = build(machines, soft, hard)
    router.rng.seed(seed)
    fast = router.route_now("web")
    full = choose(router.candidates(table.http_targets("web")), "ams", lambda r: rtt("ams", r), random.Random(seed))
    if full.kind is not Kind.ROUTE:
        assert fast is None
        return
    assert fast is not None and full.target is not None
    m, service = fast
    expected = table.machines[full.target.id]
    load = loads.get(m.id)
    assert rtt("ams", m.region) == rtt("ams", expected.region)
    assert (load < service.soft_limit) == (full.target.load < full.target.soft_limit)
    if full.target.load >= full.target.soft_limit:
        assert load == full.target.load
    assert m.state == "started" and table.healthy(m, 0) and not m.cordoned
    # asked again with nothing changed, the cached ranking gives an answer of the same kind
    assert router.route_now("web") is not None


def put(kind: str, key: str, obj: dict) -> dict:
    return {"op": "put", "rev": 2, "kind": kind, "key": key, "object": obj}


def test_a_suspect_hosts_machines_sit_out_while_another_can_serve() -> None:
    router, table, _ = build([dict(region="ams", state="started", host_ok=True, cordoned=False, load=0,
                                   autostart=False, standby=False)] * 2, 20, None)
    table.apply(put("host", "quiet", {"id": "quiet", "region": "ams", "status": "unknown"}))
    m1 = table.machines["m1"]
    service = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}
    table.apply(put("machine", "m1", {
        "id": "m1", "app": "web", "region": "ams", "state": "started", "private_ip": "127.0.0.1",
        "roost": {"host_id": "quiet", "ports": {"8080": 9001}}, "config": {"services": [service]}}))
    assert m1.host_id == "ok" and table.machines["m1"].host_id == "quiet"
    picks = set()
    for _ in range(50):
        chosen = router.route_now("web")
        assert chosen is not None
        picks.add(chosen[0].id)
    assert picks == {"m0"}
    # The only machine left is on the suspect host: it still serves (suspicion is not a verdict).
    table.apply(put("machine", "m0", {"id": "m0", "app": "web", "state": "destroyed"}))
    chosen = router.route_now("web")
    assert chosen is not None and chosen[0].id == "m1"


def test_fly_random_rule_is_a_service_option() -> None:
    router, table, loads = build([dict(region="ams", state="started", host_ok=True, cordoned=False, load=0,
                                       autostart=False, standby=False)] * 2, 20, None)
    now = table.clock.monotonic()
    loads.scores.answered("m0", 0.001, now)
    loads.scores.answered("m1", 0.500, now)
    assert {router.route_now("web")[0].id for _ in range(30)} == {"m0"}  # type: ignore[index]
    for m in table.machines.values():
        m.services = [type(s)(**{**s.__dict__, "balancing": "random"}) for s in m.services]
    table.generation += 1
    assert {router.route_now("web")[0].id for _ in range(60)} == {"m0", "m1"}  # type: ignore[index]
