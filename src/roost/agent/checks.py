"""Machine checks run by the agent: `config.checks` and each service's checks, http or tcp, with
interval, timeout and grace period. Results are reported (on change) as the machine object's `checks`
with Fly's statuses: warning until the first result, then passing or critical."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from roost import tasks
from roost.core.agent_spec import AgentSpec
from roost.core.model import rfc3339
from roost.core.units import duration_seconds

DEFAULT_INTERVAL = 15.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_GRACE = 1.0


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str  # http | tcp
    address: str
    port: int  # host port
    interval: float
    timeout: float
    grace: float
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


def _seconds(value: Any, default: float, field: str) -> float:
    if value is None:
        return default
    try:
        return max(0.01, duration_seconds(value, field=field))
    except Exception:
        return default


def check_specs(spec: AgentSpec) -> list[CheckSpec]:
    """Every check a machine has, with guest ports mapped to the host ports the agent can reach."""
    config = spec.config
    ports = {int(k): v for k, v in spec.ports.items()}
    address = spec.private_ip or "127.0.0.1"
    out: list[CheckSpec] = []

    def build(name: str, check: dict[str, Any], default_port: int | None) -> None:
        guest = check.get("port") or default_port
        if not isinstance(guest, int) or guest not in ports:
            return
        kind = check.get("type") or ("http" if check.get("path") else "tcp")
        headers: list[tuple[str, str]] = []
        raw_headers = check.get("headers")
        if isinstance(raw_headers, list):
            for h in raw_headers:
                if isinstance(h, dict) and h.get("name"):
                    headers.extend((h["name"], v) for v in (h.get("values") or []))
        elif isinstance(raw_headers, dict):
            headers.extend((k, str(v)) for k, v in raw_headers.items())
        out.append(CheckSpec(
            name=name, kind=kind, address=address, port=ports[guest],
            interval=_seconds(check.get("interval"), DEFAULT_INTERVAL, f"{name}.interval"),
            timeout=_seconds(check.get("timeout"), DEFAULT_TIMEOUT, f"{name}.timeout"),
            grace=_seconds(check.get("grace_period"), DEFAULT_GRACE, f"{name}.grace_period"),
            method=str(check.get("method") or "GET").upper(), path=str(check.get("path") or "/"),
            headers=tuple(headers),
        ))

    for name, check in sorted((config.get("checks") or {}).items()):
        if isinstance(check, dict):
            build(name, check, None)
    for i, service in enumerate(config.get("services") or []):
        for j, check in enumerate(service.get("checks") or []):
            if isinstance(check, dict):
                kind = check.get("type") or ("http" if check.get("path") else "tcp")
                build(f"servicecheck-{i:02d}-{kind}-{service.get('internal_port')}{'-' + str(j) if j else ''}",
                      check, service.get("internal_port"))
    return out


async def run_check(check: CheckSpec, client: httpx.AsyncClient) -> tuple[str, str]:
    """(status, output) of one run."""
    try:
        if check.kind == "http":
            url = f"http://{check.address}:{check.port}{check.path}"
            response = await client.request(check.method, url, headers=list(check.headers), timeout=check.timeout)
            if 200 <= response.status_code < 400:
                return "passing", f"{response.status_code} {response.reason_phrase}"
            return "critical", f"{response.status_code} {response.reason_phrase}"
        _, writer = await asyncio.wait_for(asyncio.open_connection(check.address, check.port), check.timeout)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return "passing", "Success"
    except (TimeoutError, httpx.TimeoutException):
        return "critical", f"timeout after {check.timeout:g}s"
    except (OSError, httpx.HTTPError) as exc:
        return "critical", f"{type(exc).__name__}: {exc}"[:200]


class CheckRunner:
    """Runs one machine's checks until cancelled, calling `on_change({name: status-object})`."""

    def __init__(self, specs: list[CheckSpec], on_change: Callable[[dict[str, Any]], None]) -> None:
        self.specs = specs
        self.on_change = on_change
        self.results: dict[str, dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(trust_env=False)

    def start(self) -> None:
        initial = {}
        for spec in self.specs:
            self.results[spec.name] = {"status": "warning", "output": "waiting for the first check",
                                       "updated_at": rfc3339(time.time())}
            initial[spec.name] = self.results[spec.name]
            self._tasks.append(tasks.spawn(self._loop(spec), f"check-{spec.name}"))
        if initial:
            self.on_change(initial)

    async def _loop(self, spec: CheckSpec) -> None:
        await asyncio.sleep(spec.grace)
        while True:
            status, output = await run_check(spec, self._client)
            previous = self.results.get(spec.name, {})
            if previous.get("status") != status or (previous.get("output") != output and status != "passing"):
                self.results[spec.name] = {"status": status, "output": output, "updated_at": rfc3339(time.time())}
                self.on_change({spec.name: self.results[spec.name]})
            await asyncio.sleep(spec.interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._client.aclose()
