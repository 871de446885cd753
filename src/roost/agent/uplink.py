"""The agent's link to the control plane: registration and heartbeats on a thread of their own (busy
machines or a busy event loop cannot starve them), and a bounded outbox of state reports that is
retried until the server takes it — the agent keeps running its machines while the server is away."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("roost.agent.uplink")

OUTBOX_LIMIT = 10_000
BATCH = 200
FULL_SNAPSHOT_EVERY = 8  # heartbeats; the others carry no machine list


class Heartbeat(threading.Thread):
    def __init__(self, server_url: str, token: str, registration: dict[str, Any], interval: float,
                 snapshot: Callable[[], dict[str, Any]], on_destroy: Callable[[list[str]], None]) -> None:
        super().__init__(name="roost-heartbeat", daemon=True)
        self.url = server_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.registration = registration
        self.interval = interval
        self.snapshot = snapshot
        self.on_destroy = on_destroy
        self.stopping = threading.Event()
        self.registered = threading.Event()
        self.paused = threading.Event()  # drills: a host that stops beating without dying
        self.last_ok = 0.0

    def run(self) -> None:
        seq = 0
        timeout = httpx.Timeout(max(self.interval * 2, 0.5), connect=max(self.interval, 0.25))
        with httpx.Client(headers=self.headers, timeout=timeout, trust_env=False) as client:
            while not self.stopping.is_set():
                started = time.monotonic()
                if not self.paused.is_set():
                    try:
                        if not self.registered.is_set():
                            self._register(client)
                        body: dict[str, Any] = {"seq": seq}
                        if seq % FULL_SNAPSHOT_EVERY == 0:
                            body["machines"] = self.snapshot()
                        response = client.post(f"{self.url}/v1/hosts/{self.registration['id']}/heartbeat", json=body)
                        if response.status_code == 404:
                            self.registered.clear()
                        elif response.status_code == 200:
                            self.last_ok = time.time()
                            doomed = response.json().get("destroy") or []
                            if doomed:
                                self.on_destroy(list(doomed))
                        seq += 1
                    except (httpx.HTTPError, ValueError) as exc:
                        log.debug("heartbeat failed: %s", exc)
                self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _register(self, client: httpx.Client) -> None:
        response = client.post(f"{self.url}/v1/hosts", json=self.registration)
        if response.status_code == 200:
            self.registered.set()
            log.info("registered host %s with %s", self.registration["id"], self.url)
        elif 400 <= response.status_code < 500:
            log.error("registration refused: %s", response.text)
            time.sleep(min(5.0, self.interval * 8))

    def stop(self) -> None:
        self.stopping.set()


class Outbox:
    """Reports for the server, in order, bounded: the oldest are dropped first if the server is away for
    very long (the heartbeat's full machine list reconciles whatever was dropped)."""

    def __init__(self, server_url: str, token: str, host_id: str) -> None:
        self.url = f"{server_url.rstrip('/')}/v1/hosts/{host_id}/reports"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=OUTBOX_LIMIT)
        self._wake = asyncio.Event()
        self.sent = 0

    def put(self, report: dict[str, Any]) -> None:
        self.queue.append(report)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        async with httpx.AsyncClient(headers=self.headers, timeout=httpx.Timeout(5.0, connect=1.0),
                                     trust_env=False) as client:
            while not stop.is_set():
                if not self.queue:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    continue
                batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
                try:
                    response = await client.post(self.url, json={"reports": batch})
                    if response.status_code < 500 and response.status_code != 404:
                        for _ in batch:
                            if self.queue:
                                self.queue.popleft()
                        self.sent += len(batch)
                        delay = 0.1
                        continue
                except httpx.HTTPError:
                    pass
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(2.0, delay * 2)

    async def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
