"""Upstream connections to machines, pooled per address for a few seconds (Fly pools for ~4 s)."""

from __future__ import annotations

import time
from collections import deque
from typing import Generic, Protocol, TypeVar

POOL_IDLE_SECONDS = 4.0
POOL_MAX_PER_TARGET = 64
CONNECT_TIMEOUT = 2.0


class PooledConn(Protocol):
    """What IdlePool needs of a connection."""

    key: tuple[str, int]
    idle_since: float
    reused: bool
    aborted: bool  # closed by us because its host was declared unreachable

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=PooledConn)


class IdlePool(Generic[C]):
    """Idle connections per machine address (reused newest first, for POOL_IDLE_SECONDS), and the
    connections waiting for a response head, per address, so that a lost host's can be ended at once."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], deque[C]] = {}
        self.awaiting: dict[str, set[C]] = {}

    def take(self, host: str, port: int) -> C | None:
        idle = self.idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < POOL_IDLE_SECONDS:
                conn.reused = True
                return conn
            conn.close()
        return None

    def put(self, conn: C) -> None:
        idle = self.idle.setdefault(conn.key, deque())
        if conn.closed or len(idle) >= POOL_MAX_PER_TARGET:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def abort_addresses(self, addresses: set[str]) -> int:
        """The control plane declared these addresses' host unreachable: drop idle connections to them and
        end requests still waiting for an answer there (a cut-off host may never answer or reset), so that
        they are retried elsewhere or fail now instead of at the upstream timeout. Answers already streaming
        (and WebSockets) are left alone: they are evidently still flowing."""
        aborted = 0
        for key in [k for k in self.idle if k[0] in addresses]:
            for conn in self.idle.pop(key):
                conn.close()
        for address in addresses:
            for conn in self.awaiting.pop(address, set()):
                conn.aborted = True
                conn.close()
                aborted += 1
        return aborted

    def sweep(self) -> None:
        now = time.monotonic()
        for key, idle in list(self.idle.items()):
            while idle and (idle[0].closed or now - idle[0].idle_since >= POOL_IDLE_SECONDS):
                idle.popleft().close()
            if not idle:
                del self.idle[key]

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()
