"""What a drill measured, computed from its samples: pure, so every figure in a report can be unit-tested.

Times are seconds since the drill started. Each sample is one request of the open-loop load: `sent` is when
it was *scheduled* (not when a busy client got round to it), so a stall shows up as latency instead of
silently thinning the load (no coordinated omission).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

PHASES = ("before", "during", "after")


@dataclass(frozen=True)
class Sample:
    seq: int
    sent: float
    done: float
    status: int  # 0: no HTTP answer at all
    cause: str  # "ok", or why it failed: "edge 502 PR04", "app 500", "connect refused", "timeout", "reset"
    machine: str = ""  # the machine that answered (from the edge's flyio-debug header)
    region: str = ""  # that machine's region
    edge: str = ""  # the edge's region
    rerouted: bool = False  # the edge retried it on another machine, or the client resent it on a new connection
    new_conn: bool = False  # sent on a connection opened for it (where a new client lands)

    @property
    def ok(self) -> bool:
        return self.cause == "ok"

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass(frozen=True)
class Window:
    fault_at: float
    heal_at: float | None  # None: never healed (or nothing to heal)
    end: float

    def phase(self, t: float) -> str:
        if t < self.fault_at:
            return "before"
        if self.heal_at is None or t < self.heal_at:
            return "during"
        return "after"


def phase_of(s: Sample, window: Window) -> str:
    """Which phase a request belongs to: by when it was due, except that a request still in flight when the
    fault struck belongs to the fault (the "before" figures are the undisturbed baseline)."""
    if s.sent < window.fault_at <= s.done:
        return "during"
    return window.phase(s.sent)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class PhaseStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    causes: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    by_machine: dict[str, int] = field(default_factory=dict)  # successful answers per machine
    by_region: dict[str, int] = field(default_factory=dict)  # and per region

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed, "causes": self.causes,
                "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
                "by_machine": self.by_machine, "by_region": self.by_region}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summarize(samples: list[Sample]) -> PhaseStats:
    """Counts, failure causes and latency (successful requests only: a refused connection is not fast)."""
    stats = PhaseStats(sent=len(samples))
    latencies = [s.latency for s in samples if s.ok]
    stats.ok = len(latencies)
    stats.failed = stats.sent - stats.ok
    stats.causes = dict(Counter(s.cause for s in samples if not s.ok).most_common())
    stats.p50_ms, stats.p99_ms = _ms(percentile(latencies, 50)), _ms(percentile(latencies, 99))
    stats.max_ms = _ms(max(latencies)) if latencies else None
    stats.by_machine = dict(Counter(s.machine for s in samples if s.ok and s.machine).most_common())
    stats.by_region = dict(Counter(s.region for s in samples if s.ok and s.region).most_common())
    return stats


def by_phase(samples: list[Sample], window: Window) -> dict[str, PhaseStats]:
    groups: dict[str, list[Sample]] = {p: [] for p in PHASES}
    for s in samples:
        groups[phase_of(s, window)].append(s)
    return {p: summarize(groups[p]) for p in PHASES}


@dataclass(frozen=True)
class Shift:
    """How long the fault disturbed traffic. A request of the fault's phase (due after it and before the heal,
    or in flight when it struck) is *affected* when users could tell: it failed, it stalled (took longer than
    `slow`), or it was rerouted (the edge had to retry it on another machine, or the client had to resend it
    on a new connection). A request answered quickly, wherever it was answered, is not: a machine that is
    back within a second and serves normally disturbs nobody. `seconds` runs from the fault to the end of the
    last affected request, provided traffic was undisturbed after it: 0 when nothing was affected, None when
    the phase ended still disturbed (or had no traffic)."""

    affected: int
    seconds: float | None  # None: the phase ended disturbed, or had no request
    first_elsewhere: float | None  # from the fault to the first success from outside the target (for reference)
    last_affected: float | None  # from the fault to the end of the last affected request
    slow: float  # the latency counted as "stalled"
    requests: int = 0  # requests in the fault's phase


def slow_threshold(before: list[Sample], floor: float = 1.0, factor: float = 5.0) -> float:
    """Stalled means slower than `factor` x the p99 before the fault, and never less than `floor` seconds
    (a shift to a farther region legitimately adds its round trip)."""
    p99 = percentile([s.latency for s in before if s.ok], 99)
    return max(floor, factor * p99) if p99 is not None else floor


def time_to_shift(samples: list[Sample], window: Window, target_machines: set[str],
                  target_regions: set[str] | None = None, slow: float = 1.0) -> Shift:
    regions = target_regions or set()

    def on_target(s: Sample) -> bool:
        return (bool(s.machine) and s.machine in target_machines) or (bool(s.region) and s.region in regions)

    during = [s for s in samples if phase_of(s, window) == "during"]
    affected = [s for s in during if is_affected(s, slow)]
    elsewhere = [s.done for s in during if s.ok and not on_target(s)]
    first = min(elsewhere) - window.fault_at if elsewhere else None
    last: float | None = None
    seconds: float | None = None
    if affected:
        last_done = max(s.done for s in affected)
        last = last_done - window.fault_at
        if any(s.done > last_done for s in during if not is_affected(s, slow)):
            seconds = last  # undisturbed again after it
    elif during:
        seconds = 0.0
    return Shift(affected=len(affected), seconds=seconds, first_elsewhere=first, last_affected=last, slow=slow,
                 requests=len(during))


def is_affected(s: Sample, slow: float) -> bool:
    """Could the user tell? Failed, stalled, or rerouted."""
    return not s.ok or s.rerouted or s.latency > slow


@dataclass(frozen=True)
class Return:
    """Where new clients land after the heal (keep-alive clients stay where they are, as with anycast)."""

    by_region: dict[str, int]  # successes on new connections after the heal, per region
    back_after: float | None  # from the heal to the first new connection answered in the target region again


def after_heal(samples: list[Sample], window: Window, target_regions: set[str]) -> Return:
    if window.heal_at is None:
        return Return({}, None)
    heal_at = window.heal_at
    fresh = [s for s in samples if s.new_conn and s.ok and s.sent >= heal_at]
    back = [s.done for s in fresh if s.region in target_regions]
    return Return(dict(Counter(s.region for s in fresh if s.region).most_common()),
                  min(back) - heal_at if back and target_regions else None)


@dataclass(frozen=True)
class Bucket:
    start: float
    ok: dict[str, int]  # successes per series (a machine, or a region)
    errors: int


def timeline(samples: list[Sample], end: float, width: float, series: str = "machine") -> list[Bucket]:
    """Requests per bucket of `width` seconds (by when they were sent), successes split by machine or region."""
    count = max(1, math.ceil(end / width))
    oks: list[Counter[str]] = [Counter() for _ in range(count)]
    errors = [0] * count
    for s in samples:
        i = min(count - 1, max(0, int(s.sent // width)))
        if s.ok:
            oks[i][(s.region if series == "region" else s.machine) or "?"] += 1
        else:
            errors[i] += 1
    return [Bucket(round(i * width, 3), dict(oks[i]), errors[i]) for i in range(count)]


@dataclass(frozen=True)
class Traffic:
    """What users saw of one drill's load: the report's traffic sections, and the two figures its checks need."""

    figures: dict[str, Any]  # totals, phases, shift, timeline, after_heal: as the JSON report carries them
    total: PhaseStats
    shift: Shift


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def traffic(samples: list[Sample], window: Window, target_machines: set[str], target_regions: set[str],
            width: float) -> Traffic:
    """Every traffic figure of a drill's report, from its samples. With target regions (a region drill), the
    timeline and the shift count regions; otherwise machines."""
    phases = by_phase(samples, window)
    slow = slow_threshold([s for s in samples if phase_of(s, window) == "before"])
    shift = time_to_shift(samples, window, target_machines, target_regions, slow)
    series = "region" if target_regions else "machine"
    back = after_heal(samples, window, target_regions)
    total = summarize(samples)
    figures = {
        "totals": total.as_dict(), "phases": {p: s.as_dict() for p, s in phases.items()},
        "shift": {"seconds": _round(shift.seconds), "affected": shift.affected, "requests": shift.requests,
                  "first_elsewhere_s": _round(shift.first_elsewhere),
                  "last_affected_s": _round(shift.last_affected), "slow_threshold_s": round(shift.slow, 4)},
        "timeline": {"width_s": width, "series_by": series,
                     "buckets": [asdict(b) for b in timeline(samples, window.end, width, series)]},
        "after_heal": {"by_region": back.by_region, "back_after_s": _round(back.back_after)},
    }
    return Traffic(figures, total, shift)


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    measured: str
    passed: bool


def died_with_edge(samples: list[Sample], edge_deaths: list[tuple[float, float]]) -> int:
    """Requests whose connection failed (no HTTP answer at all) while an edge they could have gone through was
    being killed: from the kill's start until its region was down (a region's edge dies with the region, and
    the clients' connections to it die too: nobody can save those)."""
    return sum(1 for s in samples if excused_by_edge_death(s, edge_deaths))


def excused_by_edge_death(s: Sample, edge_deaths: list[tuple[float, float]]) -> bool:
    return not s.ok and s.status == 0 and any(s.sent <= end and s.done >= start for start, end in edge_deaths)


def checks(*, failed: int, shift: Shift, expect_no_errors: bool, expect_shift_under: float | None,
           double_runs: int | None, writes_lost: int | None, excused: int = 0) -> list[Check]:
    """The drill's own targets: the ones asked for, plus the safety ones that always hold (no machine and its
    standby ever ran together; no acknowledged write was lost) whenever they were measured. `excused`: failed
    requests that died with a killed edge (not counted against --expect-no-errors)."""
    out: list[Check] = []
    if expect_no_errors:
        counted = failed - excused
        measured = str(counted) + (f" ({excused} more died with the killed edge)" if excused else "")
        out.append(Check("no failed requests", "0", measured, counted == 0))
    if expect_shift_under is not None:
        took = shift.seconds
        if shift.requests == 0:
            out.append(Check("time to shift", f"< {expect_shift_under:g} s", "no traffic during the fault", True))
        else:
            out.append(Check("time to shift", f"< {expect_shift_under:g} s",
                             "never shifted" if took is None else f"{took:.3f} s",
                             took is not None and took < expect_shift_under))
    if double_runs is not None:
        out.append(Check("machine and standby never ran together", "0", str(double_runs), double_runs == 0))
    if writes_lost is not None:
        out.append(Check("acknowledged writes lost", "0", str(writes_lost), writes_lost == 0))
    return out


Span = tuple[float, float | None]  # a process's run: start, end (None: still running, or never recorded)


def ran_together(a: list[Span], b: list[Span], now: float, since: float = 0.0) -> int:
    """How many pairs of runs (one of each list) were alive at the same moment at or after `since`: a drill
    judges only its own window (an earlier drill's overlap is that drill's to report)."""
    def end(span: Span) -> float:
        return now if span[1] is None else span[1]

    return sum(1 for x in a for y in b if max(x[0], y[0], since) < min(end(x), end(y)))


def takeovers_twice(machines: list[dict[str, Any]], since: float) -> int:
    """Takeover decisions beyond the first for one machine at or after `since` (wall clock), over every standby's
    events: a leader deposed mid-decision whose decision still landed beside its successor's would show here."""
    decided: dict[str, int] = {}
    for m in machines:
        for e in m.get("events") or []:
            replaced = (e.get("request") or {}).get("replaces") if isinstance(e.get("request"), dict) else None
            if e.get("type") == "takeover" and isinstance(e.get("timestamp"), int | float) and replaced \
                    and e["timestamp"] / 1000 >= since - 0.001:
                decided[str(replaced)] = decided.get(str(replaced), 0) + 1
    return sum(n - 1 for n in decided.values())


def takeover_time(events: list[dict[str, Any]], since: float) -> float | None:
    """When (seconds, wall clock) the control plane first started this standby in place of its machine at or
    after `since`, from the machine's events. A start for any other reason is not a takeover."""
    times = [e["timestamp"] / 1000 for e in events
             if e.get("type") == "takeover" and isinstance(e.get("timestamp"), int | float)
             and e["timestamp"] / 1000 >= since - 0.001]
    return min(times) if times else None
