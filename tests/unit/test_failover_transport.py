"""A client of several control-plane replicas: requests meant for any replica go to the one that answered
last, move on when one cannot be reached, and leave other hosts alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from roost.failover import AsyncFailoverTransport, FailoverTransport, parse_servers

SERVERS = ("http://127.0.0.1:4280", "http://127.0.0.1:4281", "http://127.0.0.1:4282")


def _world(down: set[int]) -> tuple[list[str], httpx.MockTransport]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}:{request.url.port}{request.url.path}")
        if request.url.port in down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"port": request.url.port, "host_header": request.headers["host"]})

    return seen, httpx.MockTransport(handler)


def test_a_dead_replica_is_skipped_and_the_next_request_goes_where_the_last_was_answered():
    seen, inner = _world(down={4280})
    with httpx.Client(base_url=SERVERS[0], transport=FailoverTransport(inner, SERVERS)) as client:
        first = client.get("/v1/apps")
        assert first.json() == {"port": 4281, "host_header": "127.0.0.1:4281"}
        assert client.get("/v1/apps").json()["port"] == 4281
        assert seen == ["127.0.0.1:4280/v1/apps", "127.0.0.1:4281/v1/apps", "127.0.0.1:4281/v1/apps"]
        seen.clear()
        assert client.get("http://127.0.0.1:9999/other").json()["port"] == 9999  # not a replica: untouched
        assert seen == ["127.0.0.1:9999/other"]


def test_when_every_replica_is_down_the_caller_sees_the_connect_error():
    _, inner = _world(down={4280, 4281, 4282})
    with httpx.Client(base_url=SERVERS[1], transport=FailoverTransport(inner, SERVERS)) as client, \
            pytest.raises(httpx.ConnectError):
        client.get("/v1/apps")


def test_an_answer_that_is_an_error_is_not_retried_elsewhere():
    """A 503 came from a server that got the request: it may have acted, so the caller decides."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.port or 0)
        return httpx.Response(503, json={"error": "no leader yet"})

    with httpx.Client(base_url=SERVERS[0], transport=FailoverTransport(httpx.MockTransport(handler), SERVERS)) as c:
        assert c.post("/v1/apps", json={}).status_code == 503
    assert calls == [4280]


def test_the_async_transport_fails_over_too():
    _, inner = _world(down={4280, 4281})

    async def go() -> int:
        async with httpx.AsyncClient(base_url=SERVERS[0], transport=AsyncFailoverTransport(inner, SERVERS)) as c:
            return int((await c.get("/v1/hosts")).json()["port"])

    assert asyncio.run(go()) == 4282


def test_server_lists_parse_with_spaces_and_trailing_slashes():
    assert parse_servers(" https://a:1/, https://b:2 ,,") == ("https://a:1", "https://b:2")
    assert parse_servers("") == ()
