"""The proxy's Prometheus metrics (served at /metrics on the admin port)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

_STATUS = {code: str(code) for code in range(100, 600)}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Per-request figures are plain counts, turned into metrics only when scraped: prometheus_client's
        # own counters take a lock per increment, a cost every request would pay.
        self.requests: dict[tuple[str, str, str], int] = {}  # (app, machine, status) -> answered
        self.latency: dict[str, list[float]] = {}  # app -> [count per bucket..., +Inf count, sum]
        # (app, machine, requests or connections in flight), read from the proxy's loads when scraped
        self.in_flight: Callable[[], Iterable[tuple[str, str, int]]] = lambda: ()
        r.register(_RequestCollector(self))
        self.autostarts = Counter("roost_proxy_autostarts_total", "Machines started by traffic", ["app", "result"],
                                  registry=r)
        self.autostart_seconds = Histogram("roost_proxy_autostart_seconds", "Start until the port accepts",
                                           ["app"], buckets=LATENCY_BUCKETS, registry=r)
        self.autostops = Counter("roost_proxy_autostops_total", "Machines stopped or suspended when idle",
                                 ["app", "action"], registry=r)
        self.retries = Counter("roost_proxy_retries_total", "Requests retried on another machine", ["app", "reason"],
                               registry=r)
        self.ejections = Counter("roost_proxy_ejections_total",
                                 "Machines ejected from balancing after failing several requests in a row", ["app"],
                                 registry=r)
        self.queue_wait_seconds = Histogram("roost_proxy_queue_wait_seconds", "Time waiting for a machine",
                                            ["app"], buckets=LATENCY_BUCKETS, registry=r)
        self.tcp_connections = Counter("roost_proxy_tcp_connections_total", "TCP connections", ["app", "result"],
                                       registry=r)

    def count_request(self, app: str, machine: str, status: int) -> None:
        key = (app, machine, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1

    def answered(self, app: str, machine: str, status: int, seconds: float) -> None:
        """A machine's answer passed on: counted, and its time to the head observed."""
        key = (app, machine, _STATUS.get(status) or str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.latency.get(app)
        if counts is None:
            counts = self.latency[app] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RequestCollector:
    """Exposes Metrics' plain per-request counts in Prometheus' format when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("roost_proxy_requests", "Requests answered", labels=["app", "machine", "status"])
        for labels, value in list(self.metrics.requests.items()):
            requests.add_metric(list(labels), value)
        yield requests
        latency = HistogramMetricFamily("roost_proxy_request_seconds", "Time to the response head", labels=["app"])
        for app, counts in list(self.metrics.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], counts[:-1], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([app], buckets, counts[-1])
        yield latency
        in_flight = GaugeMetricFamily("roost_proxy_in_flight", "Requests or connections in flight",
                                      labels=["app", "machine"])
        for app, machine, n in self.metrics.in_flight():
            in_flight.add_metric([app, machine], n)
        yield in_flight
