"""The apps' own metrics: every running machine whose config has `metrics = {port, path}` (fly.toml's
`[metrics]`) is scraped by its host's agent when the agent's /metrics is scraped, and its series are re-exported
with `app`, `machine` and `region` labels, as Fly does.

A target that hangs is cut off at its timeout; one that answers garbage, an error or too much is counted and
left out. Neither delays the others (they are scraped at once, a bounded number at a time) nor fails the
agent's own scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from roost.core.agent_spec import AgentSpec

TIMEOUT = 2.0
MAX_BYTES = 4 * 1024 * 1024
AT_ONCE = 16


@dataclass(frozen=True)
class Target:
    app: str
    machine: str
    url: str


def targets(specs: Iterable[AgentSpec]) -> list[Target]:
    """Where each machine's `metrics` endpoint answers from this host (its guest port mapped as its services')."""
    out = []
    for spec in specs:
        config = spec.config.get("metrics")
        if not isinstance(config, dict):
            continue
        port = spec.ports.get(str(config.get("port")))
        path = config.get("path") or "/metrics"
        if port is None or not isinstance(path, str) or not path.startswith("/"):
            continue
        out.append(Target(spec.app, spec.id, f"http://{spec.private_ip or '127.0.0.1'}:{port}{path}"))
    return out


def relabel(families: Iterable[tuple[Target, list[Metric]]], region: str) -> list[Metric]:
    """The targets' families with their labels added, one family per name (the first target's type and help
    win; a same-named family of another type is left out, as one name cannot hold two types). A sample that
    already has one of the added labels keeps Roost's value (an app cannot pose as another)."""
    merged: dict[str, Metric] = {}
    for target, metrics in families:
        added = {"app": target.app, "machine": target.machine, "region": region}
        for family in metrics:
            out = merged.get(family.name)
            if out is None:
                out = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            elif out.type != family.type:
                continue
            for sample in family.samples:
                out.add_sample(sample.name, {**sample.labels, **added}, sample.value, sample.timestamp,
                               sample.exemplar)
    return list(merged.values())


def parse(text: str) -> list[Metric]:
    """The families of an exposition text; ValueError if it is not one."""
    try:
        return list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises several kinds on garbage
        raise ValueError(str(exc)[:200]) from None


class AppScraper:
    def __init__(self, registry: CollectorRegistry, region: str) -> None:
        self.region = region
        self.scrapes = Counter("roost_agent_app_scrapes_total", "Scrapes of the apps' [metrics] endpoints, by result "
                               "(ok, timeout, error: refused or not 200, invalid: not the exposition format or "
                               "over 4 MiB)", ["app", "result"], registry=registry)
        self._last: list[Metric] = []

    async def refresh(self, targets: list[Target]) -> None:
        gate = asyncio.Semaphore(AT_ONCE)
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
            results = await asyncio.gather(*(self._scrape(client, gate, t) for t in targets))
        self._last = relabel(((t, m) for t, m in results if m), self.region)

    def families(self) -> Iterator[Metric]:
        yield from self._last

    async def _scrape(self, client: httpx.AsyncClient, gate: asyncio.Semaphore,
                      target: Target) -> tuple[Target, list[Metric]]:
        async with gate:
            try:
                body = await asyncio.wait_for(_get(client, target.url), TIMEOUT)
            except (TimeoutError, httpx.TimeoutException):
                return self._count(target, "timeout")
            except (httpx.HTTPError, OSError):
                return self._count(target, "error")
            except ValueError:  # over the size limit
                return self._count(target, "invalid")
            if body is None:
                return self._count(target, "error")
            try:
                families = parse(body)
            except ValueError:
                return self._count(target, "invalid")
            self.scrapes.labels(target.app, "ok").inc()
            return target, families

    def _count(self, target: Target, result: str) -> tuple[Target, list[Metric]]:
        self.scrapes.labels(target.app, result).inc()
        return target, []


async def _get(client: httpx.AsyncClient, url: str) -> str | None:
    """The body of a 200 answer, None for any other status; ValueError if it is over MAX_BYTES."""
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BYTES:
                raise ValueError(f"over {MAX_BYTES} bytes")
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
