"""What the edge changes in what it forwards, and its own answers: pure functions of the messages.

The request head a machine gets (the client's headers minus hop-by-hop ones, plus Fly's: X-Forwarded-*,
Fly-Client-IP, Fly-Region, Fly-Request-Id, Via, fly-replay-src), the response head a client gets, how a
response body is framed to the client, the edge's own error answers (Fly's codes in X-Roost-Error), and
`fly-replay` parsing. No sockets, no clock but the one request ids are made from.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roost.proxy.h1 import Message, ProtocolError, encode_head, pass_headers
from roost.proxy.metrics import Metrics
from roost.proxy.table import MachineRoute

if TYPE_CHECKING:
    from roost.proxy.certstore import CertStore

_ids = itertools.count()
_NODE = os.urandom(3).hex()
# Headers the edge sets itself (any the client or machine sent are replaced).
REQUEST_SET_BY_EDGE = frozenset({b"expect", b"x-forwarded-for", b"via", b"fly-client-ip", b"fly-region",
                                 b"fly-request-id", b"x-forwarded-proto", b"x-forwarded-port", b"fly-forwarded-port",
                                 b"fly-replay-src"})
RESPONSE_SET_BY_EDGE = frozenset({b"via", b"fly-request-id", b"flyio-debug"})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
STATUS_TEXT = {404: b"Not Found", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
               400: b"Bad Request", 413: b"Payload Too Large", 408: b"Request Timeout", 414: b"URI Too Long",
               431: b"Request Header Fields Too Large", 429: b"Too Many Requests"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
ACME_PREFIX = b"/.well-known/acme-challenge/"
# A head that has none of these headers is forwarded as its own bytes with the edge's headers spliced in
# before its end (no re-serialising); any of them (hop-by-hop, or one the edge sets or extends) and it is
# rebuilt header by header.
_REQUEST_REBUILT = re.compile(rb"\r\n(?:connection|keep-alive|proxy-[^:\r]*|te|trailer|transfer-encoding|upgrade|expect"
                              rb"|x-forwarded-[^:\r]*|via|fly-[^:\r]*)[ \t]*:", re.I)
_RESPONSE_REBUILT = re.compile(rb"\r\n(?:keep-alive|proxy-[^:\r]*|te|trailer|upgrade|via|fly-request-id|flyio-debug"
                               rb"|connection(?![ \t]*:[ \t]*keep-alive[ \t]*\r\n)"
                               rb"|transfer-encoding(?![ \t]*:[ \t]*chunked[ \t]*\r\n))[ \t]*:", re.I)
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


@dataclass
class HttpSettings:
    domain: str = "localhost"
    region: str = "ams"
    buffer_limit: int = 10 * 1024 * 1024  # bodies up to this are buffered for retries
    body_budget: int = 128 * 1024 * 1024  # ... as long as all the buffered bodies together stay under this
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
    connect_timeout: float = 0.0  # > 0: fixed; 0: per address, from measured connect times
    avoid_suspect_hosts: bool = True  # a host the control plane suspects gets traffic only if nothing else can


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

    @classmethod
    def forced(cls, value: str) -> Replay:
        """Fly-Force-Region: that region or nothing (a replay to it, without the fallback of a preference)."""
        return cls(regions=tuple(r.strip() for r in value.split(",") if r.strip()))

    @property
    def target(self) -> str:
        return self.instance or ",".join(self.regions)


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


class Heads:
    """The heads the edge writes, for one edge process (its region, domain and request-id prefix)."""

    def __init__(self, settings: HttpSettings, metrics: Metrics) -> None:
        self.s = settings
        self.metrics = metrics
        self.suffix = ("." + settings.domain).encode()
        self._region_b = settings.region.encode()
        self._apps_by_host: dict[bytes, str | None] = {}
        self._added_by_client: dict[tuple[str, int], bytes] = {}
        self.custom_hosts: dict[bytes, str] = {}  # an app's own hostnames (those it has certificates for)
        self.challenges: dict[bytes, bytes] = {}  # ACME http-01 token -> key authorization
        self.tls_ports: frozenset[int] = frozenset()  # local ports where the edge terminated TLS
        # Request ids: unique per edge process (start time, random node) plus a counter; cheap to make.
        self._id_prefix = f"{time.time_ns():x}"
        self._id_suffix = f"{_NODE}-{settings.region}"

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(_ids):x}{self._id_suffix}"  # prefix and suffix are fixed-length

    # ---- Host: APP.DOMAIN ----

    def app_of(self, req: Message) -> str | None:
        host = req.header(b"host")
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

    def take_certificates(self, certs: CertStore) -> None:
        """The apps' hostnames (routed to their apps) and the ACME challenges this edge answers."""
        self.custom_hosts = {name.encode(): app for name, app in certs.apps.items()}
        self.challenges = {token.encode(): answer.encode() for token, answer in certs.challenges.items()}
        self._apps_by_host.clear()

    def acme_answer(self, req: Message, request_id: str) -> tuple[bytes, bool] | None:
        """The answer to an ACME CA's http-01 check (RFC 8555 8.3) for an order of the control plane; None if
        the token is not one of ours (the app may be answering its own)."""
        answer = self.challenges.get(req.url[len(ACME_PREFIX):].split(b"?", 1)[0])
        if answer is None:
            return None
        self.metrics.count_request(self.app_of(req) or "-", "-", 200)
        keep = req.keep_alive
        head = encode_head(b"HTTP/1.1 200 OK", [(b"Content-Type", b"application/octet-stream"),
                                               (b"Content-Length", str(len(answer)).encode()),
                                               (b"Fly-Request-Id", request_id.encode()), (b"Via", b"1.1 roost"),
                                               *([] if keep else [(b"Connection", b"close")])])
        return head + (b"" if req.method == b"HEAD" else answer), keep

    def _parse_host(self, host: bytes) -> str | None:
        name = host.split(b":", 1)[0].lower().rstrip(b".")
        custom = self.custom_hosts.get(name)
        if custom is not None:
            return custom
        if name.endswith(self.suffix):
            name = name[: -len(self.suffix)]
        elif b"." in name:
            return None
        return name.decode("latin-1") or None

    # ---- forwarded heads ----

    def _added(self, client_ip: str, port: int) -> bytes:
        """The headers the edge adds to every request from this client and port, up to the request id."""
        key = (client_ip, port)
        added = self._added_by_client.get(key)
        if added is None:
            if len(self._added_by_client) >= 4096:  # bounded: one entry per client address and port
                self._added_by_client.clear()
            ip = client_ip.encode()
            added = self._added_by_client[key] = (
                b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\nFly-Forwarded-Port: %d\r\n"
                b"Fly-Client-IP: %s\r\nFly-Region: %s\r\nFly-Request-Id: "
                % (ip, self.proto(port), port, port, ip, self._region_b))
        return added

    def proto(self, port: int) -> bytes:
        return b"https" if port in self.tls_ports else b"http"

    def request_head(self, req: Message, body_size: int, complete: bool, request_id: str, client_ip: str,
                     port: int, replay: Replay | None = None) -> bytes:
        raw = req.raw_head
        if (raw is not None and complete and replay is None and not req.upgrade and req.version == "1.1"
                and (req.content_length is not None or req.method not in _BODY_METHODS)
                and _REQUEST_REBUILT.search(raw) is None):
            return b"%s%s%s\r\nVia: 1.1 roost\r\n\r\n" % (raw[:-2], self._added(client_ip, port), request_id.encode())
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
                 b"\r\nX-Forwarded-Proto: ", self.proto(port), b"\r\nX-Forwarded-Port: ", port_b,
                 b"\r\nFly-Forwarded-Port: ", port_b,
                 b"\r\nFly-Client-IP: ", ip, b"\r\nFly-Region: ", self._region_b, b"\r\nFly-Request-Id: ",
                 request_id.encode(), b"\r\nVia: ", via + b", 1.1 roost" if via else b"1.1 roost", b"\r\n")
        if req.upgrade:
            head += (b"Connection: Upgrade\r\nUpgrade: ", left_out.get(b"upgrade") or b"websocket", b"\r\n")
        elif not complete and req.content_length is not None:
            head += (b"Content-Length: ", str(req.content_length).encode(), b"\r\n")
        elif not complete:
            head.append(b"Transfer-Encoding: chunked\r\n")
        elif body_size or req.has_body or req.method in (b"POST", b"PUT", b"PATCH"):
            head += (b"Content-Length: ", str(body_size).encode(), b"\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    def response_head(self, resp: Message, req: Message, request_id: str, *, framing: bytes, keep: bool,
                      upgrade: bool = False, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        raw = resp.raw_head
        if (raw is not None and keep and not upgrade and req.version == "1.1" and raw.startswith(b"HTTP/1.1 ")
                and (framing == b"content-length" or framing == b"chunked")
                and _RESPONSE_REBUILT.search(raw) is None):
            added = b"".join(b"%s: %s\r\n" % pair for pair in extra) if extra else b""
            return b"%sFly-Request-Id: %s\r\nVia: 1.1 roost\r\n%s\r\n" % (raw[:-2], request_id.encode(), added)
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

    def debug_header(self, req: Message, m: MachineRoute, client_ip: str,
                     retried: int = 0) -> list[tuple[bytes, bytes]] | None:
        """`flyio-debug: doit` asks, as on Fly, which edge and which machine served the request (and, ours,
        how many other machines it was tried on first: `rt`)."""
        if req.header(b"flyio-debug") is None:
            return None
        info: dict[str, object] = {"n": f"roost-edge-{self.s.region}", "nr": self.s.region, "ra": client_ip,
                                   "sr": m.region, "sid": m.id}
        if retried:
            info["rt"] = retried
        return [(b"flyio-debug", json.dumps(info, separators=(",", ":")).encode())]

    # ---- the edge's own answers ----

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
    def too_large(app: str, limit: int) -> str:
        return (f"request body larger than {limit} bytes, the limit of app {app!r} "
                "(http_options.max_request_body_size)")

    def too_many_connections(self) -> bytes:
        return self.closing_answer(429, f"more than {self.s.max_conns_per_client} open connections from your "
                                        "address; close some or reuse them (keep-alive)")

    def protocol_error_response(self, exc: ProtocolError) -> bytes:
        """The answer to a request that could not be read (malformed, or over a limit); the connection closes."""
        return self.closing_answer(exc.status, str(exc))

    def closing_answer(self, status: int, message: str) -> bytes:
        """The edge's answer before it has a request to answer (no app, no request id); then it closes."""
        self.metrics.count_request("-", "-", status)
        body = f"roost proxy: {message}\n".encode()
        return encode_head(b"HTTP/1.1 " + str(status).encode() + b" " + STATUS_TEXT.get(status, b"Error"),
                           [(b"Content-Type", b"text/plain; charset=utf-8"),
                            (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close"),
                            (b"Via", b"1.1 roost")]) + body
