"""The idle loop (autostop): every interval, per app, look at this edge's region and stop or suspend at
most one excess machine, straight through its host's agent."""

from __future__ import annotations

import asyncio
import logging

from roost.balancer.autostop import Running, plan
from roost.balancer.services import ServiceSpec, http_service
from roost.clock import SYSTEM, Clock, sleep_unless
from roost.core.lifecycle import State
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.starter import Starter
from roost.proxy.table import MachineRoute, RoutingTable

log = logging.getLogger("roost.proxy.idle")
STRICTNESS = {"off": 0, "stop": 1, "suspend": 2}


def _service(m: MachineRoute) -> ServiceSpec | None:
    return http_service(m.services) or (m.services[0] if m.services else None)


class IdleLoop:
    def __init__(self, table: RoutingTable, loads: Loads, starter: Starter, metrics: Metrics, region: str,
                 interval: float, clock: Clock = SYSTEM) -> None:
        self.table = table
        self.clock = clock
        self.loads = loads
        self.starter = starter
        self.metrics = metrics
        self.region = region
        self.interval = interval
        self.running_since: dict[str, float] = {}  # when this edge first saw each machine running

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await sleep_unless(self.clock, stop, self.interval)
            if stop.is_set():
                return
            try:
                await self.pass_once()
            except Exception:
                log.exception("idle pass failed")

    async def pass_once(self) -> list[tuple[str, str, str]]:
        """One pass over every app; returns (app, machine, outcome) for what it stopped."""
        now = self.clock.monotonic()
        done = []
        for app, machines in list(self.table.by_app.items()):
            mine = [(m, s) for m in machines.values() if m.region == self.region and m.services
                    if (s := _service(m)) is not None]
            if not mine:
                continue
            # The most restrictive setting across the group's services wins (Fly: off < stop < suspend).
            mode = min((s.autostop for _, s in mine), key=lambda a: STRICTNESS[a])
            min_running = max(s.min_machines_running for _, s in mine)
            running = [(m, s) for m, s in mine if self.table.state_of(m, now) is State.STARTED and not m.cordoned
                       and not m.standby]
            for m, _ in mine:
                if (m, _) not in running:
                    self.running_since.pop(m.id, None)
            for m, _ in running:
                self.running_since.setdefault(m.id, now)
            # A machine gets a whole interval of traffic (or none) before it can be judged idle.
            if any(now - self.running_since[m.id] < self.interval * 0.9 for m, _ in running):
                continue
            peaks = {m.id: self.loads.take_peak(m.id) for m, _ in running}
            decision = plan([Running(m.id, peaks[m.id], s.soft_limit, m.updated_at) for m, s in running], mode,
                            min_running, self.table.primary_region(app) == self.region)
            if decision is None:
                continue
            victim = machines.get(decision.machine_id)
            if victim is None:
                continue
            outcome = await self.starter.stop(victim, decision.action)
            log.info("idle: %s %s (%s): %s", app, victim.id, decision.reason, outcome)
            self.metrics.autostops.labels(app, outcome.split(":")[0]).inc()
            done.append((app, victim.id, outcome))
        return done
