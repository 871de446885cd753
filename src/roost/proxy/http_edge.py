"""The HTTP edge's I/O: asyncio Protocols that carry out what each connection's `ClientSession` decides.

A client connection is a `ClientConnection` (the session's `ExchangeIO`); a connection to a machine is an
`UpstreamConnection`, pooled per address for a few seconds and parsed as its bytes arrive. Nothing here
decides anything about a request: routing asks the `Router` (at once when a machine can take the request
right now, else in a task that may start a machine or wait for one), and every other choice is the
session's (proxy/exchange.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

import httptools

from roost.balancer.services import ServiceSpec
from roost.proxy.exchange import BodyBudget, ClientSession
from roost.proxy.forwarding import ClientCaps, Heads, HttpSettings, Replay
from roost.proxy.h1 import H1Parser, ProtocolError
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import RouteError, Router
from roost.proxy.table import MachineRoute, RoutingTable
from roost.proxy.upstream import ConnectTimes, IdlePool
from roost.tasks import spawn


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpEdge:
    """What every client connection of one edge process shares."""

    def __init__(self, table: RoutingTable, router: Router, loads: Loads, metrics: Metrics,
                 settings: HttpSettings, rtt: Callable[[str, str], float] | None = None) -> None:
        self.table = table
        self.router = router
        self.loads = loads
        self.metrics = metrics
        self.s = settings
        self.rtt = rtt or (lambda _a, _b: 0.0)
        self.heads = Heads(settings, metrics)
        self.budget = BodyBudget(settings.body_budget)
        self.pool = UpstreamPool()
        self.clients = ClientCaps(settings.max_conns_per_client)
        self.tasks: set[asyncio.Task[None]] = set()  # routes and connects in progress, kept referenced
        self.connections: set[ClientConnection] = set()

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        for task in list(self.tasks):
            task.cancel()
        self.pool.close()


class UpstreamConnection(H1Parser, asyncio.Protocol):
    """A connection to a machine, reused request after request; its answers parsed as they arrive and
    passed, piece by piece, to the session of the client connection that owns it."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        super().__init__(response=True)
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.owner: ClientConnection | None = None
        self.reused = False
        self.idle_since = 0.0
        self.aborted = False  # closed by us because its host was declared unreachable
        self.retryable = False  # the request it carries may be sent again elsewhere
        self.closed = False
        self.paused = False  # held back because the client it answers is not reading fast enough
        self.tunneling = False
        self.feeding = False
        self.pool_after_feed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None or owner.session is None:  # an idle connection has nothing to say: it is broken
            self.close()
            return
        session = owner.session
        if self.tunneling:
            session.tunnel_data(data)
            return
        self.feeding = True
        try:
            self.feed(data)
        except ProtocolError:
            self.close()  # the session hears of it in connection_lost
            return
        finally:
            self.feeding = False
        if self.pool_after_feed:  # released while its answer was being parsed
            self.pool_after_feed = False
            self.pool.put(self)
        if self.tunneling and self.upgraded_tail:
            tail, self.upgraded_tail = self.upgraded_tail, None
            session.tunnel_data(tail)
        session.upstream_read()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner, self.owner = self.owner, None
        if owner is not None and owner.conn is self:
            owner.conn = None
            if owner.session is not None:
                owner.session.upstream_lost(self.aborted, self.started)

    def pause_writing(self) -> None:
        if self.owner is not None and self.owner.session is not None:
            self.owner.session.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.owner is not None and self.owner.session is not None:
            self.owner.session.upstream_writable(True)

    # llhttp callbacks: the head is assembled by H1Parser; body pieces go straight to the session

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        resp = self.ready.popleft()
        owner = self.owner
        if owner is not None and owner.session is not None:
            self.pool.awaiting.get(self.key[0], set()).discard(self)
            owner.session.upstream_head(resp)

    def on_body(self, body: bytes) -> None:
        owner = self.owner
        if owner is not None and owner.session is not None:
            owner.session.upstream_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        owner = self.owner
        if owner is not None and owner.session is not None:
            owner.session.upstream_complete()

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


class UpstreamPool(IdlePool[UpstreamConnection]):
    def __init__(self) -> None:
        super().__init__()
        self.connect_times = ConnectTimes()

    async def connect(self, host: str, port: int) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        key = (host, port)
        began = loop.time()
        _, conn = await asyncio.wait_for(loop.create_connection(lambda: UpstreamConnection(self, key), host, port),
                                         self.connect_times.timeout(host))
        self.connect_times.connected(host, loop.time() - began)
        return conn

    def put(self, conn: UpstreamConnection) -> None:
        if conn.head_request:  # llhttp still waits for the body a HEAD answer announced: start afresh
            conn.head_request = False
            conn.parser = httptools.HttpResponseParser(conn)
        conn.resume()  # the next request on it owes nothing to the last one's slow client
        super().put(conn)


class ClientConnection(asyncio.Protocol):
    """One client connection: transport events in, the session's commands carried out."""

    def __init__(self, edge: HttpEdge) -> None:
        self.edge = edge
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: ClientSession | None = None
        self.conn: UpstreamConnection | None = None
        self.client_ip = ""
        self.admitted = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.task: asyncio.Task[None] | None = None  # the route or connect in progress

    # ---- transport events ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.client_ip = str(peer[0])
        edge = self.edge
        if not edge.clients.admit(self.client_ip):
            self.transport.write(edge.heads.too_many_connections())  # type: ignore[union-attr]
            self.close()
            return
        self.admitted = True
        edge.connections.add(self)
        self.session = ClientSession(self, edge.heads, edge.s, edge.table, edge.loads, edge.metrics, self.loop.time,
                                     self.client_ip, int(local[1]), edge.budget)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.client_data(data)

    def eof_received(self) -> bool:
        if self.session is not None:
            self.session.client_eof()
        return not self.closed  # keep the transport open to answer what was asked

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._forget()
        if self.session is not None:
            self.session.client_lost()
        if self.conn is not None:  # not released by the session (it may not know of it yet)
            self.conn.owner = None
            self.conn.close()
            self.conn = None
        if self.admitted:
            self.admitted = False
            self.edge.clients.release(self.client_ip)
        self.edge.connections.discard(self)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.client_writable(False)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.client_writable(True)

    # ---- the session's commands ----

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self._forget()
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _forget(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def set_timer(self, deadline: float) -> None:
        if self.closed:
            return
        if self.timer is not None:
            if self.timer_at <= deadline:
                return  # it fires early and the session asks again
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self.session is not None and not self.closed:
            self.session.timer()

    def route(self, app: str, prefer: str, force: str, replay: Replay | None, exclude: set[str],
              budget: float) -> None:
        if not (prefer or force or replay or exclude):
            chosen = self.edge.router.route_now(app)
            if chosen is not None:
                assert self.session is not None
                self.session.routed(*chosen)
                return
        self.task = spawn(self._pick(app, prefer, force, replay, exclude, budget), "edge-route",
                          keep=self.edge.tasks)

    async def _pick(self, app: str, prefer: str, force: str, replay: Replay | None, exclude: set[str],
                    budget: float) -> None:
        router = self.edge.router
        origin, pairs = router.targets(app, prefer, force, replay)
        chosen: tuple[MachineRoute, ServiceSpec] | RouteError
        try:
            chosen = await router.pick(app, pairs, exclude, time.monotonic() + budget, origin)
        except RouteError as exc:
            chosen = exc
        self.task = None
        if self.session is None or self.closed:
            return
        if isinstance(chosen, RouteError):
            self.session.route_failed(chosen.status, chosen.code, chosen.message)
        else:
            self.session.routed(*chosen)

    def connect(self, machine: MachineRoute, port: int) -> None:
        edge = self.edge
        delay = 0.0
        if edge.s.simulate_rtt and machine.region != edge.s.region:
            delay = edge.rtt(edge.s.region, machine.region) / 1000  # the dev fleet's distance
        conn = edge.pool.take(machine.address, port) if not delay else None
        if conn is not None:
            self._attach(conn, reused=True)
            return
        self.task = spawn(self._connect(machine, port, delay), "edge-connect", keep=edge.tasks)

    async def _connect(self, machine: MachineRoute, port: int, delay: float) -> None:
        pool = self.edge.pool
        reused = False
        if delay:
            await asyncio.sleep(delay)
        conn = pool.take(machine.address, port)
        if conn is not None:
            reused = True
        else:
            try:
                conn = await pool.connect(machine.address, port)
            except (OSError, TimeoutError):
                self.task = None
                if self.session is not None and not self.closed:
                    self.session.connect_failed()
                return
        self.task = None
        if self.closed:
            pool.put(conn)
            return
        self._attach(conn, reused)

    def _attach(self, conn: UpstreamConnection, reused: bool) -> None:
        assert self.session is not None
        self.conn = conn
        conn.owner = self
        self.session.upstream_ready(reused)
        if self.conn is conn and not self.session.attached:  # not taken: the session moved on meanwhile
            self.release(True)

    def send_request(self, data: bytes, head_only: bool) -> None:
        conn = self.conn
        assert conn is not None and conn.transport is not None
        conn.head_request = head_only
        conn.started = False
        conn.retryable = self.session is not None and self.session.retryable
        conn.transport.write(data)
        self.edge.pool.awaiting.setdefault(conn.key[0], set()).add(conn)

    def send(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None and not conn.closed:
            conn.transport.write(data)

    def release(self, reuse: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        conn.owner = None
        self.edge.pool.awaiting.get(conn.key[0], set()).discard(conn)
        if not reuse or conn.closed or conn.tunneling:
            conn.close()
        elif conn.feeding:
            conn.pool_after_feed = True
        else:
            self.edge.pool.put(conn)

    def pause_upstream(self) -> None:
        if self.conn is not None:
            self.conn.pause()

    def resume_upstream(self) -> None:
        if self.conn is not None:
            self.conn.resume()

    def tunnel(self) -> None:
        if self.conn is not None:
            self.conn.tunneling = True

