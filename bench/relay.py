"""The floor of the edge's stack: a bare keep-alive HTTP relay on uvloop + httptools (issue 14's peer row).

    .venv/bin/python bench/relay.py LISTEN_PORT UPSTREAM_HOST:PORT

Each client connection gets one upstream connection; request bytes are parsed by httptools (as the edge
parses them, to know where each request ends) and passed on unchanged, responses are relayed as they
arrive. No routing, no header changes, no metrics, no limits: what any Python edge on this stack pays at
least. Used by bench/proxy.py; not part of Roost.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.client.transport is not None:
            self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_address = upstream
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.pending: list[bytes] = []
        self.parser = httptools.HttpRequestParser(self)
        self.requests = 0
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(self._connect(loop))  # kept: a task nobody holds may be collected

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            _, self.upstream = await loop.create_connection(lambda: Upstream(self), *self.upstream_address)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        assert self.upstream.transport is not None
        for data in self.pending:
            self.upstream.transport.write(data)
        self.pending = []

    def on_message_complete(self) -> None:
        self.requests += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()
            return
        if self.upstream is None or self.upstream.transport is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def main(port: int, upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, _, up_port = sys.argv[2].rpartition(":")
    uvloop.run(main(int(sys.argv[1]), (host, int(up_port))))
