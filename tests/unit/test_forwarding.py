"""What the edge writes (proxy/forwarding.py): a head with nothing to change is forwarded as its own bytes
with the edge's headers spliced in; anything hop-by-hop, or a header the edge sets or extends, and the head
is rebuilt, with the same meaning either way."""

from __future__ import annotations

from roost.proxy.forwarding import Heads, HttpSettings, response_framing
from roost.proxy.h1 import H1Parser, Message
from roost.proxy.metrics import Metrics


def parsed(data: bytes, response: bool = False) -> Message:
    parser = H1Parser(response=response)
    parser.feed(data)
    return parser.ready[0]


def heads() -> Heads:
    return Heads(HttpSettings(region="ams"), Metrics())


def test_a_plain_request_keeps_its_bytes_and_gets_the_edges_headers_at_the_end() -> None:
    raw = b"GET /a?b=1 HTTP/1.1\r\nHost: web.localhost\r\nuser-AGENT: curl\r\nAccept: */*\r\n\r\n"
    req = parsed(raw)
    assert req.raw_head == raw
    head = heads().request_head(req, 0, True, "rid", "203.0.113.7", 80)
    assert head.startswith(raw[:-2])  # the client's header names, case and order untouched
    assert head.endswith(b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
                         b"Fly-Forwarded-Port: 80\r\nFly-Client-IP: 203.0.113.7\r\nFly-Region: ams\r\n"
                         b"Fly-Request-Id: rid\r\nVia: 1.1 roost\r\n\r\n")


def test_headers_the_edge_sets_or_extends_are_rebuilt_not_duplicated() -> None:
    for extra, expect in ((b"X-Forwarded-For: 198.51.100.1\r\n", b"X-Forwarded-For: 198.51.100.1, 203.0.113.7"),
                          (b"Via: 1.0 cdn\r\n", b"Via: 1.0 cdn, 1.1 roost"),
                          (b"Fly-Client-IP: 1.2.3.4\r\n", b"Fly-Client-IP: 203.0.113.7"),
                          (b"connection: keep-alive, X-Secret\r\nX-Secret: s\r\n", b"Fly-Region: ams")):
        req = parsed(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n" + extra + b"\r\n")
        head = heads().request_head(req, 0, True, "rid", "203.0.113.7", 80)
        assert expect in head, (extra, head)
        assert head.lower().count(extra.split(b":")[0].lower() + b":") <= 1
        assert b"x-secret" not in head.lower() and b"connection:" not in head.lower()


def test_pipelined_requests_after_the_first_are_rebuilt_from_their_headers() -> None:
    parser = H1Parser()
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: web.localhost\r\n\r\nGET /2 HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
    first, second = parser.ready
    assert first.raw_head is not None and second.raw_head is None
    head = heads().request_head(second, 0, True, "rid", "203.0.113.7", 80)
    assert head.startswith(b"GET /2 HTTP/1.1\r\nHost: web.localhost\r\n") and b"Fly-Request-Id: rid" in head


def test_a_head_split_over_two_reads_is_rebuilt() -> None:
    parser = H1Parser()
    parser.feed(b"GET / HTTP/1.1\r\nHo")
    parser.feed(b"st: web.localhost\r\n\r\n")
    assert parser.ready[0].raw_head is None and parser.ready[0].header(b"host") == b"web.localhost"


def test_a_plain_answer_keeps_its_bytes() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    req, resp = parsed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), parsed(raw + b"hi", response=True)
    framing, keep = response_framing(req, resp, True)
    head = heads().response_head(resp, req, "rid", framing=framing, keep=keep)
    assert head == raw[:-2] + b"Fly-Request-Id: rid\r\nVia: 1.1 roost\r\n\r\n"


def test_an_answer_the_client_must_not_see_as_is_is_rebuilt() -> None:
    req = parsed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nhi",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nFly-Request-Id: forged\r\n\r\nhi",
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"):
        resp = parsed(raw, response=True)
        framing, keep = response_framing(req, resp, True)
        head = heads().response_head(resp, req, "rid", framing=framing, keep=keep)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"keep-alive: timeout" not in head.lower()
        assert b"forged" not in head and head.count(b"Fly-Request-Id") == 1
        assert (b"Connection: close" in head) == (not keep)
