"""The watch feed hub: recent changes in memory, waiters woken on every publish.

Subscribers ask for everything after a revision. Recent changes come from a bounded ring; older ones
from the store's change log; older than the log keeps, the subscriber gets a reset (a full snapshot
at a revision) and continues from there, so a client that reconnects with its last revision misses
nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque

from roost.store.base import ChangeRecord


class WatchHub:
    def __init__(self, ring_size: int = 20000) -> None:
        self.ring: deque[ChangeRecord] = deque(maxlen=ring_size)
        self.revision = 0
        self._changed: asyncio.Future[None] | None = None

    def publish(self, records: list[ChangeRecord], revision: int) -> None:
        self.ring.extend(records)
        self.revision = max(self.revision, revision)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def covers(self, since: int) -> bool:
        """True if the ring alone holds every change after `since`."""
        if since >= self.revision:
            return True
        return bool(self.ring) and self.ring[0].rev <= since + 1

    def since(self, since: int, limit: int) -> list[ChangeRecord]:
        if since >= self.revision:
            return []
        out: list[ChangeRecord] = []
        # The ring is ordered; skip quickly from the right end when only the tail is wanted.
        start = max(0, len(self.ring) - (self.revision - since))
        for i in range(start, len(self.ring)):
            rec = self.ring[i]
            if rec.rev > since:
                out.append(rec)
                if len(out) >= limit:
                    break
        return out

    async def wait(self, since: int, timeout: float) -> bool:
        """Wait until the revision passes `since` (True) or the timeout ends (False)."""
        if self.revision > since:
            return True
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        except TimeoutError:
            return self.revision > since
        return self.revision > since
