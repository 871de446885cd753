"""The floor of the edge's stack: a bare keep-alive HTTP relay on uvloop + httptools (issue 14's peer row).

    .venv/bin/python bench/relay.py LISTEN_PORT UPSTREAM_HOST:PORT [bare|parse|heads]

Each client connection gets one upstream connection; request bytes are parsed by httptools (as the edge
parses them, to know where each request ends) and passed on unchanged, responses are relayed as they
arrive. No routing, no header changes, no metrics, no limits: what any Python edge on this stack pays at
least. Used by bench/proxy.py; not part of Roost.

The other modes are rungs of a ladder from this floor to the edge (bench/edge_floor.py): `parse` also reads
both heads with the edge's parser (roost.proxy.h1, header by header) and still passes the bytes on
unchanged; `heads` forwards what the edge would write instead (roost.proxy.forwarding: Fly's headers spliced
into the request, Fly-Request-Id and Via into the answer).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys

import httptools
import uvloop

from roost.proxy.forwarding import Heads, HttpSettings, response_framing
from roost.proxy.h1 import H1Parser, Message
from roost.proxy.metrics import Metrics

MODE = "bare"
HEADS = Heads(HttpSettings(), Metrics())


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client.transport is None:
            return
        if MODE == "bare":
            client.transport.write(data)
            return
        parser = client.answers
        parser.feed(data)
        if MODE == "parse":
            parser.ready.clear()
            if parser.current is not None:
                parser.current.body.clear()
            client.transport.write(data)
            return
        out = []
        while parser.ready:
            resp = parser.ready.popleft()
            req = client.asked.popleft()
            framing, keep = response_framing(req, resp, True)
            out.append(HEADS.response_head(resp, req, "r", framing=framing, keep=keep))
        current = parser.current
        if current is not None and current.body:
            out += current.body
            current.body.clear()
        client.transport.write(b"".join(out))

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
        self.requests_parser = H1Parser()
        self.answers = H1Parser(response=True)
        self.asked: collections.deque[Message] = collections.deque()
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
        if MODE != "bare":
            self.requests_parser.feed(data)
            if MODE == "parse":
                self.requests_parser.ready.clear()
            else:
                out = []
                ready = self.requests_parser.ready
                while ready:
                    req = ready.popleft()
                    body = b"".join(req.body)
                    out.append(HEADS.request_head(req, len(body), True, "r", "127.0.0.1", 80) + body)
                    self.asked.append(req)
                data = b"".join(out)
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
    MODE = sys.argv[3] if len(sys.argv) > 3 else "bare"
    host, _, up_port = sys.argv[2].rpartition(":")
    uvloop.run(main(int(sys.argv[1]), (host, int(up_port))))
