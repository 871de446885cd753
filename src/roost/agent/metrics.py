"""A host agent's Prometheus metrics, served at GET /metrics on the agent's port (the operator's or a read-only
token; docs/metrics.md lists every name).

Events (starts, stops, exits, restarts, pulls, check results) are counted by the supervisor as they happen; what
is a state (each machine's CPU time and memory, the machines by state, the image cache) is read when scraped,
so it is never stale and costs nothing between scrapes. The apps' own `[metrics]` endpoints, scraped by
agent/app_metrics.py, are appended with `app`, `machine` and `region` labels."""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from roost.agent.drivers.base import ExitInfo, Usage

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CACHE_SIZE_EVERY = 60.0  # seconds between two walks of the image caches (a walk of big images is not free)


@dataclass(frozen=True)
class MachineSample:
    """One machine as a scrape sees it (the supervisor's records and the driver's usage)."""
    app: str
    machine: str
    state: str
    usage: Usage
    checks: dict[str, str]  # check name -> passing | warning | critical


def exit_reason(info: ExitInfo, asked: bool, fenced: bool) -> str:
    """Why a machine's process ended, in a few words a dashboard can group by."""
    if fenced:
        return "fenced"
    if asked:
        return "stopped"
    if info.oom_killed:
        return "oom"
    if info.signal is not None:
        return "signal"
    if info.exit_code is None:
        return "unknown"
    return "exit_zero" if info.exit_code == 0 else "exit_nonzero"


class AgentMetrics:
    def __init__(self, region: str = "", host: str = "") -> None:
        self.region, self.host = region, host
        self.registry = CollectorRegistry()
        r = self.registry
        self.machines: Callable[[], Iterable[MachineSample]] = tuple  # set by the agent: see _MachineCollector
        self.cache_dirs: list[Path] = []  # the image caches whose size is reported
        self.extra: Callable[[], Iterable[Metric]] = tuple  # the apps' own metrics, relabelled
        r.register(_MachineCollector(self))
        self.starts = Counter("roost_agent_machine_starts_total", "Machine starts on this host, by result",
                              ["app", "result"], registry=r)
        self.start_seconds = Histogram("roost_agent_machine_start_seconds",
                                       "Time from a start's arrival to the machine's process running (image pull "
                                       "included)", buckets=LATENCY_BUCKETS, registry=r)
        self.stops = Counter("roost_agent_machine_stops_total", "Machine stops asked of this host", ["app"],
                             registry=r)
        self.stop_seconds = Histogram("roost_agent_machine_stop_seconds",
                                      "Time from a stop's arrival to the machine's process gone",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.exits = Counter("roost_agent_machine_exits_total", "Machine processes that ended, by why",
                             ["app", "reason"], registry=r)
        self.restarts = Counter("roost_agent_machine_restarts_total",
                                "Machines started again by their restart policy after an exit", ["app"], registry=r)
        self.pulls = Counter("roost_agent_image_pulls_total",
                             "Images a start needed, by whether this host had it (hit) or fetched it (pull) and "
                             "whether that worked", ["result"], registry=r)
        self.pull_seconds = Histogram("roost_agent_image_pull_seconds", "Time to fetch and unpack an image",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.check_results = Counter("roost_agent_check_results_total",
                                     "Check results that changed a check's status", ["app", "status"], registry=r)
        self._cache_size: tuple[float, int, int] = (-CACHE_SIZE_EVERY, 0, 0)  # when, bytes, images

    def cache_size(self) -> tuple[int, int]:
        """Bytes and images in the image caches, walked at most once a minute."""
        now = time.monotonic()
        when, size, images = self._cache_size
        if now - when >= CACHE_SIZE_EVERY:
            size, images = 0, 0
            for directory in self.cache_dirs:
                images += sum(1 for entry in _entries(directory) if entry.is_dir() and not entry.name.startswith("."))
                size += _tree_bytes(directory)
            self._cache_size = (now, size, images)
        return size, images

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MachineCollector:
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        labels = ["app", "machine"]
        cpu = CounterMetricFamily("roost_agent_machine_cpu_seconds", "CPU time a running machine has used since it "
                                  "started (from its cgroup)", labels=labels)
        memory = GaugeMetricFamily("roost_agent_machine_memory_bytes", "Memory a running machine uses now (its "
                                   "cgroup's count)", labels=labels)
        states = GaugeMetricFamily("roost_agent_machines", "Machines this host keeps, by state", labels=["state"])
        checks = GaugeMetricFamily("roost_agent_machine_check_passing", "1 while a machine's check passes, 0 "
                                   "while it warns or fails", labels=[*labels, "check"])
        tally: Tally[str] = Tally()
        for sample in self.metrics.machines():
            tally[sample.state] += 1
            if sample.usage.cpu_seconds is not None:
                cpu.add_metric([sample.app, sample.machine], sample.usage.cpu_seconds)
            if sample.usage.memory_bytes is not None:
                memory.add_metric([sample.app, sample.machine], sample.usage.memory_bytes)
            for name, status in sorted(sample.checks.items()):
                checks.add_metric([sample.app, sample.machine, name], 1.0 if status == "passing" else 0.0)
        for state, n in sorted(tally.items()):
            states.add_metric([state], n)
        size, images = self.metrics.cache_size()
        yield cpu
        yield memory
        yield states
        yield checks
        yield GaugeMetricFamily("roost_agent_image_cache_bytes", "Bytes of images unpacked on this host", value=size)
        yield GaugeMetricFamily("roost_agent_image_cache_images", "Images unpacked on this host", value=images)
        yield from self.metrics.extra()


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return []


def _tree_bytes(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
