"""The proxy's admin port: /metrics (Prometheus), /healthz, /routes. A few lines of HTTP/1.0 on purpose:
it must keep answering whatever the data plane is doing, with nothing to configure.

/routes lists every app, machine and address the edge knows, and /metrics names them: both need the edge's
token (`Authorization: Bearer ...`). /healthz says only whether the edge is up, for liveness probes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Callable

PUBLIC = frozenset({"/healthz"})
MAX_HEAD = 16 * 1024


async def serve_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      pages: dict[str, Callable[[], tuple[str, bytes]]], token: str) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if len(head) > MAX_HEAD:
            raise asyncio.LimitOverrunError("admin request head too large", len(head))
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ", 2)[1].split("?", 1)[0]
        page = pages.get(path)
        if page is None:
            status, ctype, body = "404 Not Found", "application/json", b'{"error": "not found"}\n'
        elif path not in PUBLIC and not _authorized(lines[1:], token):
            status, ctype = "401 Unauthorized", "application/json"
            body = b'{"error": "this page needs the edge\'s token: send Authorization: Bearer <token>"}\n'
        else:
            ctype, body = page()
            status = "200 OK"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, IndexError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _authorized(header_lines: list[str], token: str) -> bool:
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "authorization":
            scheme, _, given = value.strip().partition(" ")
            return bool(token) and scheme.lower() == "bearer" and \
                hmac.compare_digest(given.strip().encode("latin-1"), token.encode("latin-1", "replace"))
    return False


def json_page(fn: Callable[[], object]) -> Callable[[], tuple[str, bytes]]:
    return lambda: ("application/json", json.dumps(fn(), default=str).encode())
