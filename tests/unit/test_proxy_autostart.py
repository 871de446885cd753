"""Autostart through the router: one start at a time per app and edge, and only when it is needed (issue 12
case 7). The starter is a fake that takes a while, as a real boot does; the table and router are real."""

from __future__ import annotations

import asyncio
import time

from roost.core.lifecycle import State
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import Router
from roost.proxy.table import MachineRoute, RoutingTable


class SlowStarter:
    def __init__(self, table: RoutingTable, boot: float) -> None:
        self.table, self.boot, self.started = table, boot, []

    async def start(self, m: MachineRoute, port: int) -> float:
        self.started.append(m.id)
        await asyncio.sleep(self.boot)
        self.table.override_state(m.id, State.STARTED)
        return self.boot


def table_of(states: dict[str, tuple[str, str]], soft: int) -> RoutingTable:
    table = RoutingTable()
    objects = [{"kind": "host", "key": "h", "object": {"id": "h", "region": "ams", "status": "ok"}}]
    for i, (mid, (region, state)) in enumerate(states.items()):
        config = {"services": [{"protocol": "tcp", "internal_port": 8080, "autostart": True,
                                "concurrency": {"type": "requests", "soft_limit": soft},
                                "ports": [{"port": 80, "handlers": ["http"]}]}]}
        objects.append({"kind": "machine", "key": mid, "object": {
            "id": mid, "app": "web", "region": region, "state": state, "private_ip": "127.0.0.1",
            "roost": {"host_id": "h", "ports": {"8080": 9000 + i}}, "config": config}})
    table.reset(objects, 1)
    return table


def rtt(a: str, b: str) -> float:
    return 0.0 if a == b else 80.0


async def burst(router: Router, loads: Loads, n: int) -> list[str]:
    """n requests at once, each holding its machine until all have been routed."""
    async def one() -> str:
        m, _ = await router.pick("web", lambda: router.table.http_targets("web"), set(), time.monotonic() + 5)
        loads.acquire(m.id)
        return m.id

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_concurrent_requests_wait_for_one_start_instead_of_starting_a_machine_each() -> None:
    table = table_of({"a1": ("ams", "stopped"), "a2": ("ams", "stopped"), "e1": ("ewr", "stopped"),
                      "e2": ("ewr", "stopped")}, soft=200)
    loads = Loads()
    starter = SlowStarter(table, 0.05)
    metrics = Metrics()
    router = Router(table, loads, starter, "ams", rtt, metrics)  # type: ignore[arg-type]
    served = asyncio.run(burst(router, loads, 20))
    assert len(starter.started) == 1, starter.started
    assert starter.started[0] in ("a1", "a2"), "the closest machine first"
    assert set(served) == {starter.started[0]}
    assert metrics.autostarts.labels("web", "ok")._value.get() == 1, "the metric counts real starts"


def test_another_machine_starts_only_when_the_running_ones_are_over_soft_limit() -> None:
    table = table_of({"a1": ("ams", "stopped"), "a2": ("ams", "stopped"), "a3": ("ams", "stopped")}, soft=2)
    loads = Loads()
    starter = SlowStarter(table, 0.02)
    router = Router(table, loads, starter, "ams", rtt, Metrics())  # type: ignore[arg-type]
    served = asyncio.run(burst(router, loads, 4))
    # 4 requests held at once with soft_limit 2: two machines are needed, one at a time, never three
    assert len(starter.started) == 2, starter.started
    assert sorted(served.count(m) for m in set(served)) == [2, 2]


def feed(table: RoutingTable, mid: str, state: str, rev: int) -> None:
    objects = {"id": mid, "app": "web", "region": "ams", "state": state, "private_ip": "127.0.0.1",
               "roost": {"host_id": "h", "ports": {"8080": 9000}},
               "config": {"services": [{"protocol": "tcp", "internal_port": 8080, "autostart": True,
                                        "ports": [{"port": 80, "handlers": ["http"]}]}]}}
    table.apply({"op": "put", "kind": "machine", "key": mid, "object": objects, "rev": rev})


def test_a_suspend_right_after_an_autostart_is_not_hidden_by_the_starts_override() -> None:
    # Issue 14's bench found requests forwarded to a frozen machine: the feed said "started" before the
    # start's own override did, so the override outlived the feed's next news (a suspend) by up to 10 s.
    table = table_of({"m1": ("ams", "stopped")}, soft=10)
    feed(table, "m1", "started", 2)
    table.override_state("m1", State.STARTED)
    feed(table, "m1", "suspending", 3)
    feed(table, "m1", "suspended", 4)
    assert table.state_of(table.machines["m1"], time.monotonic()) is State.SUSPENDED


def test_a_lagging_feed_on_its_way_to_the_known_state_keeps_the_override() -> None:
    table = table_of({"m1": ("ams", "stopped")}, soft=10)
    table.override_state("m1", State.STARTED)
    feed(table, "m1", "stopped", 2)  # the same old news again (another field changed)
    assert table.state_of(table.machines["m1"], time.monotonic()) is State.STARTED
    feed(table, "m1", "starting", 3)  # catching up
    assert table.state_of(table.machines["m1"], time.monotonic()) is State.STARTED
    feed(table, "m1", "started", 4)  # confirmed: nothing local left
    assert "m1" not in table.state_overrides


def test_a_starts_own_override_is_kept_until_the_start_ends() -> None:
    table = table_of({"m1": ("ams", "stopped")}, soft=10)
    table.override_state("m1", State.STARTING)
    feed(table, "m1", "started", 2)  # the process exists; its port may not accept yet
    assert table.state_of(table.machines["m1"], time.monotonic()) is State.STARTING
