"""The control plane's client for host agents: one pooled HTTP client, bounded timeouts, clear errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from roost.core.errors import RoostError
from roost.tls import Trust

PROBE_TIMEOUT = 3.0  # seconds a registering host's agent has to answer the control plane


class AgentError(RoostError):
    pass


class AgentClient:
    def __init__(self, token: str, credential_for: Callable[[str], str] | None = None,
                 timeout: float = 10.0, trust: Trust | None = None) -> None:
        self.token = token
        self.trust = trust or Trust()
        self.credential_for = credential_for  # agent URL -> the token that agent accepts from the server
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=2.0),
            trust_env=False,
            transport=(trust or Trust()).async_transport(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)),
        )

    async def call(self, agent_url: str, method: str, path: str, body: Any = None,
                   timeout: float | None = None) -> Any:
        try:
            response = await self.client.request(
                method, agent_url.rstrip("/") + path, json=body, headers={"Authorization": "Bearer " + (
                    self.credential_for(agent_url) if self.credential_for else self.token)},
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise AgentError(503, f"host agent at {agent_url} unreachable: {type(exc).__name__} {exc}".strip()) from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            status = response.status_code if response.status_code < 500 else 503
            raise AgentError(status, f"host agent: {message}")
        if not response.content:
            return None
        return response.json()

    @contextlib.asynccontextmanager
    async def stream_lines(self, agent_url: str, path: str, read_timeout: float = 30.0) -> AsyncIterator[
            AsyncIterator[str]]:
        """A streamed GET to the agent, its body as lines (a follow); AgentError if it cannot be opened."""
        try:
            async with self.client.stream(
                    "GET", agent_url.rstrip("/") + path, headers={"Authorization": "Bearer " + (
                        self.credential_for(agent_url) if self.credential_for else self.token)},
                    timeout=httpx.Timeout(read_timeout, connect=2.0)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise AgentError(response.status_code if response.status_code < 500 else 503,
                                     f"host agent: {response.text[:200]}")
                yield response.aiter_lines()
        except httpx.HTTPError as exc:
            raise AgentError(503, f"host agent at {agent_url}: {type(exc).__name__} {exc}".strip()) from exc

    def _auth(self, agent_url: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + (self.credential_for(agent_url) if self.credential_for else self.token)}

    async def relay(self, source_url: str, source_path: str, target_url: str, target_path: str,
                    timeout: float = 600.0) -> Any:
        """Stream a file from one agent to another (a snapshot to the host a volume is restored on), never
        holding it whole; the target's answer."""
        try:
            async with self.client.stream("GET", source_url.rstrip("/") + source_path,
                                          headers=self._auth(source_url),
                                          timeout=httpx.Timeout(timeout, connect=2.0)) as source:
                if source.status_code >= 400:
                    await source.aread()
                    raise AgentError(source.status_code if source.status_code < 500 else 503,
                                     f"host agent at {source_url}: {source.text[:200]}")
                response = await self.client.put(target_url.rstrip("/") + target_path, content=source.aiter_bytes(),
                                                 headers=self._auth(target_url),
                                                 timeout=httpx.Timeout(timeout, connect=2.0))
        except httpx.HTTPError as exc:
            raise AgentError(503, f"copying between hosts: {type(exc).__name__} {exc}".strip()) from exc
        if response.status_code >= 400:
            raise AgentError(response.status_code if response.status_code < 500 else 503,
                             f"host agent at {target_url}: {response.text[:200]}")
        return response.json()

    async def unreachable(self, agent_url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
        """Why the control plane cannot reach an agent at `agent_url` (None: it answered, whatever it said):
        asked when a host registers, so that an address nobody can reach is refused at once, not found out later
        as a host that never starts anything."""
        try:
            await self.client.get(agent_url.rstrip("/") + "/healthz", timeout=timeout)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        return None

    def connect_socket(self, agent_url: str, path: str) -> Any:
        """A WebSocket to the agent (a console), with the server's credential, trusting what the server trusts."""
        from websockets.asyncio.client import connect

        url = agent_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path
        token = self.credential_for(agent_url) if self.credential_for else self.token
        return connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  ssl=self.trust.context() if url.startswith("wss://") else None,
                                  open_timeout=10, max_size=1 << 20)

    async def close(self) -> None:
        await self.client.aclose()
