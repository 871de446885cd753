"""The HTTP door shared by the server and the agent: JSON bodies bounded in size and depth, and bearer tokens
compared as bytes (a caller can put any byte in a header)."""

from __future__ import annotations

import json

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.weblib import EXCEPTION_HANDLERS, MAX_JSON_DEPTH, BearerAuth, json_body, json_depth, ok, token_list


async def echo(request: Request) -> Response:
    return ok({"got": await json_body(request)})


def client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/v1/echo", echo, methods=["POST"])],
                    exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=BearerAuth(app, token_list(lambda: ["s3cret"])), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://roost")


def test_depth_is_counted_without_recursion() -> None:
    assert json_depth(1) == 0 and json_depth({}) == 1 and json_depth({"a": [1, {"b": []}]}) == 4
    deep: object = []
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert json_depth(deep) > MAX_JSON_DEPTH


async def test_a_deeply_nested_body_is_400() -> None:
    auth = {"Authorization": "Bearer s3cret"}
    async with client() as c:
        assert (await c.post("/v1/echo", content=json.dumps({"a": [[1]]}), headers=auth)).status_code == 200
        r = await c.post("/v1/echo", content="[" * 500 + "]" * 500, headers=auth)
        assert r.status_code == 400 and "deep" in r.json()["error"]
        r = await c.post("/v1/echo", content="[" * 100_000 + "]" * 100_000, headers=auth)
        assert r.status_code == 400


async def test_tokens_are_compared_as_bytes() -> None:
    async with client() as c:
        for header in ("Bearer caf\u00e9".encode("latin-1"), b"Bearer \xff\xfe", b"Bearer", b"Basic s3cret"):
            r = await c.post("/v1/echo", content="{}", headers={"Authorization": header})  # type: ignore[dict-item]
            assert r.status_code == 401 and "error" in r.json()
        assert (await c.post("/v1/echo", content="{}", headers={"Authorization": "bearer s3cret"})).status_code == 200
