"""The control plane's metrics (issue 20) as a takeover drives them, on a virtual clock: heartbeats and the
late ones, the detector's verdicts, the takeover, the store's commits, and the fleet gauges read at scrape."""

from __future__ import annotations

import asyncio

from roost.server.main import _fleet_rows
from roost.server.metrics import ServerMetrics
from tests.unit.test_failover_clock import World


def value(m: ServerMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


async def test_a_power_cut_shows_in_the_counters_and_the_gauges() -> None:
    world = World()
    metrics = ServerMetrics()
    world.hosts.metrics = world.takeover.metrics = metrics
    metrics.fleet = lambda: _fleet_rows(world.state)
    world.state.on_commit = metrics.commit_seconds.observe
    await world.setup()
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(world.beat(stop)), asyncio.ensure_future(world.hosts.run_detector(stop))]
    await world.clock.advance(2.0)
    beats = value(metrics, "roost_server_heartbeats_total")
    assert beats >= 3 * 8 and value(metrics, "roost_server_heartbeats_late_total") == 0
    world.beating.discard("h1")
    await world.clock.advance(3.0)
    assert value(metrics, "roost_server_host_verdicts_total", status="unknown") == 1
    assert value(metrics, "roost_server_host_verdicts_total", status="unreachable") == 1
    assert value(metrics, "roost_server_takeovers_total") == 1
    assert value(metrics, "roost_server_store_commit_seconds_count") > 0
    text = metrics.render().decode()
    assert 'roost_hosts{region="ams",status="unreachable"} 1.0' in text
    assert 'roost_hosts{region="ams",status="ok"} 2.0' in text
    assert 'roost_machines{app="app",region="ams",state="started"} 1.0' in text, "the standby, started"
    world.beating.add("h1")  # back after 3 s of silence: one late beat
    await world.clock.advance(0.5)
    assert value(metrics, "roost_server_heartbeats_late_total") == 1
    stop.set()
    await world.clock.advance(0.5)
    await asyncio.gather(*tasks)


async def test_requests_are_counted_by_route_template_and_refusals_as_unrouted() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from roost.core.access import ADMIN
    from roost.server.metrics import MetricsMiddleware
    from roost.weblib import BearerAuth

    async def machines(request):  # type: ignore[no-untyped-def]
        return JSONResponse([])

    metrics = ServerMetrics()
    app = Starlette(routes=[Route("/v1/apps/{app}/machines", machines)])
    app.add_middleware(BearerAuth, identify=lambda token: ADMIN if token == b"good" else None,
                       authorize=lambda who, method, path: None)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roost") as client:
        for name in ("a", "b"):
            r = await client.get(f"/v1/apps/{name}/machines", headers={"Authorization": "Bearer good"})
            assert r.status_code == 200
        assert (await client.get("/v1/apps/a/machines")).status_code == 401
    assert value(metrics, "roost_server_api_requests_total", route="/v1/apps/{app}/machines", method="GET",
                 status="200") == 2
    assert value(metrics, "roost_server_api_requests_total", route="(unrouted)", method="GET", status="401") == 1
    assert value(metrics, "roost_server_api_request_seconds_count", route="/v1/apps/{app}/machines") == 2
