"""The proxy's admin port: /metrics (Prometheus), /healthz, /routes. A few lines of HTTP/1.0 on purpose:
it must keep answering whatever the data plane is doing, with nothing to configure."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable


async def serve_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      pages: dict[str, Callable[[], tuple[str, bytes]]]) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        path = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]
        page = pages.get(path)
        if page is None:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
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


def json_page(fn: Callable[[], object]) -> Callable[[], tuple[str, bytes]]:
    return lambda: ("application/json", json.dumps(fn(), default=str).encode())
