"""HTTP/1.x messages, with httptools (llhttp) doing the parsing.

`H1Parser` is sans-IO: bytes in, messages out (a head, then its body as pieces, already de-chunked), with
every head bounded (size, header count, target length). `H1Reader` drives one over an asyncio stream for
the few clients that read one answer at a time (the load generator, agent calls); it reads only as much as
its consumer asks for, so a slow reader applies backpressure to the peer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import httptools

READ_SIZE = 65536
# What one message head may hold: bounded so that no peer can make the edge buffer or parse without end.
MAX_HEAD_BYTES = 64 * 1024  # request or status line and every header (431 past it)
MAX_HEADERS = 128  # header lines (431 past it)
MAX_URL_BYTES = 16 * 1024  # the request target (414 past it)


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x, or closed in the middle of a message. `status` is the
    answer a client gets for it when one can still be sent (400, 414, 431); 0 when none can."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Message:
    __slots__ = ("body", "body_bytes", "chunked", "complete", "content_length", "headers", "keep_alive",
                 "method", "names", "raw_from", "raw_head", "reason", "status", "upgrade", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.names: list[bytes] = []  # the headers' names in lower case, lowered once the head is complete
        self.method = b""
        self.status = 0
        self.reason = b""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.chunked = False
        self.content_length: int | None = None
        self.body: deque[bytes] = deque()
        self.body_bytes = 0
        self.complete = False
        self.raw_head: bytes | None = None  # the head's bytes as received, when they came in one read
        self.raw_from = -1

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case)."""
        try:
            return self.headers[self.names.index(name)][1]
        except ValueError:
            return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class H1Parser:
    """Messages from bytes fed in: heads queue in `ready` (pipelined ones behind the first); a message's
    body pieces collect in its own `body` until taken."""

    def __init__(self, *, response: bool = False, head_request: bool = False) -> None:
        self.response = response
        self.head_request = head_request  # a response to HEAD has no body whatever its headers say
        self.parser = httptools.HttpResponseParser(self) if response else httptools.HttpRequestParser(self)
        self.ready: deque[Message] = deque()
        self.current: Message | None = None
        self.eof = False
        self.started = False  # any byte of a message seen (for "reset before any response byte")
        self.upgraded_tail: bytes | None = None
        self.now: Callable[[], float] = time.monotonic
        self.in_head = False  # between a message's first byte and the end of its head
        self.head_began = 0.0  # when the current head's first byte came (`now`)
        self._head_exact = 0  # bytes of the current head as the parser reports them
        self._feeds = 0  # reads fed so far
        self._data = b""  # the read being parsed
        self._between = True  # the read being parsed began between two messages
        self._head_fed = 0  # bytes fed while the head stayed incomplete (catches an endless header line)

    # ---- llhttp callbacks (each runs per message or per header: kept to a few operations) ----

    def on_message_begin(self) -> None:
        m = self.current = Message()
        # Its head starts at the first byte of this read when nothing of another message came before in it.
        m.raw_from = self._feeds if self._between else -1
        self._between = False
        self.started = True
        self.in_head = True
        self.head_began = self.now()
        self._head_exact = self._head_fed = 0

    def on_url(self, url: bytes) -> None:
        m = self.current
        assert m is not None
        m.url += url
        if len(m.url) > MAX_URL_BYTES:
            raise ProtocolError(f"request target longer than {MAX_URL_BYTES} bytes", 414)
        self._head_exact += len(url)

    def on_status(self, status: bytes) -> None:
        assert self.current is not None
        self.current.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.current.headers  # type: ignore[union-attr]
        headers.append((name, value))
        self._head_exact += len(name) + len(value) + 4
        if len(headers) > MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} header lines", 431)

    def on_headers_complete(self) -> None:
        m = self.current
        assert m is not None
        self.in_head = False
        if self._head_exact > MAX_HEAD_BYTES:
            raise ProtocolError(f"request head larger than {MAX_HEAD_BYTES} bytes", 431)
        names = m.names = [name.lower() for name, _ in m.headers]
        p = self.parser
        m.version = p.get_http_version()
        m.keep_alive = p.should_keep_alive()
        m.upgrade = p.should_upgrade()
        if self.response:
            m.status = p.get_status_code()  # type: ignore[union-attr]
        else:
            m.method = p.get_method()  # type: ignore[union-attr]
        if b"transfer-encoding" in names or b"content-length" in names:
            for lower, (_, value) in zip(names, m.headers, strict=True):
                if lower == b"transfer-encoding" and b"chunked" in value.lower():
                    m.chunked = True
                elif lower == b"content-length":
                    try:
                        m.content_length = int(value)
                    except ValueError:
                        raise ProtocolError("invalid Content-Length", 400) from None
        if m.raw_from == self._feeds:  # the whole head is at the start of this read: keep its bytes
            data = self._data
            end = data.find(b"\r\n\r\n")
            if end > 0 and data[:2] != b"\r\n":
                m.raw_head = data[:end + 4]
        if self.response and (self.head_request or m.status in (204, 304) or 100 <= m.status < 200):
            m.complete = True
        self.ready.append(m)

    def on_body(self, body: bytes) -> None:
        m = self.current
        assert m is not None
        if not m.complete:
            m.body.append(body)
            m.body_bytes += len(body)

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.current.complete = True

    def feed(self, data: bytes) -> None:
        """Parse `data`; bytes after an upgrade request's head are kept in `upgraded_tail` for the tunnel."""
        self._feeds += 1
        self._data = data
        current = self.current
        self._between = current is None or current.complete
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            self.upgraded_tail = data[offset:]
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, ProtocolError):
                raise exc.__context__ from None
            raise ProtocolError(f"malformed HTTP: {exc}", 400) from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(f"malformed HTTP: {exc}", 400) from None
        if self.in_head:  # the head goes on past this read: all of it counts (the parser buffers it)
            self._head_fed += len(data)
            if self._head_fed > MAX_HEAD_BYTES:
                raise ProtocolError(f"request head larger than {MAX_HEAD_BYTES} bytes", 431)


class H1Reader(H1Parser):
    """An H1Parser fed from an asyncio stream as its consumer asks."""

    def __init__(self, reader: asyncio.StreamReader, *, response: bool = False, head_request: bool = False) -> None:
        super().__init__(response=response, head_request=head_request)
        self.reader = reader

    async def _fill(self, timeout: float | None) -> None:
        try:
            if timeout is None:
                data = await self.reader.read(READ_SIZE)
            else:
                async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                    data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            raise  # (an OSError too, but not a lost connection)
        except (ConnectionError, OSError) as exc:
            raise ProtocolError(f"connection lost: {exc}") from None
        if not data:
            self.eof = True
            return
        self.feed(data)

    async def next_head(self, timeout: float | None, head_timeout: float | None = None) -> Message | None:
        """The next message's head, or None at a clean end of stream. Waits up to `timeout` for its first
        byte; from that byte the whole head has `head_timeout` (a deadline that a peer trickling its head
        byte by byte cannot push back)."""
        while not self.ready:
            if self.eof or self.upgraded_tail is not None:
                if self.current is not None and not self.current.complete and self.started:
                    raise ProtocolError("connection closed in the middle of a message head")
                return None
            wait = timeout
            if self.in_head and head_timeout is not None:
                wait = self.head_began + head_timeout - self.now()
                if wait <= 0:
                    raise TimeoutError("request head not complete in time")
            await self._fill(wait)
        return self.ready.popleft()

    async def body_chunk(self, m: Message, timeout: float | None) -> bytes | None:
        """The next piece of `m`'s body, or None when the body is complete."""
        while not m.body:
            if m.complete:
                return None
            if self.eof:
                if self.response and not m.chunked and m.content_length is None:
                    m.complete = True  # delimited by the end of the connection
                    return None
                raise ProtocolError("connection closed in the middle of a body")
            await self._fill(timeout)
        return m.body.popleft()

    async def read_body(self, m: Message, limit: int, timeout: float | None) -> tuple[bytes, bool]:
        """Up to `limit` bytes of body: (data, complete). Stops early once past the limit."""
        parts: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = await self.body_chunk(m, timeout)
            if chunk is None:
                return b"".join(parts), True
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts), False


HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
              b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"content-length"})


def pass_headers(m: Message, replaced: frozenset[bytes]) -> tuple[list[bytes], dict[bytes, bytes]]:
    """One pass over a message's headers for forwarding: the header lines to pass on, as parts of a head
    (minus hop-by-hop ones, any the Connection header names, and `replaced`, which the proxy sets itself),
    and the first value of each header left out, by lower-case name."""
    drop = _DROP.get(replaced)
    if drop is None:
        drop = _DROP[replaced] = HOP_BY_HOP | replaced
    parts: list[bytes] = []
    left_out: dict[bytes, bytes] = {}
    for lower, (key, value) in zip(m.names, m.headers, strict=True):
        if lower in drop:
            if lower not in left_out:
                left_out[lower] = value
            continue
        parts += (key, b": ", value, b"\r\n")
    connection = left_out.get(b"connection")
    if connection is not None and (connection.lower() not in (b"close", b"keep-alive", b"upgrade")
                                   or m.names.count(b"connection") > 1):
        named = {v.strip().lower() for value in (v for n, (_, v) in zip(m.names, m.headers, strict=True)
                                                  if n == b"connection") for v in value.split(b",")}
        named -= drop | {b"close"}
        if named:  # rare: the Connection header names end-to-end-looking headers that are hop-by-hop here
            parts = []
            for lower, (key, value) in zip(m.names, m.headers, strict=True):
                if lower in named:
                    left_out.setdefault(lower, value)
                elif lower not in drop:
                    parts += (key, b": ", value, b"\r\n")
    return parts, left_out


_DROP: dict[frozenset[bytes], frozenset[bytes]] = {}


def encode_head(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    parts = [first_line, b"\r\n"]
    for key, value in headers:
        parts += [key, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
