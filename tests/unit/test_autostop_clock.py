"""The edge's idle loop (autostop) on a virtual clock: the real IdleLoop, routing table and loads, a fake starter
that records stops and tells the table as the watch feed would. Minutes of passes run in milliseconds."""

from __future__ import annotations

import asyncio
from typing import Any

from roost.proxy.idle import IdleLoop
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.table import MachineRoute, RoutingTable
from roost.testing.clock import VirtualClock

INTERVAL = 30.0


def machine(mid: str, region: str = "ams", min_running: int = 0) -> dict[str, Any]:
    service = {"protocol": "tcp", "internal_port": 8080, "autostop": "stop", "autostart": True,
               "min_machines_running": min_running, "concurrency": {"type": "requests", "soft_limit": 5},
               "ports": [{"port": 80, "handlers": ["http"]}]}
    return {"id": mid, "app": "web", "region": region, "state": "started", "private_ip": "127.0.0.1",
            "roost": {"host_id": "h", "ports": {"8080": 9000}}, "config": {"services": [service]}}


class FeedStarter:
    """Stops a machine the way the agent does, and tells the table what the watch feed would."""

    def __init__(self, table: RoutingTable, clock: VirtualClock, objects: dict[str, dict[str, Any]]) -> None:
        self.table, self.clock, self.objects = table, clock, objects
        self.stopped: list[tuple[float, str]] = []

    async def stop(self, m: MachineRoute, action: str) -> str:
        self.stopped.append((self.clock.time(), m.id))
        self.objects[m.id] = {**self.objects[m.id], "state": "stopped"}
        self.table.apply({"kind": "machine", "key": m.id, "op": "put", "object": self.objects[m.id], "rev": 0})
        return "stopped"


def world(machines: list[dict[str, Any]]) -> tuple[IdleLoop, FeedStarter, Loads, VirtualClock]:
    clock = VirtualClock()
    table = RoutingTable()
    objects = {m["id"]: m for m in machines}
    table.reset([{"kind": "host", "key": "h", "object": {"id": "h", "region": "ams", "status": "ok"}},
                 {"kind": "app", "key": "web", "object": {"name": "web", "primary_region": "ams"}}]
                + [{"kind": "machine", "key": k, "object": v} for k, v in objects.items()], 1)
    starter = FeedStarter(table, clock, objects)
    loads = Loads()
    loop = IdleLoop(table, loads, starter, Metrics(), "ams", INTERVAL, clock=clock)  # type: ignore[arg-type]
    return loop, starter, loads, clock


async def test_an_idle_region_loses_one_machine_per_pass_down_to_min_machines_running() -> None:
    loop, starter, _, clock = world([machine(f"m{i}", min_running=1) for i in range(3)])
    stop = asyncio.Event()
    task = asyncio.ensure_future(loop.run(stop))
    await clock.advance(5 * INTERVAL, step=1.0)
    times = [t - clock.time() + 5 * INTERVAL for t, _ in starter.stopped]
    # The first pass only sees them running (a machine gets a whole interval before it is judged idle);
    # then one per pass, and never the last one in the primary region (min_machines_running = 1).
    assert [round(t) for t in times] == [60, 90]
    assert len({mid for _, mid in starter.stopped}) == 2
    stop.set()
    await clock.advance(1.0)
    await task


async def test_a_busy_machine_keeps_its_region_running() -> None:
    loop, starter, loads, clock = world([machine("a"), machine("b")])
    stop = asyncio.Event()
    task = asyncio.ensure_future(loop.run(stop))
    for _ in range(6):  # both carry 5 requests (at soft_limit) every interval: no excess
        for mid in ("a", "b"):
            for _ in range(5):
                loads.acquire(mid)
            for _ in range(5):
                loads.release(mid)
        await clock.advance(INTERVAL, step=1.0)
    assert starter.stopped == []
    stop.set()
    await clock.advance(1.0)
    await task
