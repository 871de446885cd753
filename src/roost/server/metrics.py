"""The control plane's Prometheus metrics, served at GET /metrics on the API port (an operator's or a read-only
token; docs/metrics.md lists every name).

Counts are kept by the code that sees the event (heartbeats, host verdicts, takeovers, commits, API requests);
what is a state of the fleet (machines, hosts) is read from the cluster state when scraped, so it is never
stale and costs nothing between scrapes."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fleet: Callable[[], Iterable[tuple[str, ...]]] = tuple  # set by the server: see _FleetCollector
        r.register(_FleetCollector(self))
        self.requests = Counter("roost_server_api_requests_total", "Machines API requests answered",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("roost_server_api_request_seconds", "Time to answer an API request",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.heartbeats = Counter("roost_server_heartbeats_total", "Heartbeats received from hosts", registry=r)
        self.heartbeats_late = Counter("roost_server_heartbeats_late_total",
                                       "Heartbeats that came after the host was already suspect (the gap since "
                                       "its last one longer than --suspect-after)", registry=r)
        self.verdicts = Counter("roost_server_host_verdicts_total",
                                "Failure-detector verdicts: a host's status changed to this one", ["status"],
                                registry=r)
        self.takeovers = Counter("roost_server_takeovers_total", "Standbys started in place of a dead host's machine",
                                 registry=r)
        self.placements = Counter("roost_server_placements_total", "The scheduler's answers to a new machine: "
                                  "placed, or why not (insufficient_capacity, refused)", ["region", "result"],
                                  registry=r)
        self.watch_subscribers = Gauge("roost_server_watch_subscribers", "Watch feed streams open now (edges, "
                                       "hosts' resolvers, dashboards)", registry=r)
        self.commit_seconds = Histogram("roost_server_store_commit_seconds", "Time of one durable store commit",
                                        buckets=COMMIT_BUCKETS, registry=r)

    def heartbeat(self, gap: float | None, suspect_after: float) -> None:
        self.heartbeats.inc()
        if gap is not None and gap > suspect_after:
            self.heartbeats_late.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FleetCollector:
    """`roost_machines{app,region,state}` and `roost_hosts{region,status}`, counted from the cluster state at
    scrape time (the server sets `metrics.fleet` to yield ("machine", app, region, state) and ("host", region,
    status) rows)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        machines = GaugeMetricFamily("roost_machines", "Machines by app, region and state",
                                     labels=["app", "region", "state"])
        hosts = GaugeMetricFamily("roost_hosts", "Hosts by region and status", labels=["region", "status"])
        counts: Tally[tuple[str, ...]] = Tally(self.metrics.fleet())
        for row, n in sorted(counts.items()):
            (machines if row[0] == "machine" else hosts).add_metric(list(row[1:]), n)
        yield machines
        yield hosts


class MetricsMiddleware:
    """Counts and times every HTTP request by its route's template (`/v1/apps/{app}/machines`, not the path: the
    labels stay few), method and status. A request refused before routing (no credential) is `(unrouted)`."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = str(getattr(route, "path", "")) or "(unrouted)"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - started)
