"""Per-machine load as this proxy sees it: requests (or connections) in flight, and the peak since the
idle loop last looked. Waiters for a free slot are woken whenever a load drops."""

from __future__ import annotations

import asyncio
import contextlib
import time


class Loads:
    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.last_active: dict[str, float] = {}
        self._released: asyncio.Event | None = None

    def get(self, machine_id: str) -> int:
        return self.in_flight.get(machine_id, 0)

    def acquire(self, machine_id: str) -> None:
        n = self.in_flight.get(machine_id, 0) + 1
        self.in_flight[machine_id] = n
        if n > self.peak.get(machine_id, 0):
            self.peak[machine_id] = n
        self.last_active[machine_id] = time.monotonic()

    def release(self, machine_id: str) -> None:
        n = self.in_flight.get(machine_id, 0) - 1
        if n <= 0:
            self.in_flight.pop(machine_id, None)
        else:
            self.in_flight[machine_id] = n
        self.last_active[machine_id] = time.monotonic()
        if self._released is not None:
            self._released.set()
            self._released = None

    def take_peak(self, machine_id: str) -> int:
        """The highest load since the previous call (the idle loop's view), then start a new window."""
        value = self.peak.pop(machine_id, 0)
        current = self.in_flight.get(machine_id, 0)
        if current:
            self.peak[machine_id] = current
        return max(value, current)

    async def wait_release(self, timeout: float) -> None:
        if self._released is None:
            self._released = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), timeout)
