"""App logs: the server gathers machine output from the agents that keep it.

A tail asks each machine's agent for its last lines and merges them in time order. A follow streams: after the
tail, one follow stream per machine from its agent (the agent sends lines as the machine writes them), merged
into one NDJSON stream as they come; a machine that appears later joins from its first line, a stream that
breaks (its host down, an agent restart) resumes from its byte offset once the host answers again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from roost import tasks
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.lifecycle import State
from roost.core.logline import stamp
from roost.core.model import Machine
from roost.core.units import duration_seconds
from roost.server.agent_client import AgentClient
from roost.server.state import ClusterState

FOLLOW_MAX_SECONDS = 3600.0
FOLLOW_QUEUE = 2000  # lines in flight between the machines' streams and the caller (a slow reader slows them)
RESCAN_SECONDS = 1.0  # how often a follow looks for machines that joined the app
KEEPALIVE_SECONDS = 15.0
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


class LogFilter:
    """Which lines a caller wants: one machine (id or name), one region, none older than a timestamp."""

    def __init__(self, machine: str | None = None, region: str | None = None, since: str | None = None) -> None:
        self.machine, self.region, self.since = machine or None, region or None, since or None

    def keeps(self, item: dict[str, Any]) -> bool:
        return self.since is None or (item["timestamp"] or "") >= self.since


def log_cutoff(since: str | None, now: float | None = None) -> str | None:
    """`?since=10m` (a duration before now) or an RFC 3339 time, as the log timestamp to compare lines with."""
    if not since:
        return None
    if since[0].isdigit() and "T" in since:
        try:
            moment = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"since: {since!r} is neither a duration (10m) nor an RFC 3339 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return stamp(moment.timestamp())
    seconds = duration_seconds(since, field="since", int_unit=1.0)
    return stamp((time.time() if now is None else now) - seconds)


class LogService:
    def __init__(self, state: ClusterState, agents: AgentClient) -> None:
        self.state = state
        self.agents = agents

    def _machines(self, app: str, want: LogFilter, strict: bool = True) -> list[Machine]:
        machines = [m for m in self.state.app_machines.get(app, {}).values() if m.state is not State.DESTROYED]
        if want.machine:
            machines = [m for m in machines if want.machine in (m.id, m.name)]
            if not machines and strict:
                raise not_found(f"machine {want.machine!r} not found in app {app!r}")
        if want.region:
            machines = [m for m in machines if m.region == want.region]
        return machines

    @staticmethod
    def _item(m: Machine, line: dict[str, Any]) -> dict[str, Any]:
        return {"timestamp": line.get("ts"), "machine_id": m.id, "region": m.region,
                "message": line.get("line", ""), "stream": line.get("stream")}

    def _agent_for(self, m: Machine) -> str | None:
        """The agent that holds a machine's log; None while its host is gone or cut off."""
        host = self.state.hosts.get(m.host_id)
        return None if host is None or host.status == "unreachable" else host.agent_url

    async def _fetch(self, m: Machine, lines: int) -> tuple[list[dict[str, Any]], int | None]:
        agent = self._agent_for(m)
        if agent is None:
            return [], None
        try:
            result = await self.agents.call(agent, "GET", f"/v1/machines/{m.id}/logs?lines={lines}",
                                            timeout=5)
        except RoostError:
            return [], None
        return [self._item(m, line) for line in result.get("lines", [])], result.get("offset")

    async def _tail(self, app: str, want: LogFilter, lines: int) -> tuple[list[dict[str, Any]], dict[str, int | None]]:
        machines = self._machines(app, want)
        results = await asyncio.gather(*(self._fetch(m, lines) for m in machines))
        merged = sorted((item for batch, _ in results for item in batch if want.keeps(item)),
                        key=lambda i: i["timestamp"] or "")
        offsets = {m.id: offset for m, (_, offset) in zip(machines, results, strict=True)}
        return merged[-lines:] if lines else [], offsets

    async def tail(self, app: str, want: LogFilter, lines: int) -> list[dict[str, Any]]:
        return (await self._tail(app, want, lines))[0]

    async def follow(self, app: str, want: LogFilter, lines: int) -> AsyncIterator[str]:
        """NDJSON: the tail, then every new line of the app's machines as they write it."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE)
        recent, offsets = await self._tail(app, want, lines)
        for item in recent:
            yield json.dumps(item) + "\n"
        pumps: dict[str, asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_MAX_SECONDS
        quiet = 0.0
        try:
            while loop.time() < deadline:
                for m in self._machines(app, want, strict=False):
                    if m.id not in pumps:  # known at the start: from its tail's end; a newcomer: from its start
                        start = offsets.get(m.id, 0)
                        pumps[m.id] = tasks.spawn(self._pump(app, m.id, start, want, queue), f"logs-{m.id}")
                began = loop.time()
                while loop.time() - began < RESCAN_SECONDS:
                    try:
                        item = await asyncio.wait_for(queue.get(), RESCAN_SECONDS - (loop.time() - began))
                    except TimeoutError:
                        break
                    quiet = 0.0
                    yield json.dumps(item) + "\n"
                quiet += loop.time() - began
                if quiet >= KEEPALIVE_SECONDS:  # an empty line: a caller gone away is noticed here
                    quiet = 0.0
                    yield "\n"
        finally:
            for task in pumps.values():
                task.cancel()
            for task in pumps.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _pump(self, app: str, machine_id: str, offset: int | None, want: LogFilter,
                    queue: asyncio.Queue[dict[str, Any]]) -> None:
        """One machine's lines into the queue, from `offset` (None: only what comes next), until it is destroyed."""
        failures = 0
        while True:
            m = self.state.app_machines.get(app, {}).get(machine_id)
            if m is None or m.state is State.DESTROYED:
                return
            agent = self._agent_for(m)
            if agent is not None:
                query = "lines=0" if offset is None else f"offset={offset}"
                try:
                    async with self.agents.stream_lines(
                            agent, f"/v1/machines/{m.id}/logs?follow=true&{query}") as lines:
                        async for raw in lines:
                            if not raw.strip():
                                continue
                            batch = json.loads(raw)
                            offset = int(batch["offset"])
                            failures = 0
                            for line in batch.get("lines", []):
                                item = self._item(m, line)
                                if want.keeps(item):
                                    await queue.put(item)
                except (RoostError, ValueError, KeyError, TypeError):
                    pass
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1
