"""The proxy's Prometheus metrics (served at /metrics on the admin port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("roost_proxy_requests_total", "Requests answered", ["app", "machine", "status"],
                                registry=r)
        self.latency = Histogram("roost_proxy_request_seconds", "Time to the response head", ["app"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.concurrency = Gauge("roost_proxy_in_flight", "Requests or connections in flight", ["app", "machine"],
                                 registry=r)
        self.autostarts = Counter("roost_proxy_autostarts_total", "Machines started by traffic", ["app", "result"],
                                  registry=r)
        self.autostart_seconds = Histogram("roost_proxy_autostart_seconds", "Start until the port accepts",
                                           ["app"], buckets=LATENCY_BUCKETS, registry=r)
        self.autostops = Counter("roost_proxy_autostops_total", "Machines stopped or suspended when idle",
                                 ["app", "action"], registry=r)
        self.retries = Counter("roost_proxy_retries_total", "Requests retried on another machine", ["app", "reason"],
                               registry=r)
        self.queue_wait_seconds = Histogram("roost_proxy_queue_wait_seconds", "Time waiting for a machine",
                                            ["app"], buckets=LATENCY_BUCKETS, registry=r)
        self.tcp_connections = Counter("roost_proxy_tcp_connections_total", "TCP connections", ["app", "result"],
                                       registry=r)

        self._children: dict[tuple[object, ...], object] = {}

    def child(self, metric: object, *labels: str) -> object:
        """A labelled child, cached: the per-request path should not pay for prometheus' label lookup."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)  # type: ignore[attr-defined]
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
