"""Time as an input: the shells read the time and sleep through a clock, so that tests of timing rules
(failure detection, takeovers, autostop) run on a virtual clock in milliseconds, while production uses the
system's. A virtual clock only moves when a test advances it; sleepers wake in order of their deadlines."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (what records and heartbeats carry)."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM = SystemClock()


async def sleep_unless(clock: Clock, stop: asyncio.Event, seconds: float) -> None:
    """Sleep on `clock`, waking early when `stop` is set."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
