"""A virtual clock: time moves only when a test advances it; sleepers wake in order of their deadlines."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    """A clock for tests: `await advance(s)` moves time forward, waking every sleeper whose time has come (in
    deadline order, letting the tasks they wake run before time moves on)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def settle(self) -> None:
        """Let every task that can run, run (without moving time)."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move time forward by `seconds`, `step` at a time, waking sleepers as their time comes."""
        end = self.now + seconds
        await self.settle()
        while self.now < end:
            self.now = min(end, self.now + step)
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
                await self.settle()
            await self.settle()
