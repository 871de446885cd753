"""The HTTP/1.1 edge: route by `Host: <app>.<domain>`, forward to the chosen machine, retry safely.

Per client connection, requests are read one after another (pipelined ones queue in the reader) and
answered in order. Request bodies up to 10 MB are buffered so that a request can be retried on another
machine; larger ones stream and are not retried. A connect failure, or a reset before any response byte,
is retried on another machine (bounded in count and time) when it is safe: always for connect failures,
else only for idempotent methods. Responses stream back with their framing kept (re-chunked for
HTTP/1.1 clients). WebSocket and other upgrades become a byte tunnel after the 101.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.balancer.services import ServiceSpec
from roost.core.lifecycle import State
from roost.proxy.h1 import LAST_CHUNK, H1Reader, Message, ProtocolError, chunk, encode_head, pass_headers
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import RouteError, Router
from roost.proxy.table import MachineRoute, RoutingTable
from roost.proxy.upstream import Pool, Upstream

log = logging.getLogger("roost.proxy.http")

_ids = itertools.count()
_NODE = os.urandom(3).hex()
# Headers the edge sets itself (any the client or machine sent are replaced).
REQUEST_SET_BY_EDGE = frozenset({b"expect", b"x-forwarded-for", b"via", b"fly-client-ip", b"fly-region",
                                 b"fly-request-id", b"x-forwarded-proto", b"x-forwarded-port", b"fly-forwarded-port",
                                 b"fly-replay-src"})
RESPONSE_SET_BY_EDGE = frozenset({b"via", b"fly-request-id", b"flyio-debug"})
# A response head that arrives without any body is held this long for the body's first bytes: a machine
# that dies in between has then sent the client nothing, and an idempotent request is retried elsewhere.
HOLD_HEAD_SECONDS = 0.05
IDEMPOTENT = {b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"}
STATUS_TEXT = {404: b"Not Found", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
               400: b"Bad Request", 413: b"Payload Too Large", 408: b"Request Timeout", 414: b"URI Too Long",
               431: b"Request Header Fields Too Large", 429: b"Too Many Requests"}


@dataclass
class HttpSettings:
    domain: str = "localhost"
    region: str = "ams"
    buffer_limit: int = 10 * 1024 * 1024  # bodies up to this are buffered for retries
    header_timeout: float = 30.0  # a started request head must arrive within this
    idle_timeout: float = 75.0  # a keep-alive connection with no request
    body_timeout: float = 60.0  # between two pieces of a body, either side
    upstream_timeout: float = 60.0  # from the request sent to the response head
    route_timeout: float = 15.0  # waiting for a machine (autostart, hard limits, none healthy)
    max_attempts: int = 10
    tunnel_idle_timeout: float = 3600.0
    max_replays: int = 10  # Fly: at most 10 chained fly-replays (PA02)
    max_conns_per_client: int = 1024  # open connections from one client address (429 past it)
    simulate_rtt: bool = False  # the dev fleet: forwarding to another region costs its round-trip time


@dataclass(frozen=True)
class Replay:
    """A machine's `fly-replay` answer: where the request should go instead."""

    regions: tuple[str, ...] = ()
    instance: str = ""
    elsewhere: bool = False
    state: str = ""
    source: str = ""  # the machine that asked
    source_region: str = ""

    @classmethod
    def parse(cls, value: bytes, source: str, source_region: str) -> Replay:
        fields: dict[str, str] = {}
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key:
                fields[key.strip().lower()] = val.strip().strip('"')
        regions = tuple(r.strip() for r in fields.get("region", "").split(",") if r.strip())
        return cls(regions, fields.get("instance", ""), fields.get("elsewhere", "").lower() == "true",
                   fields.get("state", ""), source, source_region)


def response_framing(req: Message, resp: Message, request_complete: bool) -> tuple[bytes, bool]:
    """How the response body is framed to the client (b"" none, content-length, chunked, close) and whether
    the client connection stays open after it."""
    keep = req.keep_alive and request_complete
    if req.method == b"HEAD" or resp.status in (204, 304):
        return b"", keep
    if resp.content_length is not None:
        return b"content-length", keep
    if resp.chunked and req.version == "1.1":
        return b"chunked", keep
    return b"close", False


class ClientCaps:
    """Open connections per client address, capped: one address cannot take every connection slot."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        n = self.open.get(address, 0)
        if n >= self.limit:
            return False
        self.open[address] = n + 1
        return True

    def release(self, address: str) -> None:
        n = self.open.get(address, 0) - 1
        if n > 0:
            self.open[address] = n
        else:
            self.open.pop(address, None)


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpProxy:
    def __init__(self, table: RoutingTable, router: Router, pool: Pool, loads: Loads, metrics: Metrics,
                 settings: HttpSettings, rtt: Callable[[str, str], float] | None = None) -> None:
        self.rtt = rtt or (lambda _a, _b: 0.0)
        self.table = table
        self.router = router
        self.pool = pool
        self.loads = loads
        self.metrics = metrics
        self.s = settings
        self.suffix = ("." + settings.domain).encode()
        self._region_b = settings.region.encode()
        self._apps_by_host: dict[bytes, str | None] = {}
        # Request ids: unique per edge process (start time, random node) plus a counter; cheap to make.
        self._id_prefix = f"{time.time_ns():x}"
        self._id_suffix = f"{_NODE}-{settings.region}"
        self.clients = ClientCaps(settings.max_conns_per_client)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or ("", 0)
        await self.serve_connection(H1Reader(reader), writer, str(peer[0]), int(local[1]), first=True)

    async def serve_connection(self, client: H1Reader, writer: asyncio.StreamWriter, client_ip: str, port: int,
                               first: bool, pending: tuple[Message, set[str], Replay | None] | None = None,
                               hand_back: Callable[[], bool] | None = None,
                               on_close: Callable[[], None] | None = None) -> None:
        """Answer a connection's requests in order until it closes. `pending` is a request the callback data
        plane (fastpath) hands over part-way, with the machines it already tried or the replay it was asked;
        `hand_back`, from the callback path, takes the connection back after a request when nothing is left
        half-read, and this coroutine then ends without closing it."""
        kept = False
        try:
            if pending is not None:
                handed, exclude, replay = pending
                if not await self.handle(handed, client, writer, client_ip, port, exclude, replay):
                    return
                first = False
                kept = hand_back is not None and hand_back()
            while not kept:
                try:
                    req = await client.next_head(self.s.header_timeout if first else self.s.idle_timeout,
                                                 self.s.header_timeout)
                except ProtocolError as exc:
                    if exc.status:  # a request the edge cannot read: say why, then close
                        with contextlib.suppress(ConnectionError, OSError):
                            writer.write(self.protocol_error_response(exc))
                            await writer.drain()
                    break
                if req is None:
                    break
                first = False
                if not await self.handle(req, client, writer, client_ip, port):
                    break
                kept = hand_back is not None and hand_back()
        except (ProtocolError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            if not kept:
                with contextlib.suppress(Exception):
                    writer.close()
                if on_close is not None:
                    on_close()

    # ---- one request ----

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(_ids):x}{self._id_suffix}"  # prefix and suffix are fixed-length

    async def handle(self, req: Message, client: H1Reader, writer: asyncio.StreamWriter, client_ip: str,
                     port: int, exclude: set[str] | None = None, replay: Replay | None = None) -> bool:
        started = time.monotonic()
        request_id = self.new_request_id()
        app = self.app_of(req)
        if app is None or (app not in self.table.apps and app not in self.table.by_app):
            await self._drain_body(req, client)
            name = app or (req.header(b"host") or b"").decode("latin-1")
            return await self._error(writer, req, request_id, 404, "PR00",
                                     f"no app named {name!r} here (send Host: APP.{self.s.domain})")
        limit = self.table.body_limit(app) if req.has_body else None
        if limit is not None and req.content_length is not None and req.content_length > limit:
            # Refused before a byte of it is read (and before a 100 Continue invites it).
            return await self._error(writer, req, request_id, 413, "PB01", self._too_large(app, limit), close=True)
        if req.header(b"expect") and req.header(b"expect").lower() == b"100-continue":  # type: ignore[union-attr]
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, complete = (b"", True)
        if req.has_body and not req.upgrade:
            try:
                buffered = self.s.buffer_limit if limit is None else min(self.s.buffer_limit, limit)
                body, complete = await client.read_body(req, buffered, self.s.body_timeout)
            except (ProtocolError, TimeoutError):
                return False
            if limit is not None and len(body) > limit:
                return await self._error(writer, req, request_id, 413, "PB01", self._too_large(app, limit),
                                         close=True)
        exclude = exclude if exclude is not None else set()
        deadline = started + self.s.route_timeout
        # A request handed over for a retry was already tried on the machines in `exclude`: those count.
        attempts, replays = len(exclude), 0
        prefer = (req.header(b"fly-prefer-region") or b"").decode("latin-1").strip()
        force = (req.header(b"fly-force-instance-id") or b"").decode("latin-1").strip()
        force_region = (req.header(b"fly-force-region") or b"").decode("latin-1").strip()
        if force_region and replay is None:
            # Fly-Force-Region: that region or nothing (a replay to it, without the fallback of a preference).
            replay = Replay(regions=tuple(r.strip() for r in force_region.split(",") if r.strip()))
        while True:
            attempts += 1
            origin, pairs_fn = self._targets(app, prefer, force, replay)
            try:
                m, service = await self.router.pick(app, pairs_fn, exclude, deadline, origin)
            except RouteError as exc:
                if replay is not None and exc.code in ("PR01", "PR03", "PR04"):
                    exc = RouteError(502, "PA03", f"fly-replay to {replay.instance or ','.join(replay.regions)}: "
                                                  f"{exc.message}")
                return await self._error(writer, req, request_id, exc.status, exc.code, exc.message,
                                         close=not complete)
            host_port = m.host_port(service.internal_port)
            assert host_port is not None
            self.loads.acquire(m.id)
            try:
                outcome = await self._forward(req, client, writer, app, m, host_port, body, complete, request_id,
                                              client_ip, port, started, replay, attempts - 1)
            except _Retry as retry:
                exclude.add(m.id)
                self.metrics.retries.labels(app, retry.reason).inc()
                if attempts >= self.s.max_attempts or time.monotonic() > deadline:
                    return await self._error(writer, req, request_id, 502, "PR04",
                                             f"no machine of {app!r} answered after {attempts} attempts "
                                             f"(last: {retry.reason})")
                continue
            finally:
                self.loads.release(m.id)
            if not isinstance(outcome, Replay):
                return outcome
            replays += 1
            if replays > self.s.max_replays:
                return await self._error(writer, req, request_id, 502, "PA02",
                                         f"more than {self.s.max_replays} fly-replays for one request")
            replay, exclude, attempts = outcome, set(), 0

    def _targets(self, app: str, prefer: str, force: str, replay: Replay | None
                 ) -> tuple[str | None, Callable[[], list[tuple[MachineRoute, ServiceSpec]]]]:
        """Which machines may take the request, and from where distance is counted."""
        def all_targets() -> list[tuple[MachineRoute, ServiceSpec]]:
            return self.table.http_targets(app)

        if replay is not None:
            if replay.instance:
                return None, lambda: [(m, sv) for m, sv in all_targets() if m.id == replay.instance]
            regions = [r for r in replay.regions if r != "any"]
            skip = replay.source if replay.elsewhere else ""
            if regions:
                wanted = set(regions)
                if "any" in replay.regions:  # a preference list ending in "any": fall back to anywhere
                    return regions[0], lambda: (
                        [(m, sv) for m, sv in all_targets() if m.region in wanted and m.id != skip]
                        or [(m, sv) for m, sv in all_targets() if m.id != skip])
                return regions[0], lambda: [(m, sv) for m, sv in all_targets()
                                            if m.region in wanted and m.id != skip]
            return None, lambda: [(m, sv) for m, sv in all_targets() if m.id != skip]
        if force:
            return None, lambda: [(m, sv) for m, sv in all_targets() if m.id == force]
        if prefer:
            now = time.monotonic()
            there = [(m, sv) for m, sv in all_targets() if m.region == prefer and self.table.healthy(m, now)
                     and self.table.state_of(m, now) in (State.STARTED, State.STOPPED, State.SUSPENDED)]
            if there:
                return prefer, lambda: [(m, sv) for m, sv in all_targets() if m.region == prefer] or all_targets()
        return None, all_targets

    def app_of(self, req: Message) -> str | None:
        return self.app_from_host(req.header(b"host"))

    def app_from_host(self, host: bytes | None) -> str | None:
        if not host:
            return None
        try:
            return self._apps_by_host[host]
        except KeyError:
            pass
        app = self._parse_host(host)
        if len(self._apps_by_host) >= 4096:  # bounded: Host headers are the client's to choose
            self._apps_by_host.clear()
        self._apps_by_host[host] = app
        return app

    def _parse_host(self, host: bytes) -> str | None:
        name = host.split(b":", 1)[0].lower().rstrip(b".")
        if name.endswith(self.suffix):
            name = name[: -len(self.suffix)]
        elif b"." in name:
            return None
        return name.decode("latin-1") or None

    async def _forward(self, req: Message, client: H1Reader, writer: asyncio.StreamWriter, app: str,
                       m: MachineRoute, host_port: int, body: bytes, complete: bool, request_id: str,
                       client_ip: str, port: int, started: float, replay: Replay | None = None,
                       retried: int = 0) -> bool | Replay:
        try:
            conn = await self.pool.get(m.address, host_port)
        except (OSError, TimeoutError):
            self.table.penalize(m.id)
            raise _Retry("connect") from None
        if self.s.simulate_rtt and m.region != self.s.region:
            await asyncio.sleep(self.rtt(self.s.region, m.region) / 1000)  # the dev fleet's distance
        retryable = complete and req.method in IDEMPOTENT
        try:
            head = self.request_head(req, body, complete, request_id, client_ip, port, replay)
            # A streamed body keeps the client's framing: its Content-Length, or chunked.
            rechunk = not complete and req.content_length is None
            conn.writer.write(head + (chunk(body) if rechunk else body) if body else head)
            await conn.writer.drain()
            if not complete:
                limit, sent = self.table.body_limit(app), len(body)
                while True:
                    piece = await client.body_chunk(req, self.s.body_timeout)
                    if piece is None:
                        break
                    sent += len(piece)
                    if limit is not None and sent > limit:  # the machine never sees the end of it
                        conn.close()
                        return await self._error(writer, req, request_id, 413, "PB01", self._too_large(app, limit),
                                                 close=True)
                    conn.writer.write(chunk(piece) if rechunk else piece)
                    await conn.writer.drain()
                if rechunk:
                    conn.writer.write(LAST_CHUNK)
                await conn.writer.drain()
        except (ConnectionError, OSError) as exc:
            conn.close()
            if retryable:
                raise _Retry("reset-while-sending") from exc
            return await self._error(writer, req, request_id, 502, "PC01", f"machine {m.id} reset the connection")
        upstream = H1Reader(conn.reader, response=True, head_request=req.method == b"HEAD")
        awaiting = self.pool.awaiting.setdefault(m.address, set())
        awaiting.add(conn)
        try:
            resp = await upstream.next_head(self.s.upstream_timeout)
            while resp is not None and 100 <= resp.status < 200 and resp.status != 101:
                resp = await upstream.next_head(self.s.upstream_timeout)
        except TimeoutError:
            conn.close()
            return await self._error(writer, req, request_id, 504, "PU01",
                                     f"machine {m.id} did not answer within {self.s.upstream_timeout:g}s")
        except ProtocolError:
            resp = None
        finally:
            awaiting.discard(conn)
        if resp is None and conn.aborted:
            if retryable:
                raise _Retry("host-unreachable")
            return await self._error(writer, req, request_id, 502, "PC03",
                                     f"the host of machine {m.id} became unreachable before it answered")
        if resp is None:
            conn.close()
            # Nothing came back: safe to try elsewhere if the machine cannot have acted on it.
            if not upstream.started and retryable:
                if not conn.reused:
                    self.table.penalize(m.id)
                raise _Retry("reset-before-response")
            return await self._error(writer, req, request_id, 502, "PC02",
                                     f"machine {m.id} closed the connection without answering")
        replay_to = resp.header(b"fly-replay")
        if replay_to is not None and req.method != b"HEAD" and not req.upgrade:
            # The machine asks for the request to be replayed elsewhere; its own answer is never shown.
            await self._discard(resp, upstream, conn)
            if not complete:
                return await self._error(writer, req, request_id, 413, "PA01",
                                         f"request body larger than {self.s.buffer_limit // (1024 * 1024)} MB: "
                                         "it was not buffered, so it cannot be replayed")
            return Replay.parse(replay_to, m.id, m.region)
        if resp.status != 101 and response_framing(req, resp, complete)[0] and not resp.body and not resp.complete:
            # The head came alone: wait a moment for the body's first bytes before passing it on, so that a
            # machine dying in between leaves the client untouched and the request can still be retried.
            try:
                async with asyncio.timeout(HOLD_HEAD_SECONDS):
                    await upstream.wait_body(resp)
            except TimeoutError:
                pass  # a slow or streamed body: the head goes now
            except ProtocolError:
                conn.close()
                if retryable:
                    raise _Retry("reset-before-body") from None
                return await self._error(writer, req, request_id, 502, "PC02",
                                         f"machine {m.id} closed the connection in the middle of its answer")
        self.metrics.observe_latency(app, time.monotonic() - started)
        self.metrics.count_request(app, m.id, resp.status)
        extra = self.debug_header(req, m, client_ip, retried)
        if resp.status == 101 and req.upgrade:
            writer.write(self.response_head(resp, req, request_id, framing=b"", keep=True, upgrade=True,
                                             extra=extra))
            await writer.drain()
            await self._tunnel(client, writer, upstream, conn)
            return False
        return await self._relay_response(req, resp, upstream, conn, writer, request_id, complete, extra)

    def debug_header(self, req: Message, m: MachineRoute, client_ip: str,
                     retried: int = 0) -> list[tuple[bytes, bytes]]:
        """`flyio-debug: doit` asks, as on Fly, which edge and which machine served the request (and, ours,
        how many other machines it was tried on first: `rt`)."""
        if req.header(b"flyio-debug") is None:
            return []
        info: dict[str, object] = {"n": f"roost-edge-{self.s.region}", "nr": self.s.region, "ra": client_ip,
                                   "sr": m.region, "sid": m.id}
        if retried:
            info["rt"] = retried
        return [(b"flyio-debug", json.dumps(info, separators=(",", ":")).encode())]

    async def _relay_response(self, req: Message, resp: Message, upstream: H1Reader, conn: Upstream,
                              writer: asyncio.StreamWriter, request_id: str, request_complete: bool,
                              extra: list[tuple[bytes, bytes]]) -> bool:
        framing, keep = response_framing(req, resp, request_complete)
        no_body = not framing
        head = self.response_head(resp, req, request_id, framing=framing, keep=keep, extra=extra)
        if not no_body and resp.body and framing != b"chunked":
            # The body's first bytes usually came with the head: one write, one syscall.
            head += b"".join(resp.body)
            resp.body.clear()
        writer.write(head)
        if no_body:
            await writer.drain()
        else:
            try:
                while True:
                    piece = await upstream.body_chunk(resp, self.s.body_timeout)
                    if piece is None:
                        break
                    writer.write(chunk(piece) if framing == b"chunked" else piece)
                    await writer.drain()
            except (ProtocolError, TimeoutError):
                conn.close()
                return False  # mid-body: nothing left to do but cut the client connection too
            if framing == b"chunked":
                writer.write(LAST_CHUNK)
            await writer.drain()
        if resp.complete and resp.keep_alive and not upstream.upgraded_tail:
            self.pool.put(conn)
        else:
            conn.close()
        return keep

    async def _discard(self, resp: Message, upstream: H1Reader, conn: Upstream) -> None:
        try:
            while await upstream.body_chunk(resp, self.s.body_timeout) is not None:
                pass
        except (ProtocolError, TimeoutError):
            conn.close()
            return
        if resp.complete and resp.keep_alive:
            self.pool.put(conn)
        else:
            conn.close()

    async def _tunnel(self, client: H1Reader, writer: asyncio.StreamWriter, upstream: H1Reader,
                      conn: Upstream) -> None:
        async def pump(reader: asyncio.StreamReader, dest: asyncio.StreamWriter, first: bytes | None) -> None:
            try:
                if first:
                    dest.write(first)
                    await dest.drain()
                while True:
                    data = await asyncio.wait_for(reader.read(65536), self.s.tunnel_idle_timeout)
                    if not data:
                        break
                    dest.write(data)
                    await dest.drain()
            except (ConnectionError, OSError, TimeoutError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    if dest.can_write_eof():
                        dest.write_eof()

        await asyncio.gather(pump(client.reader, conn.writer, client.upgraded_tail),
                             pump(conn.reader, writer, upstream.upgraded_tail))
        conn.close()

    # ---- heads ----

    def request_head(self, req: Message, body: bytes, complete: bool, request_id: str, client_ip: str,
                     port: int, replay: Replay | None = None) -> bytes:
        parts, left_out = pass_headers(req, REQUEST_SET_BY_EDGE)
        head = [req.method, b" ", req.url, b" HTTP/1.1\r\n", *parts]
        if replay is not None and replay.source:
            src = f"instance={replay.source};region={replay.source_region};t={time.time_ns() // 1000}"
            if replay.state:
                src += f";state={replay.state}"
            head += (b"fly-replay-src: ", src.encode(), b"\r\n")
        forwarded_for = left_out.get(b"x-forwarded-for")
        ip = client_ip.encode()
        via = left_out.get(b"via")
        port_b = str(port).encode()
        head += (b"X-Forwarded-For: ", forwarded_for + b", " + ip if forwarded_for else ip,
                 b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: ", port_b, b"\r\nFly-Forwarded-Port: ", port_b,
                 b"\r\nFly-Client-IP: ", ip, b"\r\nFly-Region: ", self._region_b, b"\r\nFly-Request-Id: ",
                 request_id.encode(), b"\r\nVia: ", via + b", 1.1 roost" if via else b"1.1 roost", b"\r\n")
        if req.upgrade:
            head += (b"Connection: Upgrade\r\nUpgrade: ", left_out.get(b"upgrade") or b"websocket", b"\r\n")
        elif not complete and req.content_length is not None:
            head += (b"Content-Length: ", str(req.content_length).encode(), b"\r\n")
        elif not complete:
            head.append(b"Transfer-Encoding: chunked\r\n")
        elif body or req.has_body or req.method in (b"POST", b"PUT", b"PATCH"):
            head += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    def response_head(self, resp: Message, req: Message, request_id: str, *, framing: bytes, keep: bool,
                      upgrade: bool = False, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        parts, left_out = pass_headers(resp, RESPONSE_SET_BY_EDGE)
        version = b"HTTP/1.1 " if req.version == "1.1" else b"HTTP/1.0 "
        via = left_out.get(b"via")
        head = [version, str(resp.status).encode(), b" ", resp.reason or b"OK", b"\r\n", *parts,
                b"Fly-Request-Id: ", request_id.encode(), b"\r\nVia: ", via + b", 1.1 roost" if via else b"1.1 roost",
                b"\r\n"]
        for key, value in extra or ():
            head += (key, b": ", value, b"\r\n")
        if upgrade:
            head += (b"Connection: Upgrade\r\nUpgrade: ", left_out.get(b"upgrade") or b"websocket", b"\r\n")
        else:
            if framing == b"content-length" or (req.method == b"HEAD" and resp.content_length is not None):
                head += (b"Content-Length: ", str(resp.content_length).encode(), b"\r\n")
            elif framing == b"chunked":
                head.append(b"Transfer-Encoding: chunked\r\n")
            if not keep:
                head.append(b"Connection: close\r\n")
            elif req.version == "1.0":
                head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    def error_response(self, req: Message, request_id: str, status: int, code: str, message: str,
                       close: bool = False) -> tuple[bytes, bool]:
        """The edge's own answer (bytes to write, keep the connection) for a request it cannot forward."""
        app = self.app_of(req) or "-"
        self.metrics.count_request(app, "-", status)
        body = f"roost proxy: {message} ({code})\n".encode()
        keep = req.keep_alive and not close
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", str(len(body)).encode()),
                   (b"Fly-Request-Id", request_id.encode()), (b"X-Roost-Error", code.encode()),
                   (b"Via", b"1.1 roost")]
        if req.header(b"flyio-debug") is not None:
            headers.append((b"flyio-debug", json.dumps({"n": f"roost-edge-{self.s.region}", "nr": self.s.region},
                                                       separators=(",", ":")).encode()))
        if not keep:
            headers.append((b"Connection", b"close"))
        version = b"HTTP/1.1" if req.version == "1.1" else b"HTTP/1.0"
        head = encode_head(version + b" " + str(status).encode() + b" " + STATUS_TEXT.get(status, b"Error"), headers)
        return head + (b"" if req.method == b"HEAD" else body), keep

    @staticmethod
    def _too_large(app: str, limit: int) -> str:
        return (f"request body larger than {limit} bytes, the limit of app {app!r} "
                "(http_options.max_request_body_size)")

    def too_many_connections(self) -> bytes:
        return self._closing_answer(429, f"more than {self.s.max_conns_per_client} open connections from your "
                                         "address; close some or reuse them (keep-alive)")

    def protocol_error_response(self, exc: ProtocolError) -> bytes:
        """The answer to a request that could not be read (malformed, or over a limit); the connection closes."""
        return self._closing_answer(exc.status, str(exc))

    def _closing_answer(self, status: int, message: str) -> bytes:
        """The edge's answer before it has a request to answer (no app, no request id); then it closes."""
        self.metrics.count_request("-", "-", status)
        body = f"roost proxy: {message}\n".encode()
        return encode_head(b"HTTP/1.1 " + str(status).encode() + b" " + STATUS_TEXT.get(status, b"Error"),
                           [(b"Content-Type", b"text/plain; charset=utf-8"),
                            (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close"),
                            (b"Via", b"1.1 roost")]) + body

    async def _error(self, writer: asyncio.StreamWriter, req: Message, request_id: str, status: int, code: str,
                     message: str, close: bool = False) -> bool:
        data, keep = self.error_response(req, request_id, status, code, message, close)
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(data)
            await writer.drain()
        return keep

    async def _drain_body(self, req: Message, client: H1Reader) -> None:
        if req.has_body:
            with contextlib.suppress(ProtocolError, TimeoutError):
                while await client.body_chunk(req, self.s.body_timeout) is not None:
                    pass
