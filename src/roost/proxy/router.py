"""From a request to a machine: the balancer's decision, carried out (autostart, bounded waiting)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from roost.balancer.choose import Candidate, Cost, Kind, by_distance, choose, route_among
from roost.balancer.services import ServiceSpec
from roost.core.lifecycle import State
from roost.proxy.forwarding import Replay
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.starter import Starter, StartError
from roost.proxy.table import MachineRoute, RoutingTable

MAX_WAITING_PER_APP = 256
Pairs = Callable[[], list[tuple[MachineRoute, ServiceSpec]]]


@dataclass
class _Ranking:
    """An app's live machines (started, healthy, routable) grouped by distance from this edge, the edge's
    own region first; valid while the routing table's generation is unchanged."""

    generation: int
    groups: list[list[tuple[MachineRoute, ServiceSpec]]]
    local: bool  # the first group is the edge's own region
    startable: bool  # a stopped or suspended machine could be started (then choose() decides)
    fly_random: bool  # the service asks for Fly's random choice among equals


class RouteError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Router:
    def __init__(self, table: RoutingTable, loads: Loads, starter: Starter, region: str,
                 rtt: Callable[[str, str], float], metrics: Metrics) -> None:
        self.table = table
        self.loads = loads
        self.starter = starter
        self.region = region
        self.rtt = rtt
        self.metrics = metrics
        self.rng = random.Random()
        self.waiting: dict[str, int] = {}
        self._ranked: dict[str, _Ranking] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}  # app -> the autostart in progress (one at a time)

    def candidates(self, pairs: list[tuple[MachineRoute, ServiceSpec]]) -> list[Candidate]:
        now = self.table.clock.monotonic()
        table, loads = self.table, self.loads.in_flight
        out = []
        any_good = False
        suspects = []
        for m, s in pairs:
            st = table.state_of(m, now)
            healthy = table.healthy(m, now)
            # Sits out while another can serve: it just failed (penalized or ejected), or its host is suspect
            # (silent to the control plane, not yet declared dead: most likely cut off).
            suspect = (bool(table.penalties) and table.penalized(m.id, now)) or table.host_suspect(m)
            any_good = any_good or (healthy and not suspect and st is State.STARTED)
            suspects.append(suspect)
            out.append(Candidate(m.id, m.region, st, healthy, not m.cordoned, m.standby, loads.get(m.id, 0),
                                 s.soft_limit, s.hard_limit, s.autostart))
        if any_good and any(suspects):
            # A suspect machine sits out, unless nothing else can serve.
            out = [Candidate(c.id, c.region, c.state, False, c.routable, c.standby, c.load, c.soft_limit,
                             c.hard_limit, c.autostart) if sus else c for c, sus in zip(out, suspects, strict=True)]
        return out

    def route_now(self, app: str) -> tuple[MachineRoute, ServiceSpec] | None:
        """The machine a request goes to right now from this edge, if one can take it without starting or
        waiting; None hands the request to `pick`.

        The usual answer comes from a per-app ranking of live machines kept until the routing table
        changes, through the same rule `choose` applies (`route_among`), so that a request costs a few load
        lookups; while penalties or local state overrides are in force, `choose` decides over every
        candidate, as `pick` would."""
        table = self.table
        if table.penalties or table.state_overrides:
            table.expire_local(table.clock.monotonic())
        if not table.penalties and not table.state_overrides:
            ranked = self._ranked.get(app)
            if ranked is None or ranked.generation != table.generation:
                ranked = self._ranked[app] = self._rank(app)
            loads = self.loads.in_flight
            groups = [[(pair, loads.get(pair[0].id, 0), pair[1].soft_limit, pair[1].hard_limit) for pair in group]
                      for group in ranked.groups]
            picked = route_among(groups, ranked.local, self.rng, ranked.startable,
                                 None if ranked.fly_random else self._pair_cost)
            return None if picked is None else picked[0]
        pairs = table.http_targets(app)
        decision = choose(self.candidates(pairs), self.region, self._from_here, self.rng,
                          cost=self._candidate_cost(pairs))
        if decision.kind is not Kind.ROUTE or decision.target is None:
            return None
        target = decision.target.id
        for pair in pairs:
            if pair[0].id == target:
                return pair
        return None

    def _rank(self, app: str) -> _Ranking:
        pairs = self.table.http_targets(app)
        live: list[tuple[MachineRoute, ServiceSpec]] = []
        startable = False
        for c, pair in zip(self.candidates(pairs), pairs, strict=True):
            if c.live:
                live.append(pair)
            else:
                startable = startable or c.startable
        groups, local = by_distance(live, _pair_region, self.region, self._from_here)
        return _Ranking(self.table.generation, groups, local, startable, _fly_random(pairs))

    def _pair_cost(self, pair: tuple[MachineRoute, ServiceSpec]) -> float:
        return self.loads.cost(pair[0].id, self.table.clock.monotonic())

    def _candidate_cost(self, pairs: list[tuple[MachineRoute, ServiceSpec]]) -> Cost[Candidate] | None:
        if _fly_random(pairs):
            return None
        now = self.table.clock.monotonic()
        loads = self.loads
        return lambda c: loads.cost(c.id, now)

    def targets(self, app: str, prefer: str = "", force: str = "", replay: Replay | None = None
                ) -> tuple[str | None, Pairs]:
        """Which machines may take a request (Fly-Prefer-Region, Fly-Force-Instance-Id, a fly-replay), and
        from which region distance is counted (None: this edge's)."""
        table = self.table

        def all_targets() -> list[tuple[MachineRoute, ServiceSpec]]:
            return table.http_targets(app)

        if replay is not None:
            if replay.instance:
                return None, lambda: [(m, sv) for m, sv in all_targets() if m.id == replay.instance]
            regions = [r for r in replay.regions if r != "any"]
            skip = replay.source if replay.elsewhere else ""
            if regions:
                wanted = set(regions)
                if "any" in replay.regions:  # a preference list ending in "any": fall back to anywhere
                    return regions[0], lambda: (
                        [(m, sv) for m, sv in all_targets() if m.region in wanted and m.id != skip]
                        or [(m, sv) for m, sv in all_targets() if m.id != skip])
                return regions[0], lambda: [(m, sv) for m, sv in all_targets()
                                            if m.region in wanted and m.id != skip]
            return None, lambda: [(m, sv) for m, sv in all_targets() if m.id != skip]
        if force:
            return None, lambda: [(m, sv) for m, sv in all_targets() if m.id == force]
        if prefer:
            now = table.clock.monotonic()
            there = [(m, sv) for m, sv in all_targets() if m.region == prefer and table.healthy(m, now)
                     and table.state_of(m, now) in (State.STARTED, State.STOPPED, State.SUSPENDED)]
            if there:
                return prefer, lambda: [(m, sv) for m, sv in all_targets() if m.region == prefer] or all_targets()
        return None, all_targets

    def _from_here(self, region: str) -> float:
        return self.rtt(self.region, region)

    async def pick(self, app: str, pairs_fn: Pairs, exclude: set[str], deadline: float,
                   origin: str | None = None) -> tuple[MachineRoute, ServiceSpec]:
        """Choose (starting it if need be) a machine for a request, as seen from `origin` (this edge's region,
        or the region a fly-replay asked for)."""
        where = origin or self.region

        def distance(region: str) -> float:
            return self.rtt(where, region)

        waited_since: float | None = None
        try:
            while True:
                pairs = pairs_fn()
                by_id = {m.id: (m, s) for m, s in pairs}
                decision = choose(self.candidates(pairs), where, distance, self.rng, frozenset(exclude),
                                  self._candidate_cost(pairs))
                if decision.kind is Kind.ROUTE and decision.target is not None:
                    return by_id[decision.target.id]
                if decision.kind is Kind.START and decision.target is not None:
                    starting = self._starting.get(app)
                    if starting is not None:
                        # One start at a time per app: wait for it, then decide again. The machine it brings
                        # up is under its soft_limit, so this request most likely goes there; another start
                        # happens only if that one is not enough (every running machine over soft_limit).
                        budget = max(0.0, deadline - time.monotonic())
                        done, _ = await asyncio.wait({starting}, timeout=budget)
                        if not done:
                            raise RouteError(503, "PM03", f"timed out waiting for a machine of {app!r} to start")
                        continue
                    m, service = by_id[decision.target.id]
                    port = m.host_port(service.internal_port)
                    assert port is not None
                    self._starting[app] = asyncio.get_running_loop().create_future()
                    try:
                        budget = max(0.1, deadline - time.monotonic())
                        took = await asyncio.wait_for(self.starter.start(m, port), budget)
                    except TimeoutError:
                        self.metrics.autostarts.labels(app, "timeout").inc()
                        raise RouteError(503, "PM03", f"timed out waiting for machine {m.id} to start") from None
                    except StartError as exc:
                        self.metrics.autostarts.labels(app, "failed").inc()
                        exclude.add(m.id)
                        if not any(c.id not in exclude for c in self.candidates(pairs)):
                            raise RouteError(503, exc.code, exc.message) from None
                        continue
                    finally:
                        self._starting.pop(app).set_result(None)
                    self.metrics.autostarts.labels(app, "ok").inc()
                    self.metrics.autostart_seconds.labels(app).observe(took)
                    return m, service
                if decision.kind in (Kind.WAIT, Kind.NONE) and exclude:
                    # Every machine was tried: back off a little and try them all again (the caller bounds
                    # the attempts); a machine still booting refuses connections for a moment.
                    if time.monotonic() + 0.05 > deadline:
                        raise RouteError(502, "PR04", f"no candidate machines left for app {app!r} after retries")
                    await asyncio.sleep(min(0.5, 0.02 * (2 ** min(len(exclude), 5))))
                    exclude.clear()
                    continue
                if decision.kind is Kind.NONE:
                    if exclude:
                        raise RouteError(502, "PR04", f"no candidate machines left for app {app!r} after retries")
                    raise RouteError(503, "PR01", f"app {app!r} has no machine that serves this service")
                # WAIT: every machine at hard_limit, or none healthy yet: queue, bounded in size and time.
                if waited_since is None:
                    if self.waiting.get(app, 0) >= MAX_WAITING_PER_APP:
                        raise RouteError(503, "PL02", f"too many requests waiting for app {app!r}")
                    self.waiting[app] = self.waiting.get(app, 0) + 1
                    waited_since = time.monotonic()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    code = "PL01" if "hard_limit" in decision.reason else "PR03"
                    raise RouteError(503, code, f"app {app!r}: {decision.reason}")
                await _either(self.table.wait_change(min(remaining, 1.0)), self.loads.wait_release(min(remaining, 1.0)))
        finally:
            if waited_since is not None:
                self.waiting[app] -= 1
                self.metrics.queue_wait_seconds.labels(app).observe(time.monotonic() - waited_since)


def _pair_region(pair: tuple[MachineRoute, ServiceSpec]) -> str:
    return pair[0].region


def _fly_random(pairs: list[tuple[MachineRoute, ServiceSpec]]) -> bool:
    return any(service.balancing == "random" for _, service in pairs)


async def _either(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
