"""Per-machine load as this proxy sees it: requests (or connections) in flight, how long they have waited,
the peak since the idle loop last looked, and what its answers were like (`scores`). Waiters for a free
slot are woken whenever a load drops."""

from __future__ import annotations

import asyncio
import contextlib
import time

from roost.balancer.scores import MachineScores


class Loads:
    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.last_active: dict[str, float] = {}
        self._awaiting: dict[str, tuple[int, float]] = {}  # requests waiting for an answer: count, sum of starts
        self.scores = MachineScores()
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

    def awaiting(self, machine_id: str, since: float) -> None:
        """A request sent there at `since` waits for its answer (tunnels and streaming answers don't)."""
        count, total = self._awaiting.get(machine_id, (0, 0.0))
        self._awaiting[machine_id] = (count + 1, total + since)

    def answered(self, machine_id: str, since: float) -> None:
        """The request sent at `since` got its answer (or gave up waiting)."""
        count, total = self._awaiting.get(machine_id, (0, 0.0))
        if count <= 1:
            self._awaiting.pop(machine_id, None)
        else:
            self._awaiting[machine_id] = (count - 1, total - since)
        if self._released is not None:
            self._released.set()
            self._released = None

    def waited(self, machine_id: str, now: float) -> float:
        """How long the machine's requests waiting for an answer have waited so far, on average (0: none)."""
        count, total = self._awaiting.get(machine_id, (0, 0.0))
        return max(0.0, now - total / count) if count else 0.0

    def cost(self, machine_id: str, now: float) -> float:
        """The balancer's cost of one more request there (see roost.balancer.scores)."""
        return self.scores.cost(machine_id, self.in_flight.get(machine_id, 0), self.waited(machine_id, now), now)

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
