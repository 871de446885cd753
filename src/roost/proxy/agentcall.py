"""A small keep-alive HTTP/1.1 JSON client for agent calls on the autostart path: httpx costs about a
millisecond per request, which is most of a resume's budget."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

from roost.proxy.h1 import H1Reader, ProtocolError
from roost.tls import Trust

_POOL_MAX = 8


class AgentCallError(Exception):
    pass


class AgentCaller:
    def __init__(self, token: str, trust: Trust | None = None) -> None:
        self.auth = f"Bearer {token}".encode()
        self.trust = trust or Trust()
        self._idle: dict[tuple[str, int, bool], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, body: Any, timeout: float) -> tuple[int, Any]:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        key = (parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), tls)
        payload = json.dumps(body).encode()
        head = (f"POST {parts.path} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n").encode() + b"Authorization: " + self.auth + b"\r\n\r\n"
        for attempt in (0, 1):  # a pooled connection may have been closed by the agent: one fresh retry
            conn, reused = await self._connect(key, timeout)
            reader, writer = conn
            try:
                async with asyncio.timeout(timeout):
                    writer.write(head + payload)
                    await writer.drain()
                    h1 = H1Reader(reader, response=True)
                    resp = await h1.next_head(timeout)
                    if resp is None:
                        raise ProtocolError("closed")
                    data, _ = await h1.read_body(resp, 10 * 1024 * 1024, timeout)
            except (ProtocolError, ConnectionError, OSError):
                writer.close()
                if reused and attempt == 0:
                    continue
                raise AgentCallError(f"agent at {key[0]}:{key[1]} closed the connection") from None
            except TimeoutError:
                writer.close()
                raise
            if resp.keep_alive and resp.complete and len(self._idle.setdefault(key, [])) < _POOL_MAX:
                self._idle[key].append(conn)
            else:
                writer.close()
            try:
                return resp.status, json.loads(data) if data else None
            except ValueError:
                return resp.status, {"error": data.decode("utf-8", "replace")}
        raise AgentCallError("unreachable")

    async def _connect(self, key: tuple[str, int, bool], timeout: float
                       ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.close()
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(
                key[0], key[1], ssl=self.trust.context() if key[2] else None), min(timeout, 2.0))
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError: a certificate not of the fleet
            raise AgentCallError(f"cannot connect to the agent at {key[0]}:{key[1]}: {exc}") from None
        return conn, False

    def close(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                with contextlib.suppress(Exception):
                    writer.close()
        self._idle.clear()
