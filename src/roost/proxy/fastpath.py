"""The HTTP edge's hot path: client and upstream connections as asyncio Protocols driven by callbacks.

A client connection is parsed by httptools as its bytes arrive. A plain request (no upgrade, no
100-continue, no routing header, a body of at most FAST_BODY_LIMIT already received) that a machine can
take right now is forwarded without a coroutine, a task or a per-read timer: its head and body go to a
pooled upstream connection, and the response is relayed as its bytes arrive, head and body in one write.
That is what makes the common case cheap.

Everything else (autostart, waiting for capacity, retries, fly-replay, big or streamed bodies,
WebSocket, cross-region forwarding in the dev fleet) is handed over, with the connection, to the
coroutine path in httpproxy.py. Both share the parser state (this class *is* the connection's H1Reader),
the routing table, the loads and the metrics, so the hand-over loses no byte: the connection's transport
is simply given a stream protocol. After each request there, the connection comes back to the callback
path if nothing is left half-read, so one cold start or retry does not slow a keep-alive client for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import httptools

from roost.proxy.h1 import LAST_CHUNK, H1Reader, Message, ProtocolError, chunk
from roost.proxy.httpproxy import HOLD_HEAD_SECONDS, IDEMPOTENT, HttpProxy, Replay, response_framing
from roost.proxy.table import MachineRoute
from roost.proxy.upstream import CONNECT_TIMEOUT, IdlePool
from roost.tasks import spawn

FAST_BODY_LIMIT = 64 * 1024  # request bodies up to this are taken whole before forwarding
MAX_QUEUED = 8  # pipelined requests parsed ahead of the one in flight before reading pauses
# Request headers that change where a request goes: those requests take the coroutine path.
ROUTING_HEADERS = frozenset({b"expect", b"fly-prefer-region", b"fly-force-instance-id", b"fly-force-region"})

IDLE, WAITING, RELAY = 0, 1, 2  # what a client connection is doing, for its one timer


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpstreamConn(H1Reader, asyncio.Protocol):
    """A connection to a machine, reused for request after request; responses parsed as they arrive."""

    def __init__(self, pool: FastPool, key: tuple[str, int]) -> None:
        super().__init__(None, response=True)  # type: ignore[arg-type]  # fed by data_received, not a stream
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.exchange: ClientConn | None = None
        self.reused = False
        self.idle_since = 0.0
        self.aborted = False  # closed by us because its host was declared unreachable
        self.closed = False
        self.paused = False  # held back because the client it answers is not reading fast enough

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # an idle connection has nothing to say: it is broken
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.close()
            return
        exchange = self.exchange
        if exchange is not None:
            exchange.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_lost(self)

    # httptools callbacks (the head is assembled by H1Reader; the rest goes straight to the client)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        resp = self.ready.popleft()
        if self.exchange is not None:
            self.exchange.response_head(resp)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.exchange is not None:
            self.exchange.response_complete()

    def pause(self) -> None:
        if not self.paused and not self.closed and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class FastPool(IdlePool[UpstreamConn]):
    """The callback path's upstream connections."""

    async def connect(self, host: str, port: int) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        key = (host, port)
        _, conn = await asyncio.wait_for(loop.create_connection(lambda: UpstreamConn(self, key), host, port),
                                         CONNECT_TIMEOUT)
        return conn

    def put(self, conn: UpstreamConn) -> None:
        conn.resume()  # the next request on it owes nothing to the last one's slow client
        super().put(conn)


class ClientConn(H1Reader, asyncio.Protocol):
    """One client connection on the callback path, until (if ever) it is handed to the coroutine path."""

    def __init__(self, edge: HttpProxy, pool: FastPool, tasks: set[asyncio.Task[None]]) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # a StreamReader is given only on hand-over
        self.edge = edge
        self.pool = pool
        self.tasks = tasks  # hand-overs and connects in progress, kept referenced until done
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.port = 0
        self.handed_over = False
        self.admitted = False  # counted toward its client's connection cap
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        # a hand-over waiting for the client to catch up: (the request at hand, if any; why)
        self.deferred_hand_over: tuple[tuple[Message, set[str], Replay | None] | None, str] | None = None
        self.hand_overs = 0
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamReaderProtocol, asyncio.StreamWriter] | None = None
        # the timer: one per connection, moved lazily
        self.phase = IDLE
        self.deadline = 0.0
        self.timer_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # the request in flight
        self.busy = False
        self.req: Message | None = None
        self.machine: MachineRoute | None = None
        self.conn: UpstreamConn | None = None
        self.app = ""
        self.request_id = ""
        self.started_at = 0.0
        self.resp: Message | None = None
        self.framing = b""
        self.keep = True
        self.replay: Replay | None = None
        self.out: list[bytes] = []
        self.done = False
        self.held: bytes | None = None  # the response head, until the body's first bytes arrive
        self.hold_timer: asyncio.TimerHandle | None = None

    # ---- transport events ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.now = self.loop.time  # head deadlines in the loop's time, as the timer
        _nodelay(transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.client_ip, self.port = str(peer[0]), int(local[1])
        if not self.edge.clients.admit(self.client_ip):
            transport.write(self.edge.too_many_connections())  # type: ignore[attr-defined]
            self._close()
            return
        self.admitted = True
        self._arm(self.edge.s.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.upgraded_tail is not None:  # bytes after an upgrade request belong to the tunnel
            self.upgraded_tail += data
            return
        try:
            self.feed(data)
        except ProtocolError as exc:
            if exc.status and not self.busy and self.transport is not None:
                self.transport.write(self.edge.protocol_error_response(exc))  # say why, then close
            self._close()
            return
        if self.busy:
            if len(self.ready) >= MAX_QUEUED or (self.ready and self.ready[-1].body_bytes > FAST_BODY_LIMIT):
                self._pause_reading()
            return
        if not self.ready:
            self._arm_for_request()
        self._advance()

    def _arm_for_request(self) -> None:
        """While no request is ready: a head has header_timeout from its first byte (a client trickling it
        cannot push that back); a body, body_timeout between pieces; nothing at all, idle_timeout."""
        s = self.edge.s
        if self.in_head:
            self._arm_at(self.head_began + s.header_timeout)
        elif self.current is not None and not self.current.complete:
            self._arm(s.body_timeout)
        else:
            self._arm(s.idle_timeout)

    def eof_received(self) -> bool:
        self.eof = True
        if not self.busy and not self.ready:
            self._close()
            return False
        return True  # answer what was asked, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.busy:
            self._end_exchange(reuse=False)
        self._release_client()

    def _release_client(self) -> None:
        """The connection is gone (here, or on the coroutine path after a hand-over): it no longer counts
        toward its client's cap. Once only."""
        if self.admitted:
            self.admitted = False
            self.edge.clients.release(self.client_ip)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.conn is not None:
            self.conn.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.conn is not None:
            self.conn.resume()
        if self.deferred_hand_over is not None:
            (pending, reason), self.deferred_hand_over = self.deferred_hand_over, None
            self._hand_over(pending, reason)

    # ---- requests, one at a time ----

    def _advance(self) -> None:
        while not self.busy and not self.handed_over and not self.closed:
            if not self.ready:
                if self.eof:
                    self._close()
                elif self.read_paused:
                    self.read_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return
            req = self.ready[0]
            if req.upgrade or req.chunked or (req.content_length or 0) > FAST_BODY_LIMIT:
                self._hand_over(None, "upgrade or streamed body")
                return
            if not req.complete:
                if req.header(b"expect") is not None:  # the client waits for a 100 Continue
                    self._hand_over(None, "expect")
                return  # its body is still arriving
            self.ready.popleft()
            self._start(req)

    def _start(self, req: Message) -> None:
        edge = self.edge
        if not ROUTING_HEADERS.isdisjoint(req.names):
            self._hand_over((req, set(), None), "routing header")
            return
        app = edge.app_from_host(req.header(b"host"))
        if app is None or app not in edge.table.by_app:
            self._hand_over((req, set(), None), "unknown app")  # the coroutine path explains (404, 503)
            return
        if req.body_bytes and (limit := edge.table.body_limit(app)) is not None and req.body_bytes > limit:
            self._hand_over((req, set(), None), "body limit")  # the coroutine path answers 413
            return
        chosen = edge.router.route_now(app)
        if chosen is None:  # start a machine, wait for capacity or health: the coroutine path does it
            self._hand_over((req, set(), None), "start or wait")
            return
        m, service = chosen
        if edge.s.simulate_rtt and m.region != edge.s.region:
            self._hand_over((req, set(), None), "simulated distance")  # the dev fleet's simulated distance is a sleep
            return
        host_port = m.host_port(service.internal_port)
        assert host_port is not None
        self.busy = True
        self.req, self.machine, self.app = req, m, app
        self.request_id = edge.new_request_id()
        self.started_at = time.monotonic()
        self.resp, self.replay, self.out, self.done, self.held = None, None, [], False, None
        edge.loads.acquire(m.id)
        conn = self.pool.take(m.address, host_port)
        if conn is not None:
            self._send(conn)
        else:
            spawn(self._connect_and_send(m, host_port), "edge-connect", keep=self.tasks)

    async def _connect_and_send(self, m: MachineRoute, host_port: int) -> None:
        try:
            conn = await self.pool.connect(m.address, host_port)
        except (OSError, TimeoutError):
            self.edge.table.penalize(m.id)
            self._retry_elsewhere("connect")
            return
        if self.closed or not self.busy:
            self.pool.put(conn)
            return
        self._send(conn)

    def _send(self, conn: UpstreamConn) -> None:
        req, m = self.req, self.machine
        assert req is not None and m is not None and conn.transport is not None
        self.conn = conn
        conn.exchange = self
        conn.started = False
        if self.write_paused:  # the client is still behind on the previous answer
            conn.pause()
        body = b"".join(req.body) if req.body else b""
        head = self.edge.request_head(req, body, True, self.request_id, self.client_ip, self.port)
        conn.transport.write(head + body if body else head)
        self.pool.awaiting.setdefault(m.address, set()).add(conn)
        self.phase = WAITING
        self._arm(self.edge.s.upstream_timeout)

    # ---- the response, from UpstreamConn's callbacks ----

    def response_head(self, resp: Message) -> None:
        req, m = self.req, self.machine
        assert req is not None and m is not None
        if 100 <= resp.status < 200:
            if resp.status == 101 and self.conn is not None:  # never asked for: no longer HTTP
                self.conn.close()
            return
        if self.conn is not None:
            self.pool.awaiting.get(m.address, set()).discard(self.conn)
        self.resp = resp
        self.phase = RELAY
        self._arm(self.edge.s.body_timeout)
        replay_to = resp.header(b"fly-replay")
        if replay_to is not None and req.method != b"HEAD":
            self.replay = Replay.parse(replay_to, m.id, m.region)  # its own answer is never shown
            return
        self.framing, self.keep = response_framing(req, resp, True)
        extra = self.edge.debug_header(req, m, self.client_ip) if req.header(b"flyio-debug") is not None else None
        # Held until the body's first bytes (or its end) arrive: see HOLD_HEAD_SECONDS.
        self.held = self.edge.response_head(resp, req, self.request_id, framing=self.framing, keep=self.keep,
                                            extra=extra)
        if req.method == b"HEAD":
            self.done = True  # no body, whatever its headers say (llhttp cannot know it answers a HEAD)
            self._release_head()

    def _release_head(self) -> None:
        """The answer is on its way to the client: from here on it can no longer be retried."""
        resp, m = self.resp, self.machine
        assert self.held is not None and resp is not None and m is not None
        self.out.insert(0, self.held)
        self.held = None
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        self.edge.metrics.observe_latency(self.app, time.monotonic() - self.started_at)
        self.edge.metrics.count_request(self.app, m.id, resp.status)

    def response_body(self, data: bytes) -> None:
        if self.replay is not None or not self.framing:
            return
        if self.held is not None:
            self._release_head()
        self.out.append(chunk(data) if self.framing == b"chunked" else data)

    def response_complete(self) -> None:
        if self.resp is None:
            return  # the end of an interim (1xx) answer: the real one follows
        if self.held is not None:
            self._release_head()
        if self.framing == b"chunked" and self.replay is None:
            self.out.append(LAST_CHUNK)
        self.done = True

    def flush(self) -> None:
        """After each read from the machine: write what it produced to the client in one go."""
        if self.held is not None and self.hold_timer is None and self.busy:
            self.hold_timer = self.loop.call_later(HOLD_HEAD_SECONDS, self._head_alone)
        if self.out:
            assert self.transport is not None
            self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out = []
            if not self.done:
                self._arm(self.edge.s.body_timeout)
        if self.done:
            self._complete()

    def _head_alone(self) -> None:
        """No body byte came soon after the head (a slow or streamed body): the head goes alone."""
        self.hold_timer = None
        if self.held is not None and self.busy and not self.closed:
            self._release_head()
            self.flush()

    def _complete(self) -> None:
        conn, req, resp, replay = self.conn, self.req, self.resp, self.replay
        assert req is not None and resp is not None
        if conn is not None and req.method == b"HEAD":
            conn.parser = httptools.HttpResponseParser(conn)  # the old one still waits for a body
        reuse = conn is not None and not conn.closed and resp.keep_alive
        self._end_exchange(reuse=reuse)
        if replay is not None:
            self._hand_over((req, set(), replay), "replay")
        elif not self.keep:
            self._close()
        else:
            self.phase = IDLE
            self._arm_for_request()
            self._advance()

    def upstream_lost(self, conn: UpstreamConn) -> None:
        if conn is not self.conn or not self.busy:
            return
        req, m, resp = self.req, self.machine, self.resp
        assert req is not None and m is not None
        if resp is not None and self.held is not None and not self.done and self.framing != b"close":
            # The head came but the client has seen nothing of it: as if nothing had come back.
            if req.method in IDEMPOTENT:
                self._retry_elsewhere("reset-before-body")
            else:
                self._fail(502, "PC02", f"machine {m.id} closed the connection in the middle of its answer")
            return
        if resp is not None:
            if resp.complete or self.done:
                self.flush()
            elif self.framing == b"close" and self.replay is None:
                self.flush()  # a body delimited by the end of the connection: that was its end
                self.done = True
                self._complete()
            else:  # cut mid-body: nothing to do but cut the client too
                self._end_exchange(reuse=False)
                self._close()
            return
        retryable = req.method in IDEMPOTENT
        if conn.aborted:
            if retryable:
                self._retry_elsewhere("host-unreachable")
            else:
                self._fail(502, "PC03", f"the host of machine {m.id} became unreachable before it answered")
        elif not conn.started and retryable:
            if not conn.reused:
                self.edge.table.penalize(m.id)
            self._retry_elsewhere("reset-before-response")
        else:
            self._fail(502, "PC02", f"machine {m.id} closed the connection without answering")

    # ---- endings ----

    def _retry_elsewhere(self, reason: str) -> None:
        """The machine failed before it could act: the coroutine path retries on another one."""
        req, m = self.req, self.machine
        assert req is not None and m is not None
        self.edge.metrics.retries.labels(self.app, reason).inc()
        self._end_exchange(reuse=False)
        if not self.closed:
            self._hand_over((req, {m.id}, None), "retry")

    def _fail(self, status: int, code: str, message: str) -> None:
        req = self.req
        assert req is not None and self.transport is not None
        self._end_exchange(reuse=False)
        data, keep = self.edge.error_response(req, self.request_id, status, code, message)
        if not self.closed:
            self.transport.write(data)
        if keep:
            self.phase = IDLE
            self._arm_for_request()
            self._advance()
        else:
            self._close()

    def _end_exchange(self, reuse: bool) -> None:
        conn, m = self.conn, self.machine
        self.conn = None
        self.busy = False
        self.held = None
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        if conn is not None:
            conn.exchange = None
            if m is not None:
                self.pool.awaiting.get(m.address, set()).discard(conn)
            if reuse:
                self.pool.put(conn)
            else:
                conn.close()
        if m is not None:
            self.edge.loads.release(m.id)
        self.machine = None

    def _hand_over(self, pending: tuple[Message, set[str], Replay | None] | None, reason: str) -> None:
        """Give the connection to the coroutine path: a stream protocol takes the transport, and the
        request at hand (if any) and the ones after it are served there, until `_hand_back`."""
        if self.closed or self.handed_over:
            return
        if self.write_paused:  # the stream protocol could not know the transport is paused: wait
            self.deferred_hand_over = (pending, reason)
            return
        transport = self.transport
        assert transport is not None
        self.handed_over = True
        self.hand_overs += 1
        self.edge.metrics.handovers.labels(reason).inc()
        self._cancel_timer()
        if self.streams is None:
            stream = asyncio.StreamReader(limit=2 ** 16)
            protocol = asyncio.StreamReaderProtocol(stream)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            # Kept for the connection's life: a StreamWriter closes its transport when collected.
            self.streams = (stream, protocol, asyncio.StreamWriter(transport, protocol, stream, self.loop))
        else:
            transport.set_protocol(self.streams[1])
        stream, _, writer = self.streams
        if self.eof:
            stream.feed_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.reader = stream
        spawn(self.edge.serve_connection(self, writer, self.client_ip, self.port, first=False, pending=pending,
                                         hand_back=self._hand_back, on_close=self._release_client),
              "edge-connection", keep=self.tasks)

    def _hand_back(self) -> bool:
        """Called by the coroutine path after each request: take the connection back onto the callback
        path if nothing is half-read (no buffered bytes, no partial message, no upgrade, no end of stream)
        and the client is keeping up with its answers."""
        assert self.streams is not None and self.transport is not None
        stream, protocol, _ = self.streams
        # StreamReader._buffer/_paused and the protocol's _paused are private, but nothing public says
        # "no byte buffered, reading and writing not paused"; they have been there since Python 3.4.
        if (self.closed or self.transport.is_closing() or self.upgraded_tail is not None or self.eof
                or stream.at_eof() or stream.exception() is not None
                or (self.current is not None and not self.current.complete)
                or stream._buffer or stream._paused or protocol._paused):  # type: ignore[attr-defined]
            return False
        self.transport.set_protocol(self)
        self.handed_over = False
        self.reader = None  # type: ignore[assignment]
        self.phase = IDLE
        self._arm_for_request()
        if self.ready:
            self.loop.call_soon(self._advance)
        return True

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    # ---- the one timer: header/idle while waiting for a request, upstream while waiting for an answer,
    # body while relaying. Moving a deadline later is an assignment; the timer re-arms itself when it fires early.

    def _arm(self, seconds: float) -> None:
        self._arm_at(self.loop.time() + seconds)

    def _arm_at(self, deadline: float) -> None:
        self.deadline = deadline
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed or self.handed_over:
            return
        if self.loop.time() < self.deadline:
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        if self.busy and self.phase == WAITING and self.resp is None and self.machine is not None:
            self._fail(504, "PU01", f"machine {self.machine.id} did not answer within "
                                    f"{self.edge.s.upstream_timeout:g}s")
            return
        if self.busy:
            self._end_exchange(reuse=False)
        self._close()
