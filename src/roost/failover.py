"""Clients of a control plane with several replicas (issue 18): a transport that sends each request meant for
any of the servers to the one that answered last, and moves to the next when a server cannot be reached.

Only failures that prove the request never reached a server move it (no connection, a connect timeout): a
request that reached a server and then failed may have been done, so it is the caller's to retry. Requests
to other hosts pass through untouched.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

_MOVES = (httpx.ConnectError, httpx.ConnectTimeout)


def replicas(fleet: dict[str, Any]) -> list[dict[str, Any]]:
    """A local fleet's control-plane replicas, as its fleet.json lists them (one from before issue 18: its
    one server)."""
    return list(fleet.get("servers") or [fleet["server"]])


def server_list(fleet: dict[str, Any]) -> str:
    """Every replica's URL, 'URL,URL,...', as components and the CLI are given them."""
    return ",".join(s["url"] for s in replicas(fleet))


def parse_servers(value: str) -> tuple[str, ...]:
    """'URL,URL,...' (spaces allowed) as a tuple of URLs without trailing slashes; '' gives ()."""
    return tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())


class _Rotation:
    def __init__(self, servers: tuple[str, ...]) -> None:
        self.origins = [httpx.URL(s) for s in servers]
        self._keys = {(u.scheme, u.host, u.port) for u in self.origins}
        self.current = 0
        self._lock = threading.Lock()

    def ours(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) in self._keys

    def order(self) -> list[int]:
        with self._lock:
            start = self.current
        return [(start + i) % len(self.origins) for i in range(len(self.origins))]

    def to(self, request: httpx.Request, index: int) -> None:
        origin = self.origins[index]
        request.url = request.url.copy_with(scheme=origin.scheme, host=origin.host, port=origin.port)
        request.headers["Host"] = origin.netloc.decode("ascii")

    def answered(self, index: int) -> None:
        with self._lock:
            self.current = index


class FailoverTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, servers: tuple[str, ...]) -> None:
        self.inner = inner
        self.rotation = _Rotation(servers)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.rotation.ours(request.url):
            return self.inner.handle_request(request)
        last: Exception | None = None
        for index in self.rotation.order():
            self.rotation.to(request, index)
            try:
                response = self.inner.handle_request(request)
            except _MOVES as exc:
                last = exc
                continue
            self.rotation.answered(index)
            return response
        assert last is not None
        raise last

    def close(self) -> None:
        self.inner.close()


class AsyncFailoverTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, servers: tuple[str, ...]) -> None:
        self.inner = inner
        self.rotation = _Rotation(servers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.rotation.ours(request.url):
            return await self.inner.handle_async_request(request)
        last: Exception | None = None
        for index in self.rotation.order():
            self.rotation.to(request, index)
            try:
                response = await self.inner.handle_async_request(request)
            except _MOVES as exc:
                last = exc
                continue
            self.rotation.answered(index)
            return response
        assert last is not None
        raise last

    async def aclose(self) -> None:
        await self.inner.aclose()
