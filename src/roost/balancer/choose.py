"""Choosing a machine for a request, by Fly Proxy's rules.

Per machine, load falls in one of three buckets: under soft_limit, between soft and hard, at hard_limit.
A request goes to an under-soft machine if there is one, the closest first (same region first, then by
round-trip time), random among equals. Other regions are used only when every local machine is unhealthy
or at hard_limit, or the app has no machine in the edge's region. When every running machine is at or
over soft_limit (or none runs) and autostart is on, a stopped or suspended machine is started, the
closest first; never a standby or a cordoned one. Otherwise the least loaded machine under its hard limit
takes it; if all are at hard_limit the request waits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

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


def choose(candidates: Sequence[Candidate], edge_region: str, distance: Distance, rng: random.Random,
           exclude: frozenset[str] = frozenset()) -> Decision:
    if not candidates:
        return Decision(Kind.NONE, reason="no machine of this app serves this service")
    pool = [c for c in candidates if c.id not in exclude]
    live = [c for c in pool if c.live]
    local_open = [c for c in live if c.region == edge_region and not c.at_hard]
    # Other regions only when every local machine is unhealthy or at hard_limit (or there is none):
    # soft limits never send traffic away from the edge's region.
    usable = local_open or [c for c in live if not c.at_hard]

    under = [c for c in usable if c.under_soft]
    if under:
        return Decision(Kind.ROUTE, _closest(under, distance, rng), "under soft_limit")
    startable = [c for c in pool if c.startable]
    if startable:
        why = "every running machine is at or over soft_limit" if usable else "no machine is running"
        return Decision(Kind.START, _closest(startable, distance, rng), why)
    if usable:
        least = min(c.load for c in usable)
        return Decision(Kind.ROUTE, _closest([c for c in usable if c.load == least], distance, rng),
                        "between soft and hard limits")
    if live:
        return Decision(Kind.WAIT, reason="every machine is at its hard_limit")
    if not any(c.autostart for c in pool) and any(c.state in (State.STOPPED, State.SUSPENDED) for c in pool):
        return Decision(Kind.WAIT, reason="no machine is running and autostart is off")
    return Decision(Kind.WAIT, reason="no healthy machine is running")


def _closest(cands: Sequence[Candidate], distance: Distance, rng: random.Random) -> Candidate:
    best = min(distance(c.region) for c in cands)
    nearest = [c for c in cands if distance(c.region) == best]
    return nearest[0] if len(nearest) == 1 else rng.choice(list(nearest))
