"""Upstream connections to machines, pooled per address for a few seconds (Fly pools for ~4 s)."""

from __future__ import annotations

import time
from collections import deque
from typing import Generic, Protocol, TypeVar

POOL_IDLE_SECONDS = 4.0
POOL_MAX_PER_TARGET = 64
CONNECT_TIMEOUT = 2.0  # the most a connect may take, to an address never measured or a slow one
CONNECT_FLOOR = 0.15  # the least: a connect slower than this on a healthy link is rare enough to retry
MAX_ADDRESSES = 65_536


class ConnectTimes:
    """How long to wait for a connect to each address: its smoothed connect time plus four deviations
    (TCP's retransmission timer, RFC 6298), between CONNECT_FLOOR and CONNECT_TIMEOUT. A host that stops
    answering (cut off, powered off) then costs a request about CONNECT_FLOOR before it is retried on
    another machine, not CONNECT_TIMEOUT; a far or slow link still gets the time it needs."""

    def __init__(self, fixed: float = 0.0) -> None:
        self.fixed = fixed  # > 0: this timeout for every connect (the operator's choice), measured or not
        self._rtt: dict[str, tuple[float, float]] = {}  # address -> (smoothed, deviation)

    def timeout(self, address: str) -> float:
        if self.fixed > 0:
            return self.fixed
        known = self._rtt.get(address)
        if known is None:
            return CONNECT_TIMEOUT
        smoothed, deviation = known
        return min(CONNECT_TIMEOUT, max(CONNECT_FLOOR, smoothed + 4 * deviation))

    def connected(self, address: str, seconds: float) -> None:
        known = self._rtt.get(address)
        if known is None:
            if len(self._rtt) >= MAX_ADDRESSES:
                del self._rtt[next(iter(self._rtt))]
            self._rtt[address] = (seconds, seconds / 2)
            return
        smoothed, deviation = known
        deviation = 0.75 * deviation + 0.25 * abs(smoothed - seconds)
        self._rtt[address] = (0.875 * smoothed + 0.125 * seconds, deviation)


class PooledConn(Protocol):
    """What IdlePool needs of a connection."""

    key: tuple[str, int]
    idle_since: float
    reused: bool
    aborted: bool  # closed by us because its host was declared unreachable
    retryable: bool  # the request it carries may be sent again elsewhere (idempotent, body kept)

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

    def abort_addresses(self, addresses: set[str], only_retryable: bool = False) -> int:
        """The control plane declared these addresses' host unreachable: drop idle connections to them and
        end requests still waiting for an answer there (a cut-off host may never answer or reset), so that
        they are retried elsewhere or fail now instead of at the upstream timeout. Answers already streaming
        (and WebSockets) are left alone: they are evidently still flowing. `only_retryable` (the host is
        only suspect): end just the requests that can be sent elsewhere, so nothing fails on a suspicion."""
        aborted = 0
        for key in [k for k in self.idle if k[0] in addresses]:
            for conn in self.idle.pop(key):
                conn.close()
        for address in addresses:
            waiting = self.awaiting.pop(address, set())
            for conn in waiting:
                if only_retryable and not conn.retryable:
                    self.awaiting.setdefault(address, set()).add(conn)
                    continue
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
