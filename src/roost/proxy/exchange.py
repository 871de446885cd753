"""The edge's request lifecycle as a sans-IO state machine: one `ClientSession` per client connection.

Events come in as method calls (client bytes, end of stream, the router's answer, the upstream connection
ready or refused, the response's head, body pieces and end, the upstream lost, a timer, either side's write
buffer filling or draining); commands go out as calls on an `ExchangeIO` (write to the client, route,
connect, send upstream, release the upstream connection, pause or resume a side, arm the timer, close).
The asyncio driver (proxy/edge.py) carries the commands out; the tests (tests/unit/test_exchange.py) record
them as transcripts, without a socket.

One request at a time per connection (pipelined ones queue in the parser); its phases:

    IDLE ──head──▶ BODY ──complete, or past the buffer──▶ ROUTING ──routed──▶ CONNECTING ──ready──▶ WAITING
      ▲  (bodiless requests go straight to ROUTING)          ▲  ▲                │ refused           │ head
      │                                                       │  └──── retry ◀───┴── lost, nothing ◀─┤
      │                                                       └─ replay ◀─ DISCARDING ◀─ fly-replay ─┤
      │                                                                                              ▼
      └──────────────── complete (keep-alive) ◀──────────── RELAYING ◀── first body bytes ◀──── HOLDING
                                                              101 to an upgrade ──▶ TUNNEL
    Any phase ──error answer──▶ IDLE (keep-alive) or CLOSED; a timer or a lost client ──▶ CLOSED.

A request body up to the buffer limit is held until complete, so the request can be retried elsewhere
(always after a refused connect; after a reset before any answer byte only when idempotent). A bigger one
streams and is never retried. One deadline per connection, whose meaning follows the phase.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Protocol

from roost.balancer.services import ServiceSpec
from roost.proxy.forwarding import ACME_PREFIX, CONTINUE, IDEMPOTENT, Heads, HttpSettings, Replay, response_framing
from roost.proxy.h1 import LAST_CHUNK, H1Parser, Message, ProtocolError, chunk
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.table import MachineRoute, RoutingTable

# A response head that arrives without any body is held this long for the body's first bytes: a machine
# that dies in between has then sent the client nothing, and an idempotent request is retried elsewhere.
HOLD_HEAD_SECONDS = 0.05
MAX_QUEUED = 8  # pipelined requests parsed ahead of the one in flight before reading pauses
MAX_QUEUED_BODY = 64 * 1024  # body bytes of a queued request read ahead before reading pauses
MAX_TUNNEL_TAIL = 64 * 1024  # bytes after an upgrade request, held until the machine agrees to it


class BodyBudget:
    """The request body bytes every connection of an edge process holds for retries, together. Past the
    budget a body streams (and is not retried) instead: no number of connections can make the edge hold
    more than this in bodies."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


class Phase(enum.Enum):
    IDLE = "idle"
    BODY = "body"
    ROUTING = "routing"
    CONNECTING = "connecting"
    WAITING = "waiting"
    HOLDING = "holding"
    RELAYING = "relaying"
    DISCARDING = "discarding"
    TUNNEL = "tunnel"
    CLOSED = "closed"


class ExchangeIO(Protocol):
    """The commands a session gives its driver."""

    def write(self, data: bytes) -> None:
        """Send to the client."""

    def close(self) -> None:
        """Close the client connection (after what was written) and forget any pending route or connect."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_timer(self, deadline: float) -> None:
        """Call `timer()` at or after `deadline` (the session's clock); the latest call wins."""

    def route(self, app: str, prefer: str, force: str, replay: Replay | None, exclude: set[str],
              budget: float) -> None:
        """Find a machine (starting one or waiting for one, within `budget` seconds); answer with `routed`
        or `route_failed`, possibly before returning."""

    def connect(self, machine: MachineRoute, port: int) -> None:
        """Get a connection to the machine's port (pooled or new); answer with `upstream_ready` or
        `connect_failed`, possibly before returning."""

    def send_request(self, data: bytes, head_only: bool) -> None:
        """Send a request's head (and body so far) upstream; `head_only`: its answer has no body (HEAD)."""

    def send(self, data: bytes) -> None:
        """Send more of the request (body pieces, tunnel bytes) upstream."""

    def release(self, reuse: bool) -> None:
        """Done with the upstream connection: back to the pool, or closed."""

    def pause_upstream(self) -> None: ...

    def resume_upstream(self) -> None: ...

    def tunnel(self) -> None:
        """From now on the upstream's bytes are not HTTP: pass them to `tunnel_data`."""


class ClientSession:
    """One client connection's requests, one at a time, from head to last byte of the answer."""

    def __init__(self, io: ExchangeIO, heads: Heads, settings: HttpSettings, table: RoutingTable, loads: Loads,
                 metrics: Metrics, clock: Callable[[], float], client_ip: str, port: int,
                 budget: BodyBudget | None = None) -> None:
        self.io = io
        self.budget = budget or BodyBudget(settings.body_budget)
        self.holding = 0  # body bytes this connection holds against the budget
        self.heads = heads
        self.s = settings
        self.table = table
        self.loads = loads
        self.metrics = metrics
        self.now = clock
        self.client_ip = client_ip
        self.port = port
        self.parser = H1Parser()
        self.parser.now = clock  # head deadlines on the session's clock
        self.phase = Phase.IDLE
        self.deadline = math.inf
        self.served = 0  # requests answered on this connection
        self.reading_paused = False
        self.client_paused = False  # the client is not reading its answers fast enough
        self.upstream_paused = False  # the machine is not reading the request body fast enough
        self.tail: bytearray | None = None  # bytes after an upgrade request, for the tunnel
        self._progressing = False
        self._reset()
        self._arm(clock() + settings.header_timeout)

    def _reset(self) -> None:
        """Forget the request just answered."""
        self._give_back()
        self.req: Message | None = None
        self.app = ""
        self.request_id = ""
        self.started = 0.0
        self.route_deadline = 0.0
        self.limit: int | None = None  # the app's request body limit
        self.body: bytes | None = None  # the whole request body, kept for a retry
        self.streaming = False  # the body streams to the machine (too big to keep): never retried
        self.rechunk = False  # a streamed body of unknown length goes upstream chunked
        self.sent = 0  # body bytes sent upstream
        self.sent_all = False  # the whole request is upstream
        self.machine: MachineRoute | None = None
        self.routed_at = 0.0
        self.awaiting = False  # the machine has the request and has not answered yet (for its score)
        self.attached = False  # an upstream connection is ours
        self.reused = False
        self.exclude: set[str] = set()
        self.attempts = 0
        self.retried = 0
        self.replays = 0
        self.replay: Replay | None = None
        self.next_replay: Replay | None = None
        self.resp: Message | None = None
        self.framing = b""
        self.keep = True
        self.held: bytes | None = None
        self.out: list[bytes] = []
        self.done = False

    # ================= events from the client =================

    def client_data(self, data: bytes) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self.phase is Phase.TUNNEL:
            self.io.send(data)
            self._arm(self.now() + self.s.tunnel_idle_timeout)
            return
        if self.tail is not None:  # after an upgrade request's head: held until the machine's 101
            self.tail += data
            self._flow()
            return
        parser = self.parser
        try:
            parser.feed(data)
        except ProtocolError as exc:
            if exc.status and self.req is None:  # a request the edge cannot read: say why, then close
                self.io.write(self.heads.protocol_error_response(exc))
            self._shutdown()
            return
        if parser.upgraded_tail is not None and self.tail is None:
            self.tail = bytearray(parser.upgraded_tail)
        self._progress()

    def client_eof(self) -> None:
        self.parser.eof = True
        if self.phase is Phase.IDLE:
            if not self.parser.ready:
                self._shutdown()
        elif self.phase is Phase.TUNNEL or (self.req is not None and not self.req.complete):
            self._shutdown()  # cut in the middle of what it was sending
        # else: answer what was asked, then close (`_progress` sees the end of stream)

    def client_lost(self) -> None:
        """The client connection is gone (the driver has closed it)."""
        self._end_upstream(reuse=False)
        self._give_back()
        self.phase = Phase.CLOSED

    def client_writable(self, writable: bool) -> None:
        self.client_paused = not writable
        if self.attached:
            if writable:
                self.io.resume_upstream()
            else:
                self.io.pause_upstream()

    # ================= events from routing and connecting =================

    def routed(self, machine: MachineRoute, service: ServiceSpec) -> None:
        if self.phase is not Phase.ROUTING:
            return
        port = machine.host_port(service.internal_port)
        assert port is not None
        self.machine = machine
        self.loads.acquire(machine.id)
        self.routed_at = self.now()
        self.loads.awaiting(machine.id, self.routed_at)
        self.awaiting = True
        self.phase = Phase.CONNECTING
        self.io.connect(machine, port)

    def route_failed(self, status: int, code: str, message: str) -> None:
        if self.phase is not Phase.ROUTING:
            return
        if self.replay is not None and code in ("PR01", "PR03", "PR04"):
            status, code, message = 502, "PA03", f"fly-replay to {self.replay.target}: {message}"
        self._error(status, code, message)

    def connect_failed(self) -> None:
        if self.phase is not Phase.CONNECTING:
            return
        assert self.machine is not None
        self.table.penalize(self.machine.id)
        self._scored(False)
        self._retry("connect")

    def upstream_ready(self, reused: bool) -> None:
        req = self.req
        if self.phase is not Phase.CONNECTING or req is None:
            return
        self.attached, self.reused = True, reused
        if self.client_paused:
            self.io.pause_upstream()
        if not self.streaming:
            if self.body is None:
                self.body = b"".join(req.body)
                req.body.clear()
            head = self.heads.request_head(req, len(self.body), True, self.request_id, self.client_ip, self.port,
                                           self.replay)
            self.io.send_request(head + self.body if self.body else head, req.method == b"HEAD")
            self.sent_all = True
            self.phase = Phase.WAITING
            self._arm(self.now() + self.s.upstream_timeout)
            return
        # A streamed body keeps the client's framing: its Content-Length, or chunked.
        self.rechunk = req.content_length is None
        so_far = b"".join(req.body)
        req.body.clear()
        self.sent = len(so_far)
        self._give_back()  # from here its bytes go straight through
        head = self.heads.request_head(req, 0, False, self.request_id, self.client_ip, self.port, self.replay)
        if so_far:
            head += chunk(so_far) if self.rechunk else so_far
        self.io.send_request(head, False)
        self.phase = Phase.WAITING
        self._stream_body()
        self._flow()

    def upstream_writable(self, writable: bool) -> None:
        self.upstream_paused = not writable
        self._flow()

    # ================= events from the machine =================

    def upstream_head(self, resp: Message) -> None:
        req, m = self.req, self.machine
        if self.phase is not Phase.WAITING or req is None or m is None:
            return
        if 100 <= resp.status < 200 and resp.status != 101:
            return  # interim answers are the edge's to give (it answered Expect itself)
        self._scored(resp.status < 500)
        if resp.status == 101:
            if not req.upgrade:  # a switch never asked for: no longer HTTP, nothing to relay
                self._error(502, "PC02", f"machine {m.id} switched protocols unasked")
                return
            self.metrics.answered(self.app, m.id, 101, self.now() - self.started)
            self.io.write(self.heads.response_head(resp, req, self.request_id, framing=b"", keep=True, upgrade=True,
                                                   extra=self.heads.debug_header(req, m, self.client_ip,
                                                                                 self.retried)))
            self.phase = Phase.TUNNEL
            self.io.tunnel()
            if self.tail:
                self.io.send(bytes(self.tail))
            self.tail = bytearray()  # empty but not None: later client bytes still skip the parser
            self._arm(self.now() + self.s.tunnel_idle_timeout)
            self._flow()
            return
        self.resp = resp
        replay_to = resp.header(b"fly-replay")
        if replay_to is not None and req.method != b"HEAD" and not req.upgrade:
            # The machine asks for the request to be replayed elsewhere; its own answer is never shown.
            self.next_replay = Replay.parse(replay_to, m.id, m.region)
            self.phase = Phase.DISCARDING
            self._arm(self.now() + self.s.body_timeout)
            return
        self.framing, self.keep = response_framing(req, resp, req.complete)
        debug = self.heads.debug_header(req, m, self.client_ip, self.retried) if b"flyio-debug" in req.names else None
        self.held = self.heads.response_head(resp, req, self.request_id, framing=self.framing, keep=self.keep,
                                             extra=debug)
        self.phase = Phase.HOLDING
        if req.method == b"HEAD":
            self._release_head()
            self.done = True  # no body, whatever its headers say

    def upstream_body(self, data: bytes) -> None:
        if self.phase is Phase.HOLDING:
            self._release_head()
        if self.phase is Phase.RELAYING and self.framing:
            self.out.append(chunk(data) if self.framing == b"chunked" else data)

    def upstream_complete(self) -> None:
        if self.resp is None:
            return  # the end of an interim (1xx) answer: the real one follows
        if self.phase is Phase.DISCARDING:
            self._replay(self.resp.keep_alive)
            return
        if self.phase is Phase.HOLDING:
            self._release_head()
        if self.phase is Phase.RELAYING and not self.done:
            if self.framing == b"chunked":
                self.out.append(LAST_CHUNK)
            self.done = True

    def upstream_read(self) -> None:
        """The end of one read from the machine: what it produced goes to the client in one write."""
        if self.phase is Phase.HOLDING and not self.done:
            self._arm(self.now() + HOLD_HEAD_SECONDS)
        if self.out:
            self.io.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out = []
            if not self.done:
                self._arm(self.now() + self.s.body_timeout)
        if self.done and self.phase is Phase.RELAYING:
            self._finish()

    def tunnel_data(self, data: bytes) -> None:
        if self.phase is Phase.TUNNEL:
            self.io.write(data)
            self._arm(self.now() + self.s.tunnel_idle_timeout)

    def upstream_lost(self, aborted: bool, answered: bool) -> None:
        """The upstream connection closed under us; `aborted`: by the edge, its host declared unreachable;
        `answered`: some byte of an answer had come."""
        req, m, phase = self.req, self.machine, self.phase
        if not self.attached or req is None or m is None:
            return
        self.attached = False
        if phase is Phase.WAITING:
            retryable = self.body is not None and req.method in IDEMPOTENT
            if aborted:
                if retryable:
                    self._retry("host-unreachable")
                else:
                    self._error(502, "PC03", f"the host of machine {m.id} became unreachable before it answered")
            elif not answered and retryable:
                if not self.reused:
                    self.table.penalize(m.id)
                self._scored(False)
                self._retry("reset-before-response")
            else:
                self._error(502, "PC02", f"machine {m.id} closed the connection without answering")
        elif phase is Phase.HOLDING and self.framing != b"close":
            # The head came but the client has seen nothing of it: as if nothing had come back.
            if self.body is not None and req.method in IDEMPOTENT:
                self._retry("reset-before-body")
            else:
                self._error(502, "PC02", f"machine {m.id} closed the connection in the middle of its answer")
        elif phase in (Phase.HOLDING, Phase.RELAYING) and (self.done or self.framing == b"close"):
            if phase is Phase.HOLDING:
                self._release_head()
            self.done = True  # a body delimited by the end of the connection: that was its end
            self.upstream_read()
        elif phase is Phase.DISCARDING and self.resp is not None and self.resp.content_length is None \
                and not self.resp.chunked:
            self._replay(False)
        elif phase is Phase.TUNNEL:
            self._shutdown()
        else:  # cut in the middle of its answer: nothing to do but cut the client too
            self._shutdown()

    # ================= the clock =================

    def timer(self) -> None:
        now = self.now()
        if self.phase is Phase.CLOSED or math.isinf(self.deadline):
            return
        if now < self.deadline:
            self.io.set_timer(self.deadline)
            return
        phase = self.phase
        if phase is Phase.HOLDING:  # no body byte came soon after the head: the head goes alone
            self._release_head()
            self.upstream_read()
        elif phase is Phase.WAITING and self.sent_all:
            assert self.machine is not None
            self._scored(False)
            self._error(504, "PU01", f"machine {self.machine.id} did not answer within {self.s.upstream_timeout:g}s")
        else:  # a head, a body or an idle keep-alive too slow, a silent tunnel or answer: closed
            self._shutdown()

    # ================= inside =================

    def _progress(self) -> None:
        """After client bytes were parsed, or a request was answered: move the connection on. A loop, not
        recursion: one read can hold a thousand pipelined requests that are each answered at once."""
        if self._progressing:
            return  # the loop below goes on from where the caller left it
        self._progressing = True
        try:
            while True:
                phase = self.phase
                if phase is Phase.IDLE:
                    parser = self.parser
                    if parser.ready:
                        self._begin(parser.ready.popleft())
                        continue
                    if parser.eof or self.tail is not None:  # ended, or no longer HTTP (a refused upgrade)
                        self._shutdown()
                    elif parser.in_head:  # from the head's first byte: a client trickling it cannot push it back
                        self._arm(parser.head_began + self.s.header_timeout)
                    elif self.served:
                        self._arm(self.now() + self.s.idle_timeout)
                elif phase is Phase.BODY:
                    self._body_arrived()
                    if self.phase is Phase.IDLE:
                        continue
                elif self.streaming and self.attached and not self.sent_all:
                    self._stream_body()
                    if self.phase is Phase.IDLE:
                        continue
                break
        finally:
            self._progressing = False
        self._flow()

    def _begin(self, req: Message) -> None:
        self.req = req
        self.request_id = self.heads.new_request_id()
        self.started = self.now()
        self.route_deadline = self.started + self.s.route_timeout
        if self.heads.challenges and req.url.startswith(ACME_PREFIX) and req.complete:
            answered = self.heads.acme_answer(req, self.request_id)
            if answered is not None:
                self.io.write(answered[0])
                if answered[1]:
                    self._next()
                else:
                    self._shutdown()
                return
        app = self.heads.app_of(req)
        if app is None or (app not in self.table.apps and app not in self.table.by_app):
            name = app or (req.header(b"host") or b"").decode("latin-1")
            self._error(404, "PR00", f"no app named {name!r} here (send Host: APP.{self.s.domain})")
            return
        self.app = app
        if req.has_body:
            self.limit = self.table.body_limit(app)
            if self.limit is not None and req.content_length is not None and req.content_length > self.limit:
                # Refused before a byte of it is read (and before a 100 Continue invites it).
                self._error(413, "PB01", self.heads.too_large(app, self.limit), close=True)
                return
        if req.names and b"fly-force-region" in req.names:
            self.replay = Replay.forced((req.header(b"fly-force-region") or b"").decode("latin-1").strip())
        if req.complete or req.upgrade:
            self._route()
            return
        expect = req.header(b"expect")
        if expect is not None and expect.lower() == b"100-continue":
            self.io.write(CONTINUE)
        self.phase = Phase.BODY
        self._body_arrived()

    def _body_arrived(self) -> None:
        req = self.req
        assert req is not None
        if self.limit is not None and req.body_bytes > self.limit:
            self._error(413, "PB01", self.heads.too_large(self.app, self.limit), close=True)
            return
        if self.budget.take(req.body_bytes - self.holding):
            self.holding = req.body_bytes
        else:  # the edge holds all it may in bodies, together: this one streams, and is not retried
            self.streaming = True
            self._route()
            return
        if req.complete:
            self._route()
        elif req.body_bytes > min(self.s.buffer_limit, self.limit or self.s.buffer_limit):
            self.streaming = True  # too big to keep for a retry: it streams once a machine is chosen
            self._route()
        else:
            self._arm(self.now() + self.s.body_timeout)

    def _route(self) -> None:
        req = self.req
        assert req is not None
        self.phase = Phase.ROUTING
        self.attempts += 1
        self.deadline = math.inf  # the router bounds its own wait
        prefer = force = ""
        if req.names and (b"fly-prefer-region" in req.names or b"fly-force-instance-id" in req.names):
            prefer = (req.header(b"fly-prefer-region") or b"").decode("latin-1").strip()
            force = (req.header(b"fly-force-instance-id") or b"").decode("latin-1").strip()
        self.io.route(self.app, prefer, force, self.replay, self.exclude, max(0.0, self.route_deadline - self.now()))
        if self.streaming:
            self._flow()

    def _stream_body(self) -> None:
        req = self.req
        assert req is not None
        while req.body:
            piece = req.body.popleft()
            self.sent += len(piece)
            if self.limit is not None and self.sent > self.limit:  # the machine never sees the end of it
                if self.phase is Phase.WAITING:
                    self._error(413, "PB01", self.heads.too_large(self.app, self.limit), close=True)
                else:
                    self._shutdown()
                return
            self.io.send(chunk(piece) if self.rechunk else piece)
        if req.complete:
            if self.rechunk:
                self.io.send(LAST_CHUNK)
            self.sent_all = True
            if self.phase is Phase.WAITING:
                self._arm(self.now() + self.s.upstream_timeout)
        elif self.phase is Phase.WAITING:
            self._arm(self.now() + self.s.body_timeout)

    def _release_head(self) -> None:
        """The answer is on its way to the client: from here on it can no longer be retried."""
        assert self.held is not None and self.resp is not None and self.machine is not None
        self.out.insert(0, self.held)
        self.held = None
        self.phase = Phase.RELAYING
        self.metrics.answered(self.app, self.machine.id, self.resp.status, self.now() - self.started)

    def _finish(self) -> None:
        resp = self.resp
        assert resp is not None
        self._end_upstream(reuse=resp.keep_alive and self.sent_all)
        if self.keep:
            self._next()
        else:
            self._shutdown()

    def _replay(self, reusable: bool) -> None:
        """The machine answered with fly-replay (its answer now read and dropped): route the request again."""
        req = self.req
        assert req is not None
        self._end_upstream(reuse=reusable and self.sent_all)
        if self.body is None:
            self._error(413, "PA01", f"request body larger than {self.s.buffer_limit // (1024 * 1024)} MB: "
                                     "it was not buffered, so it cannot be replayed")
            return
        self.replays += 1
        if self.replays > self.s.max_replays:
            self._error(502, "PA02", f"more than {self.s.max_replays} fly-replays for one request")
            return
        self.replay, self.next_replay, self.resp = self.next_replay, None, None
        self.exclude, self.attempts = set(), 0
        self._route()

    def _retry(self, reason: str) -> None:
        """The machine failed before it could act on the request: another one gets it."""
        assert self.machine is not None
        self.exclude.add(self.machine.id)
        self.metrics.retries.labels(self.app, reason).inc()
        self._end_upstream(reuse=False)
        self.retried += 1
        if self.attempts >= self.s.max_attempts or self.now() > self.route_deadline:
            self._error(502, "PR04", f"no machine of {self.app!r} answered after {self.attempts} attempts "
                                     f"(last: {reason})")
            return
        self.resp, self.held, self.out = None, None, []
        self._route()

    def _error(self, status: int, code: str, message: str, close: bool = False) -> None:
        req = self.req
        assert req is not None
        self._end_upstream(reuse=False)
        data, keep = self.heads.error_response(req, self.request_id, status, code, message,
                                               close or not req.complete)
        self.io.write(data)
        if keep:
            self._next()
        else:
            self._shutdown()

    @property
    def retryable(self) -> bool:
        """The request may be sent again to another machine: idempotent, and its whole body kept."""
        return self.req is not None and self.body is not None and self.req.method in IDEMPOTENT

    def _scored(self, ok: bool | None) -> None:
        """The machine answered (ok: under 500) or failed (a 5xx, timeout, failed connect or reset before an
        answer): its score learns how long that took; enough failures in a row eject it for a while. None:
        the wait ended for a reason that says nothing about the machine."""
        m = self.machine
        if not self.awaiting or m is None:
            return
        self.awaiting = False
        now = self.now()
        self.loads.answered(m.id, self.routed_at)
        if ok:
            self.loads.scores.answered(m.id, now - self.routed_at, now)
        elif ok is not None:
            ejected_for = self.loads.scores.failed(m.id, now - self.routed_at, now)
            if ejected_for:
                self.table.penalize(m.id, ejected_for)
                self.metrics.ejections.labels(self.app).inc()

    def _end_upstream(self, reuse: bool) -> None:
        self._scored(None)
        if self.attached:
            self.attached = False
            self.io.release(reuse)
        if self.machine is not None:
            self.loads.release(self.machine.id)
            self.machine = None

    def _next(self) -> None:
        self.served += 1
        self._reset()
        self.phase = Phase.IDLE
        self._progress()

    def _give_back(self) -> None:
        if self.holding:
            self.budget.give_back(self.holding)
            self.holding = 0

    def _shutdown(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        self._end_upstream(reuse=False)
        self._give_back()
        self.phase = Phase.CLOSED
        self.deadline = math.inf
        self.io.close()

    def _arm(self, deadline: float) -> None:
        # Moving the deadline later costs an assignment: the driver's timer, when early, asks again.
        if deadline < self.deadline or math.isinf(self.deadline):
            self.io.set_timer(deadline)
        self.deadline = deadline

    def _flow(self) -> None:
        """Read from the client only as fast as its bytes can go somewhere."""
        parser = self.parser
        if not (self.reading_paused or parser.ready or self.streaming or self.tail is not None) \
                or self.phase is Phase.CLOSED:
            return  # the common case: reading, and nothing that would make it stop
        pause = (len(parser.ready) >= MAX_QUEUED
                 or (bool(parser.ready) and parser.ready[-1].body_bytes > MAX_QUEUED_BODY)
                 or (self.tail is not None and (len(self.tail) > MAX_TUNNEL_TAIL
                                                or (self.phase is Phase.TUNNEL and self.upstream_paused)))
                 or (self.streaming and not self.sent_all and (not self.attached or self.upstream_paused)))
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.io.pause_reading()
            else:
                self.io.resume_reading()
