"""Live traffic for the dashboard: what the edges answered, per app, machine and edge region, over the last
minutes.

Each edge reports its cumulative request counts (by app, machine and status) and its latency estimate per
machine every few seconds; the board turns two reports from one edge into a point per machine (requests/s,
errors/s, latency) and keeps each app's points for WINDOW seconds, bounded. Held in memory only: a restarted
control plane starts a fresh picture. Pure: every call takes `now`."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

WINDOW = 15 * 60.0
MAX_POINTS_PER_APP = 20_000
MAX_APPS = 2_000
MAX_EDGES = 1_000
MAX_ROWS = 50_000  # rows in one report: a bigger one is refused


class TrafficError(ValueError):
    """A report that is not one; the message says what is wrong."""


@dataclass(frozen=True)
class Point:
    at: float  # end of the interval
    seconds: float  # its length
    edge_region: str  # where the users came in
    machine: str
    requests: float  # per second
    errors: float  # 5xx per second
    latency_ms: float | None  # the edge's estimate for the machine at the end of the interval

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class _Edge:
    region: str
    at: float
    counts: dict[tuple[str, str, int], int]  # (app, machine, status) -> requests so far


def parse_report(body: Any) -> tuple[str, dict[tuple[str, str, int], int], dict[str, float]]:
    """(region, counts, latency by machine in ms) of an edge's report body; TrafficError if malformed."""
    if not isinstance(body, dict):
        raise TrafficError("body must be {\"region\", \"requests\": [[app, machine, status, count], ...], "
                           "\"latency_ms\": {machine: ms}}")
    region, rows, latency = body.get("region"), body.get("requests"), body.get("latency_ms") or {}
    if not isinstance(region, str) or not 0 < len(region) <= 16:
        raise TrafficError("region: expected a region code")
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise TrafficError(f"requests: expected a list of at most {MAX_ROWS} [app, machine, status, count] rows")
    counts: dict[tuple[str, str, int], int] = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str) and isinstance(row[1], str)
                and len(row[0]) <= 64 and len(row[1]) <= 64 and isinstance(row[2], int) and isinstance(row[3], int)
                and not isinstance(row[3], bool) and 0 <= row[2] < 1000 and row[3] >= 0):
            raise TrafficError(f"requests: bad row {str(row)[:80]}: expected [app, machine, status, count]")
        counts[(row[0], row[1], row[2])] = row[3]
    if not isinstance(latency, dict) or len(latency) > MAX_ROWS:
        raise TrafficError("latency_ms: expected {machine: milliseconds}")
    clean: dict[str, float] = {}
    for machine, ms in latency.items():
        if not isinstance(ms, int | float) or isinstance(ms, bool) or not 0 <= ms < 3.6e6:
            raise TrafficError(f"latency_ms.{str(machine)[:64]}: expected milliseconds")
        clean[str(machine)[:64]] = float(ms)
    return region, counts, clean


class TrafficBoard:
    def __init__(self) -> None:
        self._edges: dict[str, _Edge] = {}
        self._points: dict[str, deque[Point]] = {}

    def report(self, edge_id: str, region: str, counts: dict[tuple[str, str, int], int],
               latency_ms: dict[str, float], now: float) -> int:
        """Take one edge's cumulative counts; returns how many points it added. The first report of an edge
        (or one after its counters went back, a restarted edge) only sets where counting starts."""
        last = self._edges.get(edge_id)
        if last is None and len(self._edges) >= MAX_EDGES:
            oldest = min(self._edges, key=lambda k: self._edges[k].at)
            del self._edges[oldest]
        self._edges[edge_id] = _Edge(region, now, dict(counts))
        if last is None or now <= last.at or any(n < last.counts.get(k, 0) for k, n in counts.items()):
            return 0
        seconds = now - last.at
        per: dict[tuple[str, str], list[int]] = {}
        for (app, machine, status), n in counts.items():
            delta = n - last.counts.get((app, machine, status), 0)
            if delta <= 0:
                continue
            totals = per.setdefault((app, machine), [0, 0])
            totals[0] += delta
            totals[1] += delta if status >= 500 else 0
        for (app, machine), (requests, errors) in per.items():
            if app not in self._points and len(self._points) >= MAX_APPS:
                continue
            points = self._points.setdefault(app, deque(maxlen=MAX_POINTS_PER_APP))
            points.append(Point(now, seconds, region, machine, requests / seconds, errors / seconds,
                                latency_ms.get(machine)))
        self._expire(now)
        return len(per)

    def points(self, app: str, now: float, since: float = WINDOW) -> list[Point]:
        self._expire(now)
        return [p for p in self._points.get(app, ()) if p.at >= now - since]

    def _expire(self, now: float) -> None:
        for app in list(self._points):
            points = self._points[app]
            while points and points[0].at < now - WINDOW:
                points.popleft()
            if not points:
                del self._points[app]
