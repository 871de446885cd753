"""The drill's open-loop load generator: requests at a constant arrival rate, whatever the answers do.

A closed-loop client (send, wait, send) slows down exactly when the system does and so under-reports
outages; this one schedules request N at start + N/rps and measures latency from that scheduled moment.
Everything is bounded: the number of requests (rps x duration), the requests in flight, each request's time.

Connections are kept alive like a browser's and, like a browser, a request that fails on a reused idle
connection before any byte came back is sent once more on a fresh one (the server may have closed it).
A connection is used for at most CONN_MAX_AGE seconds, so that new connections keep arriving as they do
from a population of users who come and go: that is how a drill sees where new clients land (after a
region's heal, say), while the old connections stay where they are, as with anycast.
Each request asks the edge for `flyio-debug: doit`, whose answer says which machine and region served it,
and whether the edge had to retry it on another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from roost.drill.analysis import Sample
from roost.proxy.h1 import H1Reader, ProtocolError, encode_head

BODY_LIMIT = 1 << 20
CONN_MAX_AGE = 2.0


@dataclass
class LoadSpec:
    address: tuple[str, int]  # where to connect: an edge, or the anycast entry
    host: str  # the Host header: APP.localhost
    path: str = "/"
    method: str = "GET"
    rps: float = 100.0
    duration: float = 30.0
    timeout: float = 5.0  # per request, from its scheduled time
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""  # "{n}" becomes the request's sequence number
    max_in_flight: int = 1000

    @property
    def count(self) -> int:
        return max(0, int(self.rps * self.duration))


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, born: float) -> None:
        self.reader, self.writer = reader, writer
        self.h1 = H1Reader(reader, response=True)
        self.born = born

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Stale(Exception):
    """A reused connection failed before any answer: safe to send again on a new one."""


class LoadGenerator:
    def __init__(self, spec: LoadSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.idle: list[_Conn] = []
        self.samples: list[Sample] = []
        self.in_flight = 0
        self.bodies: dict[int, bytes] = {}  # request bodies sent (for a write check)

    async def run(self, start: float) -> list[Sample]:
        """Send every request on schedule from `start` (a `clock()` value); return when all have finished."""
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.spec.rps if self.spec.rps > 0 else 0.0
        for n in range(self.spec.count):
            due = start + n * interval
            delay = due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.in_flight >= self.spec.max_in_flight:
                now = self.clock()
                self.samples.append(Sample(n, due - start, now - start, 0, "client overloaded (too many in flight)"))
                continue
            task = asyncio.create_task(self._one(n, due, start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.timeout + 5)
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        return sorted(self.samples, key=lambda s: s.seq)

    async def _one(self, n: int, due: float, start: float) -> None:
        self.in_flight += 1
        try:
            sample = await self._measure(n, due, start)
        finally:
            self.in_flight -= 1
        self.samples.append(sample)

    async def _measure(self, n: int, due: float, start: float) -> Sample:
        body = self.spec.body.replace("{n}", str(n)).encode() if self.spec.body else b""
        if body:
            self.bodies[n] = body
        remaining = max(0.05, due + self.spec.timeout - self.clock())
        resent = False
        try:
            async with asyncio.timeout(remaining):
                try:
                    answer, fresh = await self._send(body, reuse=True)
                except _Stale:
                    resent = True
                    answer, fresh = await self._send(body, reuse=False)
        except TimeoutError:
            return Sample(n, due - start, self.clock() - start, 0, "timeout")
        except ConnectionRefusedError:
            return Sample(n, due - start, self.clock() - start, 0, "connect refused")
        except (ConnectionError, ProtocolError, _Stale) as exc:
            return Sample(n, due - start, self.clock() - start, 0, _cause_of(exc))
        except OSError as exc:
            return Sample(n, due - start, self.clock() - start, 0, f"network error ({exc.strerror or exc})")
        done = self.clock() - start
        debug = _debug(answer.headers)
        edge_error = _header(answer.headers, b"x-roost-error")
        if edge_error is not None:
            cause = f"edge {answer.status} {edge_error.decode('latin-1')}"
        elif answer.status >= 500:
            cause = f"app {answer.status}"
        else:
            cause = "ok"
        retries = debug.get("rt", 0)
        return Sample(n, due - start, done, answer.status, cause, str(debug.get("sid", "")),
                      str(debug.get("sr", "")), str(debug.get("nr", "")),
                      rerouted=resent or (isinstance(retries, int) and retries > 0), new_conn=fresh)

    def _idle_conn(self) -> _Conn | None:
        now = self.clock()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.born < CONN_MAX_AGE:
                return conn
            conn.close()  # this "user" leaves; the next request comes from a new one
        return None

    async def _send(self, body: bytes, reuse: bool) -> tuple[Answer, bool]:
        conn = self._idle_conn() if reuse else None
        reused = conn is not None
        if conn is None:
            reader, writer = await asyncio.open_connection(*self.spec.address)
            conn = _Conn(reader, writer, self.clock())
        headers = [(b"Host", self.spec.host.encode()), (b"flyio-debug", b"doit"), (b"User-Agent", b"roost-drill")]
        headers += [(k.encode(), v.encode()) for k, v in self.spec.headers]
        if body or self.spec.method in ("POST", "PUT", "PATCH"):
            headers += [(b"Content-Length", str(len(body)).encode()), (b"Content-Type", b"application/json")]
        head_only = self.spec.method == "HEAD"
        conn.h1.head_request = head_only
        try:
            conn.writer.write(encode_head(f"{self.spec.method} {self.spec.path} HTTP/1.1".encode(), headers) + body)
            await conn.writer.drain()
            head = await conn.h1.next_head(None)
            if head is None:
                raise ConnectionResetError("connection closed before an answer")
            data, complete = await conn.h1.read_body(head, BODY_LIMIT, None)
        except (ConnectionError, ProtocolError, OSError) as exc:
            conn.close()
            if reused and not conn.h1.started:
                raise _Stale(str(exc)) from None
            raise
        except BaseException:
            conn.close()  # a timeout or a cancel in the middle: this connection's state is unknown
            raise
        if head.keep_alive and complete and not head_only:  # after HEAD the parser's framing is unsure
            self.idle.append(conn)
        else:
            conn.close()
        return Answer(head.status, head.headers, data), not reused


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _debug(headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    raw = _header(headers, b"flyio-debug")
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _cause_of(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError | _Stale | ProtocolError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "connection reset"
    return f"network error ({exc})"


async def fetch(address: tuple[str, int], host: str, path: str, headers: list[tuple[str, str]],
                timeout: float) -> Answer:
    """One GET on a fresh connection (the write check's read-back)."""
    gen = LoadGenerator(LoadSpec(address=address, host=host, path=path, headers=headers))
    async with asyncio.timeout(timeout):
        answer, _ = await gen._send(b"", reuse=False)
    for conn in gen.idle:
        conn.close()
    return answer
