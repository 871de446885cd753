"""HTTP plumbing shared by the server's and the agent's APIs: JSON bodies, errors, bearer-token auth."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from roost.core.errors import RoostError, bad_request

log = logging.getLogger("roost.http")
MAX_JSON_BODY = 8 * 1024 * 1024
MAX_JSON_DEPTH = 32  # nesting of objects and arrays: every real document is far shallower
# How long the server and agents keep an idle connection: longer than their clients keep one in their pools
# (httpx: 5 s), so that a client never sends a request on a connection the other end is closing at that moment
# (uvicorn's default is also 5 s: an agent's update failed with "Server disconnected without sending a response").
KEEP_ALIVE_SECONDS = 65


def json_depth(value: Any) -> int:
    """How deeply `value` nests objects and arrays, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


async def json_body(request: Request, *, required: bool = False) -> Any:
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise RoostError(413, f"request body larger than {MAX_JSON_BODY // (1024 * 1024)} MB")
    if not raw.strip():
        if required:
            raise bad_request("request body required (JSON)")
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise bad_request(f"request body nests objects and arrays more than {MAX_JSON_DEPTH} deep")
    return value


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "t"):
        return True
    if lowered in ("0", "false", "no", "f"):
        return False
    raise bad_request(f"query parameter {name}: expected true or false, got {value!r}")


def query_number(request: Request, name: str, default: float, *, lo: float = 0, hi: float | None = None) -> float:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value.rstrip("s")) if value.endswith("s") and not value.endswith("ms") else float(value)
    except ValueError:
        raise bad_request(f"query parameter {name}: expected a number, got {value!r}") from None
    if number != number or number < lo or (hi is not None and number > hi):
        raise bad_request(f"query parameter {name}: must be between {lo:g} and {hi:g}" if hi is not None
                          else f"query parameter {name}: must be at least {lo:g}")
    return number


def ok(body: Any = None, status: int = 200) -> Response:
    if body is None and status == 204:
        return Response(status_code=204)
    return JSONResponse(body if body is not None else {"ok": True}, status_code=status)


async def roost_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RoostError)
    # 503: the server cannot answer now (its database is away) but will: say when to try again.
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    RoostError: roost_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}


IDENTITY = "roost.identity"  # where BearerAuth leaves the caller's identity in the ASGI scope
Authorize = Callable[[Any, str, str], "tuple[int, str] | None"]


def token_list(tokens: Callable[[], list[str]]) -> Callable[[bytes], object | None]:
    """An identify function for a fixed set of tokens (the agent's): the token itself is the identity."""
    def identify(presented: bytes) -> object | None:
        for token in tokens():
            if hmac.compare_digest(presented, token.encode()):
                return token
        return None
    return identify


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, websocket: bool) -> None:
    if websocket:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4000 + status, "reason": message[:120]})
        return
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


SESSION_COOKIE = "roost_session"  # the dashboard's session: the token it logged in with (server/ui.py)


class SessionCookie:
    """For a browser on the dashboard: the session cookie stands for `Authorization: Bearer TOKEN` on reads of the
    API (GET, HEAD: the pages' watch feed and log streams), never on a write, and never beside a header the
    request brought itself. (The cookie is SameSite=Strict: no other site's page sends it.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/v1/"):
            headers = list(scope.get("headers", ()))
            if not any(name == b"authorization" for name, _ in headers):
                token = _cookie(headers, SESSION_COOKIE.encode())
                if token:
                    scope = {**scope, "headers": [*headers, (b"authorization", b"Bearer " + token)]}
        await self.app(scope, receive, send)


def _cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for header, value in headers:
        if header == b"cookie":
            for part in value.split(b";"):
                key, _, found = part.strip().partition(b"=")
                if key == name:
                    return found.strip()
    return b""


class BearerAuth:
    """Every path under a protected prefix needs `Authorization: Bearer TOKEN` (or Fly's `FlyV1 TOKEN`) that
    `identify` knows; the identity goes into the request's scope, and `authorize`, if given, may still refuse
    the method and path for it."""

    def __init__(self, app: ASGIApp, identify: Callable[[bytes], object | None], authorize: Authorize | None = None,
                 prefixes: tuple[str, ...] = ("/v1",)) -> None:
        self.app = app
        self.identify = identify
        self.authorize = authorize
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        # A WebSocket acts on what it names (a console runs a shell): authorized as a POST. Refused before it
        # is accepted, it is closed: the client sees HTTP 403.
        websocket = scope["type"] == "websocket"
        method = "POST" if websocket else scope["method"]
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        # Compared as bytes: a header is the caller's to fill with any byte.
        scheme, _, presented = header.partition(b" ")
        who = self.identify(presented.strip()) if scheme.lower() in (b"bearer", b"flyv1") and presented.strip() \
            else None
        if who is None:
            message = ("missing Authorization header: send 'Authorization: Bearer TOKEN'" if not header
                       else "invalid token: check ROOST_API_TOKEN (the server prints where its token is saved)")
            await _refuse(scope, receive, send, 401, message, websocket)
            return
        if self.authorize is not None:
            refused = self.authorize(who, method, scope["path"])
            if refused is not None:
                await _refuse(scope, receive, send, refused[0], refused[1], websocket)
                return
        scope[IDENTITY] = who
        await self.app(scope, receive, send)
