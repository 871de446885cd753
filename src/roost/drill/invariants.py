"""The fleet's invariants under faults, as pure checks (used by `roost drill all` and `roost drill chaos`).

- **No double runs:** a machine and a standby that watches it never ran at the same moment.
- **What should run runs:** every machine that ran when the campaign began (and that nothing may stop by
  design: no autostop) runs again once the faults are healed, except that of a machine and its standby,
  exactly one runs.
- **No failed idempotent request,** except those that died with an edge (a killed region's edge takes the
  connections open through it).
- **No acknowledged write lost** (when writes are checked: the drill's read-back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from roost.drill.analysis import Sample, died_with_edge, ran_together

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
Span = tuple[float, float | None]


def standby_pairs(machines: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(watched, standby) for every standby of the app."""
    return [(watched, m["id"]) for m in machines for watched in (m.get("config") or {}).get("standbys") or []]


def double_runs(pairs: list[tuple[str, str]], runs: dict[str, list[Span]], now: float, since: float) -> int:
    """Moments (counted per overlapping pair of runs) when a machine and its standby ran together."""
    return sum(ran_together(runs.get(a, []), runs.get(b, []), now, since) for a, b in pairs)


def _autostops(machine: dict[str, Any]) -> bool:
    return any(s.get("autostop") not in (None, False, "off") for s in (machine.get("config") or {}).get("services")
               or [])


def should_run(at_start: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    """What is not running that should be (see the module's rule), by machine id; [] when all is well."""
    state = {m["id"]: m.get("state") for m in now}
    pairs = standby_pairs(at_start)
    in_pairs = {x for pair in pairs for x in pair}
    missing = []
    for m in at_start:
        if m["id"] in in_pairs or m.get("state") != "started" or _autostops(m):
            continue
        if m["id"] in state and state[m["id"]] != "started":
            missing.append(m["id"])
    for watched, standby in pairs:
        running = [x for x in (watched, standby) if state.get(x) == "started"]
        was_running = any(m["id"] in (watched, standby) and m.get("state") == "started" for m in at_start)
        if was_running and len(running) != 1:
            missing.append(f"{watched}+{standby}")
    return missing


@dataclass(frozen=True)
class Failures:
    failed: int  # idempotent requests that failed and were not excused
    excused: int  # failed while an edge they went through died
    other: int  # failed non-idempotent requests (reported, not an invariant)


def failures(samples: list[Sample], method: str, edge_deaths: list[tuple[float, float]]) -> Failures:
    """Failed requests, excusing those whose connection died while an edge was being killed (`edge_deaths`:
    from the kill's start to its end, in the samples' time base)."""
    excused = died_with_edge(samples, edge_deaths)
    failed = sum(1 for s in samples if not s.ok) - excused
    if method.upper() not in IDEMPOTENT:
        return Failures(0, excused, failed)
    return Failures(failed, excused, 0)
