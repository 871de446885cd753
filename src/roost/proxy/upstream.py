"""Upstream connections to machines, pooled per address for a few seconds (Fly pools for ~4 s)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque

POOL_IDLE_SECONDS = 4.0
POOL_MAX_PER_TARGET = 64
CONNECT_TIMEOUT = 2.0


class Upstream:
    __slots__ = ("aborted", "idle_since", "key", "reader", "reused", "writer")

    def __init__(self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.idle_since = 0.0
        self.aborted = False  # closed by us because its host was declared unreachable

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Pool:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], deque[Upstream]] = {}
        # Connections with a request sent and no response head yet, per machine address.
        self.awaiting: dict[str, set[Upstream]] = {}

    def abort_addresses(self, addresses: set[str]) -> int:
        """The control plane declared these addresses' host unreachable: drop idle connections to them and
        end requests still waiting for an answer there (a cut-off host may never answer or reset), so that
        they are retried elsewhere or fail now instead of at the upstream timeout. Answers already streaming
        (and WebSockets) are left alone: they are evidently still flowing."""
        aborted = 0
        for key in [k for k in self._idle if k[0] in addresses]:
            for conn in self._idle.pop(key):
                conn.close()
        for address in addresses:
            for conn in self.awaiting.pop(address, set()):
                conn.aborted = True
                conn.close()
                aborted += 1
        return aborted

    async def get(self, host: str, port: int) -> Upstream:
        key = (host, port)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < POOL_IDLE_SECONDS and not conn.reader.at_eof() \
                    and not conn.writer.is_closing():
                conn.reused = True
                return conn
            conn.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Upstream(key, reader, writer)

    def put(self, conn: Upstream) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= POOL_MAX_PER_TARGET or conn.writer.is_closing():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def drop(self, host: str, port: int) -> None:
        for conn in self._idle.pop((host, port), ()):
            conn.close()

    def sweep(self) -> None:
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            while idle and now - idle[0].idle_since >= POOL_IDLE_SECONDS:
                idle.popleft().close()
            if not idle:
                del self._idle[key]

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
