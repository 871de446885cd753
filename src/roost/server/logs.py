"""App logs: the server gathers machine output from the agents that keep it (tail and follow)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from roost.core.errors import RoostError, not_found
from roost.core.lifecycle import State
from roost.core.model import Machine
from roost.server.agent_client import AgentClient
from roost.server.state import ClusterState

FOLLOW_POLL_SECONDS = 0.5
FOLLOW_MAX_SECONDS = 3600.0


class LogService:
    def __init__(self, state: ClusterState, agents: AgentClient) -> None:
        self.state = state
        self.agents = agents

    def _machines(self, app: str, machine: str | None) -> list[Machine]:
        machines = [m for m in self.state.app_machines.get(app, {}).values() if m.state is not State.DESTROYED]
        if machine:
            machines = [m for m in machines if m.id == machine or m.name == machine]
            if not machines:
                raise not_found(f"machine {machine!r} not found in app {app!r}")
        return machines

    async def _fetch(self, m: Machine, lines: int, offset: int | None) -> tuple[list[dict[str, Any]], int | None]:
        host = self.state.hosts.get(m.host_id)
        if host is None or host.status == "unreachable":
            return [], offset
        query = f"?lines={lines}" if offset is None else f"?offset={offset}"
        try:
            result = await self.agents.call(host.agent_url, "GET", f"/v1/machines/{m.id}/logs{query}", timeout=5)
        except RoostError:
            return [], offset
        out = [{"timestamp": item.get("ts"), "machine_id": m.id, "region": m.region, "message": item.get("line", ""),
                "stream": item.get("stream")} for item in result.get("lines", [])]
        return out, result.get("offset")

    async def tail(self, app: str, machine: str | None, lines: int) -> list[dict[str, Any]]:
        machines = self._machines(app, machine)
        results = await asyncio.gather(*(self._fetch(m, lines, None) for m in machines))
        merged = sorted((item for batch, _ in results for item in batch), key=lambda i: i["timestamp"] or "")
        return merged[-lines:]

    async def follow(self, app: str, machine: str | None, lines: int) -> AsyncIterator[str]:
        offsets: dict[str, int | None] = {}
        first = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_MAX_SECONDS
        while loop.time() < deadline:
            batch: list[dict[str, Any]] = []
            for m in self._machines(app, machine):
                if m.id in offsets and offsets[m.id] is not None:
                    items, offsets[m.id] = await self._fetch(m, 0, offsets[m.id])
                else:
                    # A machine seen for the first time: its tail on the first pass, else only new output.
                    items, offsets[m.id] = await self._fetch(m, lines if first else 0, None)
                    if not first:
                        items = []
                batch.extend(items)
            for item in sorted(batch, key=lambda i: i["timestamp"] or ""):
                yield json.dumps(item) + "\n"
            first = False
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
