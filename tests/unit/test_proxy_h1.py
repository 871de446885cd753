"""Header handling for forwarding (proxy/h1.py): what passes, what the proxy replaces, what Connection names."""

from __future__ import annotations

import httptools

from roost.proxy.h1 import H1Reader, Message, pass_headers


def parsed(raw: bytes) -> Message:
    reader = H1Reader(None)  # type: ignore[arg-type]  # fed directly
    reader.parser.feed_data(raw)
    return reader.ready.popleft()


def test_hop_by_hop_and_replaced_headers_are_left_out_with_their_first_value():
    m = parsed(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nVia: 1.1 cdn\r\nVia: 1.1 other\r\nKeep-Alive: 5\r\n"
               b"Connection: keep-alive\r\nX-Custom: yes\r\n\r\n")
    parts, left_out = pass_headers(m, frozenset({b"via"}))
    assert b"".join(parts) == b"Host: a.localhost\r\nX-Custom: yes\r\n"
    assert left_out[b"via"] == b"1.1 cdn" and left_out[b"connection"] == b"keep-alive"
    assert m.header(b"x-custom") == b"yes" and m.header(b"missing") is None


def test_headers_named_by_connection_are_hop_by_hop():
    m = parsed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: X-Secret, close\r\n"
               b"X-Secret: 1\r\nX-Public: 2\r\n\r\n")
    parts, left_out = pass_headers(m, frozenset())
    assert b"".join(parts) == b"Host: a\r\nX-Public: 2\r\n"
    assert left_out[b"x-secret"] == b"1"


def test_framing_is_read_from_the_headers():
    m = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert m.content_length == 3 and not m.chunked and m.complete
    m = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert m.chunked and m.content_length is None
    try:
        parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
    except httptools.HttpParserError:
        pass
    else:
        raise AssertionError("an invalid Content-Length must not parse")
