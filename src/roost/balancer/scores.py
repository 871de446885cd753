"""What an edge has seen of each machine's answers: a latency estimate, its cost as a target, and ejection.

Latency is a peak EWMA (Finagle's and Linkerd's): an answer slower than the estimate replaces it at once;
faster ones pull it down with time constant DECAY, weighted by the time since the previous answer. An
estimate nobody refreshes decays toward zero (IDLE_DECAY), so a machine left alone because it was slow is
tried again after a while (one request, which refreshes the estimate) instead of never again.

A machine's cost is its estimate (or, if longer, how long its requests in flight have waited on average:
a frozen machine gets costlier by the millisecond before it answers anything) times (requests in flight +
1); the router picks the cheaper of two machines drawn at random (power of two choices), so a slow or stuck
machine gets few requests while a fast one is free. Latencies under LATENCY_FLOOR count as the floor:
among machines that all answer fast, a few milliseconds more (a cold first answer, a busy moment) is noise,
and the load is spread by requests in flight alone, as a least-loaded balancer would. A machine not heard
from yet costs nothing while it has nothing in flight, and a penalty per request while it has: a new
machine gets one probe at a time until its first answer.

Ejection (Envoy's outlier detection): CONSECUTIVE failures in a row (a 5xx, a timeout, a failed connect, a
reset before any answer) eject a machine for BASE_EJECTION seconds times the number of times it was ejected
(capped at MAX_EJECTION; a machine that behaves for FORGIVE_AFTER seconds starts over). The router keeps an
ejected machine out only while another can serve. When it comes back its cost is scaled up and falls back to
normal over WARMUP seconds, so its share of traffic grows gradually.

Pure: times are passed in (monotonic seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DECAY = 1.0
IDLE_DECAY = 2.0
LATENCY_FLOOR = 0.020
UNHEARD_PENALTY = 1.0  # per request in flight to a machine that has not answered yet
CONSECUTIVE = 5
BASE_EJECTION = 5.0
MAX_EJECTION = 60.0
FORGIVE_AFTER = 300.0
WARMUP = 10.0
MIN_WARM_WEIGHT = 0.1
MAX_MACHINES = 100_000  # bound: one entry per machine this edge sent to; the oldest go first


@dataclass
class _Seen:
    estimate: float = 0.0
    at: float = 0.0  # when the estimate was last refreshed
    heard: bool = False
    failures: int = 0  # in a row
    ejections: int = 0
    ejected_until: float = 0.0
    back_at: float = -math.inf  # when its last ejection ended


class MachineScores:
    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def _entry(self, machine_id: str) -> _Seen:
        seen = self._seen.get(machine_id)
        if seen is None:
            if len(self._seen) >= MAX_MACHINES:
                del self._seen[next(iter(self._seen))]
            seen = self._seen[machine_id] = _Seen()
        return seen

    def forget(self, machine_id: str) -> None:
        self._seen.pop(machine_id, None)

    # ---- what happened ----

    def answered(self, machine_id: str, seconds: float, now: float) -> None:
        """An answer (any status under 500) came `seconds` after the request was routed there."""
        seen = self._entry(machine_id)
        self._observe(seen, seconds, now)
        seen.failures = 0

    def failed(self, machine_id: str, seconds: float, now: float) -> float:
        """A 5xx, a timeout, a failed connect or a reset before any answer, `seconds` after routing. Returns
        how long the machine is ejected for from now (0: not ejected)."""
        seen = self._entry(machine_id)
        self._observe(seen, seconds, now)
        if seen.ejected_until > now:
            return 0.0  # already out (a request sent before it was ejected)
        if seen.ejections and now - seen.back_at > FORGIVE_AFTER:
            seen.ejections = 0
        seen.failures += 1
        if seen.failures < CONSECUTIVE:
            return 0.0
        seen.failures = 0
        seen.ejections += 1
        length = min(MAX_EJECTION, BASE_EJECTION * seen.ejections)
        seen.ejected_until = now + length
        seen.back_at = seen.ejected_until
        return length

    @staticmethod
    def _observe(seen: _Seen, seconds: float, now: float) -> None:
        seconds = max(0.0, seconds)
        current = seen.estimate
        if not seen.heard or seconds >= current:
            seen.estimate = seconds  # the peak: a slower answer counts at once
        else:
            weight = math.exp(-max(0.0, now - seen.at) / DECAY)
            seen.estimate = current * weight + seconds * (1.0 - weight)
        seen.heard = True
        seen.at = now

    # ---- what the router asks ----

    def estimate(self, machine_id: str, now: float) -> float | None:
        """The latency estimate now (decayed while nothing refreshed it); None if never heard from."""
        seen = self._seen.get(machine_id)
        if seen is None or not seen.heard:
            return None
        return seen.estimate * math.exp(-max(0.0, now - seen.at) / IDLE_DECAY)

    def ejected(self, machine_id: str, now: float) -> bool:
        seen = self._seen.get(machine_id)
        return seen is not None and seen.ejected_until > now

    def cost(self, machine_id: str, in_flight: int, waited: float, now: float) -> float:
        """What sending one more request there costs (lower is better); `waited`: the mean time its requests
        in flight have waited so far."""
        seen = self._seen.get(machine_id)
        if seen is None or not seen.heard:
            return UNHEARD_PENALTY * in_flight
        if in_flight:  # not idle: silence while requests wait is no reason to think better of it
            cost = max(seen.estimate, waited, LATENCY_FLOOR) * (in_flight + 1)
        else:
            cost = max(LATENCY_FLOOR, seen.estimate * math.exp(-max(0.0, now - seen.at) / IDLE_DECAY))
        since_back = now - seen.back_at
        if 0.0 <= since_back < WARMUP:  # coming back from an ejection: its share grows over WARMUP
            cost /= max(MIN_WARM_WEIGHT, since_back / WARMUP)
        return cost
