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
