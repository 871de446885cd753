"""The edge's I/O driver (proxy/http_edge.py) against real sockets on loopback: keep-alive, pipelining,
bodies, Expect, retries, replays, HEAD, interim and bodiless answers, close-delimited bodies, slow readers
and timeouts, each as a client would see it.

The machines are small asyncio servers; the routing table is filled by hand, as the watch feed would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from roost.proxy.http_edge import ClientConnection
from roost.proxy.main import Edge, ProxyConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length) if length else b""


def answer(name: str, extra: bytes = b"") -> Handler:
    """A machine that answers every request on a connection with its name and the path it was asked."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, body = await read_request(reader)
                path = head.split(b" ")[1]
                payload = b"%s %s %d" % (name.encode(), path, len(body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(payload), extra, payload))
                await writer.drain()
        writer.close()
    return serve


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A machine that takes the request and drops the connection without a byte of answer."""
    with contextlib.suppress(Exception):
        await read_request(reader)
    writer.transport.abort()


class Rig:
    def __init__(self, **settings: float) -> None:
        self.settings = settings
        self.servers: list[asyncio.Server] = []
        self.conns: list[ClientConnection] = []
        self.machines: list[dict] = []

    async def machine(self, mid: str, handler: Handler) -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        self.servers.append(server)
        port = server.sockets[0].getsockname()[1]
        self.machines.append({"kind": "machine", "key": mid, "object": {
            "id": mid, "app": "web", "region": "ams", "state": "started", "private_ip": "127.0.0.1",
            "roost": {"host_id": "h1", "ports": {"8080": port}},
            "config": {"services": [{"protocol": "tcp", "internal_port": 8080,
                                     "ports": [{"port": 80, "handlers": ["http"]}]}]}}})

    async def start(self) -> int:
        cfg = ProxyConfig(server_url="http://127.0.0.1:1", token="t", region="ams")
        for key, value in self.settings.items():
            setattr(cfg.http, key, value)
        self.edge = Edge(cfg)
        self.edge.table.reset([
            {"kind": "host", "key": "h1", "object": {"id": "h1", "region": "ams", "status": "ok"}},
            {"kind": "app", "key": "web", "object": {"name": "web", "primary_region": "ams"}},
            *self.machines], 1)

        def factory() -> ClientConnection:
            conn = self.edge.http.protocol()
            self.conns.append(conn)
            return conn

        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.edge.http.close()
        for server in self.servers:
            server.close()


@pytest.fixture
async def rig():
    r = Rig()
    yield r
    await r.close()


async def exchange(port: int, data: bytes, until: int = 1, timeout: float = 5.0) -> bytes:
    """Send `data`, read until `until` complete responses (with Content-Length) have arrived, or the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while _complete_responses(got) < until:
                piece = await reader.read(65536)
                if not piece:
                    break
                got += piece
    finally:
        writer.close()
    return got


def _complete_responses(data: bytes) -> int:
    n, rest = 0, data
    while b"\r\n\r\n" in rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if len(rest) < length:
            break
        rest = rest[length:]
        n += 1
    return n


GET = b"GET /%s HTTP/1.1\r\nHost: web.localhost\r\n\r\n"


async def test_keep_alive_requests_stay_on_the_callback_path(rig: Rig) -> None:
    await rig.machine("m1", answer("m1"))
    port = await rig.start()
    got = await exchange(port, (GET % b"a") + (GET % b"b") + (GET % b"c"), until=3)
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert got.index(b"m1 /a") < got.index(b"m1 /b") < got.index(b"m1 /c")  # pipelined, answered in order
    assert b"Fly-Request-Id: " in got and b"Via: 1.1 roost" in got
    assert rig.edge.metrics.requests[("web", "m1", "200")] == 3


async def test_a_small_body_is_forwarded_whole(rig: Rig) -> None:
    await rig.machine("m1", answer("m1"))
    port = await rig.start()
    got = await exchange(port, b"POST /up HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\r\nhello")
    assert b"m1 /up 5" in got


async def test_expect_continue_is_answered(rig: Rig) -> None:
    await rig.machine("m1", answer("m1"))
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello" + GET % b"after")  # the next request on the same connection is served too
    got = b""
    async with asyncio.timeout(5):
        while b"m1 /after" not in got:
            got += await reader.read(65536)
    assert b"m1 /up 5" in got
    writer.close()


async def test_a_reset_before_any_answer_is_retried_on_another_machine(rig: Rig) -> None:
    await rig.machine("bad", reset)
    await rig.machine("good", answer("good"))
    port = await rig.start()
    for i in range(6):  # whichever machine the balancer picks first, every GET is answered by "good"
        got = await exchange(port, GET % str(i).encode())
        assert b"200 OK" in got and b"good /%d" % i in got
    assert rig.edge.router.route_now("web") is not None


async def test_a_reset_post_is_not_retried(rig: Rig) -> None:
    await rig.machine("bad", reset)
    port = await rig.start()
    got = await exchange(port, b"POST /x HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n\r\nx")
    assert got.startswith(b"HTTP/1.1 502") and b"PC02" in got


async def test_head_then_get_on_one_upstream_connection(rig: Rig) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, _ = await read_request(reader)
                if head.startswith(b"HEAD"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")  # no body: it answers a HEAD
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
    await rig.machine("m1", serve)
    port = await rig.start()
    got = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: web.localhost\r\n\r\n" + GET % b"", until=1)
    assert got.count(b"HTTP/1.1 200 OK") >= 1
    got = await exchange(port, (b"HEAD / HTTP/1.1\r\nHost: web.localhost\r\n\r\n" + GET % b""), until=2)
    heads = got.split(b"HTTP/1.1 200 OK")
    assert len(heads) == 3 and heads[2].endswith(b"hello world") and b"hello" not in heads[1]


async def test_a_silent_machine_gets_a_504(rig: Rig) -> None:
    rig.settings["upstream_timeout"] = 0.3

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
    await rig.machine("m1", silent)
    port = await rig.start()
    got = await exchange(port, GET % b"")
    assert got.startswith(b"HTTP/1.1 504") and b"PU01" in got


async def test_a_body_delimited_by_the_end_of_the_connection(rig: Rig) -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()
    await rig.machine("m1", old_style)
    port = await rig.start()
    got = await exchange(port, GET % b"", until=99)
    assert got.endswith(b"until the end") and b"Connection: close" in got


async def test_fly_replay_goes_to_the_named_machine(rig: Rig) -> None:
    await rig.machine("asks", answer("asks", b"fly-replay: instance=other\r\n"))
    await rig.machine("other", answer("other"))
    port = await rig.start()
    rig.edge.router.rng.seed(1)
    for i in range(4):
        got = await exchange(port, GET % str(i).encode())
        assert b"other /%d" % i in got and b"asks" not in got


async def test_an_idle_connection_is_closed(rig: Rig) -> None:
    rig.settings["idle_timeout"] = 0.2
    await rig.machine("m1", answer("m1"))
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET % b"")
    await asyncio.wait_for(reader.readuntil(b"m1 / 0"), 5)
    assert await asyncio.wait_for(reader.read(100), 2) == b""  # closed by the edge after 0.2 s idle
    writer.close()


async def test_a_large_answer_to_a_slow_reader_arrives_whole(rig: Rig) -> None:
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 1 << 16):
            writer.write(body[i:i + (1 << 16)])
            await writer.drain()
    await rig.machine("m1", big)
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    writer.write(GET % b"big")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"Content-Length: %d" % len(body) in head
    got = bytearray()
    async with asyncio.timeout(30):
        while len(got) < len(body):
            got += await reader.read(1 << 16)
            if len(got) < 1 << 20:
                await asyncio.sleep(0.01)  # a slow start: the edge must hold the machine back, not buffer it all
    writer.close()
    assert bytes(got) == body


async def test_a_connection_held_back_for_a_slow_reader_is_not_pooled_paused(rig: Rig) -> None:
    """The client's buffer fills with the response's last bytes: the edge holds the machine's connection
    back (pauses reading it), and that connection, back in the pool, must serve the next request."""
    rig.settings["upstream_timeout"] = 2.0
    await rig.machine("m1", answer("m1"))
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        while not rig.conns:
            await asyncio.sleep(0.01)
    slow = rig.conns[0]
    assert slow.transport is not None
    write = slow.transport.write
    paused: list[bool] = []

    def write_and_fill(data: bytes) -> None:  # as if this write took the buffer over its high-water mark
        write(data)
        if not paused:
            paused.append(True)
            slow.pause_writing()
            asyncio.get_running_loop().call_later(0.5, slow.resume_writing)

    slow.transport.write = write_and_fill  # type: ignore[method-assign]
    writer.write(GET % b"first")
    await asyncio.wait_for(reader.readuntil(b"m1 /first 0"), 5)
    got = await exchange(port, GET % b"next", timeout=5.0)  # takes the pooled connection at once
    writer.close()
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"m1 /next 0")


async def test_interim_answers_are_skipped(rig: Rig) -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)  # the interim answer arrives on its own
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
    await rig.machine("m1", hints)
    port = await rig.start()
    got = await exchange(port, (GET % b"1") + (GET % b"2"), until=2)
    assert got.count(b"HTTP/1.1 200 OK") == 2 and got.endswith(b"real") and b"103" not in got


async def head_then_die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A machine killed between writing its answer's head and its body (Python's http.server writes them
    separately)."""
    with contextlib.suppress(Exception):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.transport.abort()


# no extra header: routed at once; a routing header: routed by the router's task
PATHS = [b"", b"Fly-Prefer-Region: ams\r\n"]


@pytest.mark.parametrize("extra", PATHS)
async def test_a_machine_dying_after_its_head_is_retried_for_a_get(rig: Rig, extra: bytes) -> None:
    await rig.machine("dies", head_then_die)
    await rig.machine("good", answer("good"))
    port = await rig.start()
    for i in range(6):
        got = await exchange(port, b"GET /%d HTTP/1.1\r\nHost: web.localhost\r\n%s\r\n" % (i, extra))
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"good /%d 0" % i), got


@pytest.mark.parametrize("extra", PATHS)
async def test_a_machine_dying_after_its_head_fails_a_post_cleanly(rig: Rig, extra: bytes) -> None:
    await rig.machine("dies", head_then_die)
    port = await rig.start()
    got = await exchange(port, b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n%s\r\nx" % extra)
    assert got.startswith(b"HTTP/1.1 502") and b"PC02" in got


@pytest.mark.parametrize("extra", PATHS)
async def test_a_slow_body_gets_its_head_first(rig: Rig, extra: bytes) -> None:
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.0)
        writer.write(b"late")
        await writer.drain()
    await rig.machine("m1", slow_body)
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n%s\r\n" % extra)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)  # long before the body
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readexactly(4), 3) == b"late"
    writer.close()


async def test_answers_without_a_body_keep_the_connection(rig: Rig) -> None:
    async def empty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, _ = await read_request(reader)
                status = b"204 No Content" if b" /a " in head else b"304 Not Modified"
                writer.write(b"HTTP/1.1 %s\r\nETag: \"x\"\r\n\r\n" % status)
    await rig.machine("m1", empty)
    port = await rig.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for path, status in ((b"a", b"204"), (b"b", b"304"), (b"a", b"204")):
        writer.write(GET % path)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)  # no wait for a body that never comes
        assert head.startswith(b"HTTP/1.1 " + status) and b"Content-Length" not in head
    writer.close()
