"""Autostart: start a stopped or suspended machine by asking its host's agent directly (no control plane
needed), then hold on until its port accepts connections. One start per machine at a time; concurrent
requests for the same machine share it. Failures carry Fly's PM error codes."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from roost.core.lifecycle import State
from roost.proxy.agentcall import AgentCaller, AgentCallError
from roost.proxy.table import MachineRoute, RoutingTable
from roost.tls import Trust

log = logging.getLogger("roost.proxy.starter")

START_TIMEOUT = 30.0  # the agent's start (image pull included)
REACHABLE_TIMEOUT = 20.0  # then the app's own boot, until its port accepts connections


class StartError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Starter:
    def __init__(self, table: RoutingTable, server_url: str, token: str, trust: Trust | None = None) -> None:
        self.table = table
        self.server_url = server_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        trust = trust or Trust()
        self.client = httpx.AsyncClient(headers=self.headers, timeout=httpx.Timeout(START_TIMEOUT, connect=2.0),
                                        trust_env=False, transport=trust.async_transport())
        self.agents = AgentCaller(token, trust)
        self._inflight: dict[str, asyncio.Future[float]] = {}

    async def start(self, m: MachineRoute, port: int) -> float:
        """Start `m` and wait until `port` on it accepts connections; returns how long it took."""
        existing = self._inflight.get(m.id)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._inflight[m.id] = future
        try:
            took = await self._start(m, port)
            future.set_result(took)
            return took
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone caller must not leave it "never retrieved"
            raise
        finally:
            del self._inflight[m.id]

    async def _start(self, m: MachineRoute, port: int) -> float:
        began = time.monotonic()
        host = self.table.hosts.get(m.host_id)
        if host is None or host.status != "ok":
            raise StartError("PM05", f"machine {m.id}'s host {m.host_id} is not reachable")
        was_suspended = self.table.state_of(m, began) is State.SUSPENDED
        # "starting" here until its port accepts, whatever the watch feed says meanwhile (its agent reports
        # "started" as soon as the process exists): requests sent there before would be refused, retried
        # elsewhere, and start yet another machine. They wait for this start instead.
        self.table.override_state(m.id, State.STARTING, START_TIMEOUT + REACHABLE_TIMEOUT)
        try:
            took = await self._start_and_reach(m, port, host.agent_url, was_suspended, began)
        except BaseException:
            self.table.clear_override(m.id)
            raise
        if m.id in self.table.machines and self.table.machines[m.id].state is State.STARTED:
            self.table.clear_override(m.id)  # the feed already knows: nothing local left to remember
        else:
            self.table.override_state(m.id, State.STARTED)
        return took

    async def _start_and_reach(self, m: MachineRoute, port: int, agent_url: str, was_suspended: bool,
                               began: float) -> float:
        try:
            status, answer = await self.agents.post(f"{agent_url}/v1/machines/{m.id}/start",
                                                    {"id": m.id, "instance_id": m.instance_id}, START_TIMEOUT)
        except TimeoutError:
            raise StartError("PM03", f"timed out starting machine {m.id}") from None
        except AgentCallError as exc:
            raise StartError("PM05", f"could not reach the agent of host {m.host_id}: {exc}") from None
        message = str((answer or {}).get("error", "")) if isinstance(answer, dict) else ""
        if status in (401, 403) or (status in (404, 409, 422) and "spec" in message):
            # The agent does not know this version yet, or does not know this edge's token (an org token, or an
            # agent of an older fleet): the control plane can start it.
            await self._start_via_server(m)
        elif status >= 400:
            raise StartError("PM07", f"starting machine {m.id} failed: {message or status}")
        if not was_suspended:  # a resumed machine's sockets were listening all along
            await self._reachable(m, port)
        return time.monotonic() - began

    async def _start_via_server(self, m: MachineRoute) -> None:
        try:
            response = await self.client.post(f"{self.server_url}/v1/apps/{m.app}/machines/{m.id}/start")
        except httpx.HTTPError as exc:
            raise StartError("PM01", f"the machine's host cannot start it alone and the control plane is "
                                     f"unreachable: {exc}") from None
        if response.status_code >= 400:
            code = "PM08" if response.status_code == 412 else "PM01"
            raise StartError(code, f"starting machine {m.id} failed: {_error(response)}")

    async def _reachable(self, m: MachineRoute, port: int) -> None:
        deadline = time.monotonic() + REACHABLE_TIMEOUT
        delay = 0.002  # a connect on loopback is cheap: probe often, so the wait ends when the app is up
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(m.address, port), 1.0)
                writer.close()
                return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise StartError("PM03", f"machine {m.id} started but its port {port} never accepted "
                                             f"connections within {REACHABLE_TIMEOUT:g}s") from None
                await asyncio.sleep(delay)
                delay = min(0.005, delay * 1.2)

    async def stop(self, m: MachineRoute, action: str) -> str:
        """The idle loop's stop or suspend, straight to the agent; returns what happened."""
        host = self.table.hosts.get(m.host_id)
        if host is None or host.status != "ok":
            return "skipped: host not ok"
        url = f"{host.agent_url}/v1/machines/{m.id}"
        try:
            if action == "suspend":
                response = await self.client.post(f"{url}/suspend", json={})
                if response.status_code < 400:
                    self.table.override_state(m.id, State.SUSPENDED)
                    return "suspended"
            response = await self.client.post(f"{url}/stop", json={"signal": m.stop_signal,
                                                                    "timeout": m.stop_timeout},
                                              timeout=m.stop_timeout + 10)
        except httpx.HTTPError as exc:
            return f"failed: {exc}"
        if response.status_code >= 400:
            return f"failed: {_error(response)}"
        self.table.override_state(m.id, State.STOPPED)
        return "stopped"

    async def close(self) -> None:
        self.agents.close()
        await self.client.aclose()


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]
