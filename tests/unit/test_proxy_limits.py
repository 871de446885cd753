"""No client can make the edge's parser buffer or wait without end (issue 14): every limit on a request
head is enforced while the bytes arrive, with the status a client is owed (400, 414, 431), and a head has
a deadline from its first byte that a client trickling bytes cannot push back."""

from __future__ import annotations

import asyncio

import pytest

from roost.proxy.h1 import MAX_HEAD_BYTES, MAX_HEADERS, H1Reader, ProtocolError


def reader() -> H1Reader:
    return H1Reader(None)  # type: ignore[arg-type]  # fed directly


def fed_until_refused(r: H1Reader, first: bytes, then: bytes, most: int) -> tuple[int, ProtocolError]:
    sent = len(first)
    try:
        r.feed(first)
        while sent < most:
            r.feed(then)
            sent += len(then)
    except ProtocolError as exc:
        return sent, exc
    raise AssertionError(f"{sent} bytes taken without a refusal")


def test_an_endless_header_line_is_refused_once_past_the_head_limit() -> None:
    sent, exc = fed_until_refused(reader(), b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ", b"a" * 4096, 100 << 20)
    assert exc.status == 431 and sent <= MAX_HEAD_BYTES + 4096


def test_endless_short_header_lines_are_refused_by_count_or_size() -> None:
    _, exc = fed_until_refused(reader(), b"GET / HTTP/1.1\r\n", b"X-A: 1\r\n", 10 << 20)
    assert exc.status == 431 and "header lines" in str(exc)


def test_a_whole_oversized_head_in_one_read_is_refused() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1100) for i in range(MAX_HEADERS // 2))
    with pytest.raises(ProtocolError) as err:
        reader().feed(head + b"\r\n")
    assert err.value.status == 431


def test_a_long_request_target_is_414() -> None:
    with pytest.raises(ProtocolError) as err:
        reader().feed(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert err.value.status == 414


def test_garbage_is_400() -> None:
    with pytest.raises(ProtocolError) as err:
        reader().feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    assert err.value.status == 400
    with pytest.raises(ProtocolError) as err:
        reader().feed(b"GET / HTTP/1.1\r\nContent-Length: ten\r\n\r\n")
    assert err.value.status == 400


def test_a_normal_head_under_the_limits_passes() -> None:
    r = reader()
    r.feed(b"GET /" + b"p" * 8000 + b" HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"v" * 40000 + b"\r\n\r\n")
    assert r.ready and r.ready[0].header(b"host") == b"a" and not r.in_head


async def test_a_trickled_head_times_out_from_its_first_byte() -> None:
    stream = asyncio.StreamReader()
    r = H1Reader(stream)
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def trickle() -> None:
        stream.feed_data(b"GET / HTTP/1.1\r\n")
        for _ in range(40):  # a header byte every 20 ms: each read comes well within the timeout
            await asyncio.sleep(0.02)
            stream.feed_data(b"X")

    feeder = asyncio.ensure_future(trickle())
    with pytest.raises(TimeoutError):
        await r.next_head(5.0, head_timeout=0.3)
    assert 0.25 < loop.time() - began < 0.6, "the deadline is the head's first byte + 0.3 s"
    feeder.cancel()


def test_connection_caps_count_per_address_and_free_on_release() -> None:
    from roost.proxy.forwarding import ClientCaps

    caps = ClientCaps(2)
    assert caps.admit("10.0.0.1") and caps.admit("10.0.0.1")
    assert not caps.admit("10.0.0.1") and caps.admit("10.0.0.2"), "one address's cap is not another's"
    caps.release("10.0.0.1")
    assert caps.admit("10.0.0.1")
    for _ in range(3):
        caps.release("10.0.0.1")
    assert "10.0.0.1" not in caps.open, "no entry left behind for a gone client"
