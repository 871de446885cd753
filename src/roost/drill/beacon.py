"""A drill tells the control plane what it is doing (started, fault, heal, finished with its report), for the
dashboard: from a thread of its own, with a short timeout, through a bounded queue, so that a control plane that
is slow or down (a kill-server drill) never delays the drill or fails it."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

TIMEOUT = 2.0


class Beacon:
    def __init__(self, api: Any, app: str, drill: str) -> None:
        self.api, self.path, self.drill = api, f"/v1/apps/{app}/drills", drill
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._send, name="drill-beacon", daemon=True)
        self._thread.start()

    def tell(self, event: str, at: float | None = None, **fields: Any) -> None:
        with contextlib.suppress(queue.Full):  # too far behind: the dashboard misses a mark, the drill goes on
            self._queue.put_nowait({"drill": self.drill, "event": event, "at": at or time.time(), **fields})

    def close(self, wait: float = 5.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=wait)
        self._thread.join(wait)

    def _send(self) -> None:
        http = getattr(self.api, "http", None)  # a client of the Machines API (tests may pass another kind)
        while (body := self._queue.get()) is not None:
            if http is not None:
                with contextlib.suppress(Exception):  # best effort: never the drill's failure
                    http.post(self.path, json=body, timeout=TIMEOUT)
