"""Choosing a machine for a request, by Fly Proxy's rules.

Per machine, load falls in one of three buckets: under soft_limit, between soft and hard, at hard_limit.
A request goes to an under-soft machine if there is one, the closest first (same region first, then by
round-trip time); among equals, Fly picks at random, and Roost by default picks the cheaper of two drawn
at random, by a cost that grows with the machine's recent latency and requests in flight
(roost.balancer.scores), so a slow machine gets few requests (a service may ask for Fly's rule with
`concurrency.balancing = "random"`). Other regions are used only when every local machine is unhealthy
or at hard_limit, or the app has no machine in the edge's region. When every running machine is at or
over soft_limit (or none runs) and autostart is on, a stopped or suspended machine is started, the
closest first; never a standby or a cordoned one. Otherwise the least loaded machine under its hard limit
takes it; if all are at hard_limit the request waits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from roost.core.lifecycle import State

STARTABLE = frozenset({State.STOPPED, State.SUSPENDED, State.CREATED})


class Kind(Enum):
    ROUTE = "route"  # send it to `target`
    START = "start"  # start `target`, then send it there
    WAIT = "wait"  # every candidate is at hard_limit (or none is healthy yet): wait and try again
    NONE = "none"  # nothing can ever serve it (no machine declares the service)


@dataclass(frozen=True)
class Candidate:
    id: str
    region: str
    state: State
    healthy: bool  # host ok, service checks not critical
    routable: bool  # not cordoned, not registered-skipped
    standby: bool
    load: int
    soft_limit: int
    hard_limit: int | None
    autostart: bool

    @property
    def running(self) -> bool:
        return self.state is State.STARTED

    @property
    def live(self) -> bool:
        """Can take traffic now: running, healthy, routable."""
        return self.running and self.healthy and self.routable

    @property
    def startable(self) -> bool:
        """Autostart may start it: stopped or suspended, healthy, routable, autostart on, not a standby."""
        return self.state in STARTABLE and self.autostart and self.routable \
            and self.healthy and not self.standby

    @property
    def at_hard(self) -> bool:
        return self.hard_limit is not None and self.load >= self.hard_limit

    @property
    def under_soft(self) -> bool:
        return self.load < self.soft_limit


@dataclass(frozen=True)
class Decision:
    kind: Kind
    target: Candidate | None = None
    reason: str = ""


Distance = Callable[[str], float]  # region -> round-trip ms from the edge (0 for its own region)
T = TypeVar("T")
# One live machine as the routing rule sees it: (the machine, its load, soft_limit, hard_limit or None).
Loaded = tuple[T, int, int, int | None]
Cost = Callable[[T], float]  # lower is better; None: Fly's uniform random choice
BALANCING = ("latency", "random")
# Costs within this ratio count as equal (random between the two): machines about as fast share the load
# instead of the one a few microseconds faster taking all of it (which would leave the others idle enough
# to be stopped, and flap).
TOLERANCE = 1.5


def by_distance(items: Iterable[T], region: Callable[[T], str], edge_region: str,
                distance: Distance) -> tuple[list[list[T]], bool]:
    """Items grouped by their region's distance from the edge, the edge's own region first; and whether
    that first group is the edge's own region."""
    local: list[T] = []
    others: dict[float, list[T]] = {}
    for item in items:
        where = region(item)
        if where == edge_region:
            local.append(item)
        else:
            others.setdefault(distance(where), []).append(item)
    groups = [local] if local else []
    groups += [others[d] for d in sorted(others)]
    return groups, bool(local)


def two_choices(items: Sequence[Loaded[T]], rng: random.Random, cost: Cost[T] | None) -> Loaded[T]:
    """One of the items: at random (cost None), else the cheaper of two drawn at random (either, if their
    costs are within TOLERANCE of each other)."""
    if len(items) == 1:
        return items[0]
    if cost is None:
        return rng.choice(items)
    a, b = rng.sample(items, 2)  # in random order: a wins a tie
    cost_a, cost_b = cost(a[0]), cost(b[0])
    return a if cost_a <= cost_b * TOLERANCE else b


def route_among(groups: Sequence[Sequence[Loaded[T]]], local: bool, rng: random.Random,
                startable: bool, cost: Cost[T] | None = None) -> tuple[T, bool] | None:
    """Fly's routing rule over live machines grouped by distance (`by_distance`): local machines under their
    hard limit if any, else any machine under its hard limit; among those an under-soft_limit one, the
    closest group first, chosen within it by `two_choices`; else, unless a machine can be started instead,
    the least loaded, the closest first. Returns the machine and whether it was under soft_limit, or None
    (start one, or wait). The edge calls this on a cached ranking for every request; `choose` on its candidates."""
    usable: list[list[Loaded[T]]] = []
    for i, group in enumerate(groups):
        open_ = [t for t in group if t[3] is None or t[1] < t[3]]
        if open_:
            usable.append(open_)
            if i == 0 and local:  # soft limits never send traffic away from the edge's region
                break
    for loaded in usable:
        under = [t for t in loaded if t[1] < t[2]]
        if under:
            return two_choices(under, rng, cost)[0], True
    if not usable or startable:
        return None
    least = min(t[1] for loaded in usable for t in loaded)
    for loaded in usable:
        lightest = [t for t in loaded if t[1] == least]
        if lightest:
            return (lightest[0] if len(lightest) == 1 else rng.choice(lightest))[0], False
    return None


def choose(candidates: Sequence[Candidate], edge_region: str, distance: Distance, rng: random.Random,
           exclude: frozenset[str] = frozenset(), cost: Cost[Candidate] | None = None) -> Decision:
    if not candidates:
        return Decision(Kind.NONE, reason="no machine of this app serves this service")
    pool = [c for c in candidates if c.id not in exclude]
    live = [c for c in pool if c.live]
    startable = [c for c in pool if c.startable]
    groups, local = by_distance(live, _region, edge_region, distance)
    picked = route_among([[(c, c.load, c.soft_limit, c.hard_limit) for c in group] for group in groups], local,
                         rng, bool(startable), cost)
    if picked is not None:
        target, under = picked
        return Decision(Kind.ROUTE, target, "under soft_limit" if under else "between soft and hard limits")
    if startable:
        usable = any(not c.at_hard for c in live)
        why = "every running machine is at or over soft_limit" if usable else "no machine is running"
        return Decision(Kind.START, _closest(startable, distance, rng), why)
    if live:
        return Decision(Kind.WAIT, reason="every machine is at its hard_limit")
    if not any(c.autostart for c in pool) and any(c.state in (State.STOPPED, State.SUSPENDED) for c in pool):
        return Decision(Kind.WAIT, reason="no machine is running and autostart is off")
    return Decision(Kind.WAIT, reason="no healthy machine is running")


def _region(c: Candidate) -> str:
    return c.region


def _closest(cands: Sequence[Candidate], distance: Distance, rng: random.Random) -> Candidate:
    best = min(distance(c.region) for c in cands)
    nearest = [c for c in cands if distance(c.region) == best]
    return nearest[0] if len(nearest) == 1 else rng.choice(list(nearest))
