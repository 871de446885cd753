"""The agent's link to the control plane: registration and heartbeats on a thread of their own (busy
machines or a busy event loop cannot starve them), the lease that fences a cut-off host, and a bounded
outbox of state reports that is retried until the server takes it — the agent keeps running its machines
while the server is away.

All outgoing connections leave from the host's own address, so that cutting a host off (firewall rules
on its address, as drills do) cuts exactly what it would cut for a real host.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from roost.clock import SYSTEM, Clock
from roost.detector.fencing import LeaseConfig, has_contact, must_fence
from roost.tls import Trust

log = logging.getLogger("roost.agent.uplink")

OUTBOX_LIMIT = 10_000
BATCH = 200
FULL_SNAPSHOT_EVERY = 8  # heartbeats; the others carry no machine list
HEARTBEAT_TIMEOUT = 2.0
REGISTER_TIMEOUT = 10.0


class Heartbeat(threading.Thread):
    def __init__(self, server_url: str, token: str, registration: dict[str, Any], interval: float,
                 snapshot: Callable[[], dict[str, Any]], on_reply: Callable[[dict[str, Any]], None],
                 fence: Callable[[list[str]], None], local_address: str | None = None,
                 alive: Callable[[], None] = lambda: None, clock: Clock = SYSTEM, trust: Trust | None = None,
                 keeper: Callable[[float, list[str]], None] | None = None) -> None:
        super().__init__(name="roost-heartbeat", daemon=True)
        self.keeper = keeper  # told (lease end, watched machines) every tick: see agent/keeper.py
        self.trust = trust or Trust()
        self.clock = clock
        self.alive = alive  # called every beat: leaves a "last alive" stamp a restarted agent reads
        self.url = server_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.registration = registration
        self.interval = interval
        self.snapshot = snapshot
        self.on_reply = on_reply
        self.fence = fence
        self.local_address = local_address
        self.stopping = threading.Event()
        self.registered = threading.Event()
        self.paused = threading.Event()  # drills: a host that stops beating without dying
        self.last_ok = 0.0
        self.status: dict[str, Any] = {}  # more to say with every beat (e.g. the WireGuard mesh applied)
        # The lease: what the server last told us, and when we last had contact (monotonic clock).
        self.lease = LeaseConfig()
        self.peers: list[dict[str, str]] = []
        self.watched: list[str] = []
        self.last_contact = clock.monotonic()
        self.last_server_ok = clock.monotonic()
        self.fenced: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="roost-peer-probe")

    def _client(self, timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(headers=self.headers, timeout=timeout, trust_env=False,
                            transport=self.trust.transport(self.local_address))

    def run(self) -> None:
        # The lease is kept by two more threads, so that a slow heartbeat (a connect timing out on a cut
        # network) never delays fencing: one probes the peers while the server is quiet, one checks the
        # lease every 50 ms.
        threading.Thread(target=self._probe_peers_loop, name="roost-peers", daemon=True).start()
        threading.Thread(target=self._watchdog_loop, name="roost-lease", daemon=True).start()
        seq = 0
        # Long enough for a new TLS connection across a continent (three round trips of up to 300 ms): a
        # heartbeat cut at 0.25 s never reached a server in another region. Fencing does not wait on it.
        timeout = httpx.Timeout(max(self.interval * 4, HEARTBEAT_TIMEOUT))
        with self._client(timeout) as client:
            while not self.stopping.is_set():
                started = self.clock.monotonic()
                self.alive()
                if not self.paused.is_set() and self._beat(client, seq):
                    self.contact()
                seq += 1
                self.stopping.wait(max(0.0, self.interval - (self.clock.monotonic() - started)))
        self._pool.shutdown(wait=False)

    def _probe_peers_loop(self) -> None:
        with self._client(httpx.Timeout(self.lease.probe_timeout)) as client:
            while not self.stopping.is_set():
                started = self.clock.monotonic()
                peers = self.peers[:16]
                if peers and started - self.last_server_ok > self.interval * 1.5:
                    futures = [self._pool.submit(self._probe, client, p["agent_url"], self.lease.probe_timeout)
                               for p in peers]
                    reachable = sum(1 for f in futures if f.result())
                    if has_contact(False, reachable, len(peers)):
                        self.last_contact = max(self.last_contact, started)
                self.stopping.wait(max(0.0, self.interval - (self.clock.monotonic() - started)))

    def contact(self) -> None:
        """The control plane answered: the lease starts again, and nothing stays fenced."""
        self.last_server_ok = self.clock.monotonic()
        self.last_contact = self.last_server_ok
        self.fenced.clear()

    def apply_lease(self, seconds: float, probe_timeout: float | None = None) -> None:
        """The timings the control plane sets for the fleet (`roost server --lease/--peer-probe-timeout`)."""
        self.lease = LeaseConfig(lease=seconds, margin=self.lease.margin,
                                 probe_timeout=self.lease.probe_timeout if probe_timeout is None else probe_timeout)

    def check_lease(self) -> list[str]:
        """Fence the watched machines once the lease has run out (each once); returns those fenced now."""
        now = self.clock.monotonic()
        to_fence = [m for m in self.watched if m not in self.fenced]
        if not to_fence or not must_fence(now, self.last_contact, self.lease, len(self.peers), len(to_fence)):
            return []
        log.warning("no contact with the control plane or most peers for %.2fs (lease %.1fs): fencing %s",
                    now - self.last_contact, self.lease.lease, ", ".join(to_fence))
        self.fenced.update(to_fence)
        self.fence(to_fence)
        return to_fence

    def _watchdog_loop(self) -> None:
        while not self.stopping.wait(0.05):
            self.check_lease()
            if self.keeper is not None:
                # The host's fence keeper fences at the same moment if this process cannot (frozen, crashed).
                watched = [m for m in self.watched if m not in self.fenced] if self.peers else []
                with contextlib.suppress(Exception):
                    self.keeper(self.last_contact + self.lease.lease, watched)

    def _beat(self, client: httpx.Client, seq: int) -> bool:
        try:
            if not self.registered.is_set():
                self._register(client)
            # The watched list we act on: the server takes over only machines whose host knew to fence them.
            body: dict[str, Any] = {**self.status, "seq": seq, "watched": list(self.watched)}
            if seq % FULL_SNAPSHOT_EVERY == 0:
                body["machines"] = self.snapshot()
            response = client.post(f"{self.url}/v1/hosts/{self.registration['id']}/heartbeat", json=body)
            if response.status_code == 404:
                self.registered.clear()
                return False
            if response.status_code != 200:
                return False
            reply = response.json()
            self.last_ok = time.time()
            if isinstance(reply.get("peers"), list):
                self.peers = reply["peers"]
            if isinstance(reply.get("watched"), list):
                self.watched = reply["watched"]
            if isinstance(reply.get("lease"), int | float) and reply["lease"] > 0:
                probe = reply.get("peer_probe_timeout")
                self.apply_lease(float(reply["lease"]),
                                 float(probe) if isinstance(probe, int | float) and 0 < probe <= 30 else None)
            self.on_reply(reply)
            return True
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("heartbeat failed: %s", exc)
            return False

    @staticmethod
    def _probe(client: httpx.Client, url: str, timeout: float) -> bool:
        try:
            return client.get(f"{url}/healthz", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def _register(self, client: httpx.Client) -> None:
        # its clock, so that a host whose clock is far off is told so at once (its records and events carry times)
        response = client.post(f"{self.url}/v1/hosts", json={**self.registration, "time": time.time()},
                               timeout=REGISTER_TIMEOUT)  # the control plane calls this host back meanwhile
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

    def __init__(self, server_url: str, token: str, host_id: str, local_address: str | None = None,
                 trust: Trust | None = None) -> None:
        self.url = f"{server_url.rstrip('/')}/v1/hosts/{host_id}/reports"
        self.trust = trust or Trust()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.local_address = local_address
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=OUTBOX_LIMIT)
        self._wake = asyncio.Event()
        self.sent = 0

    def put(self, report: dict[str, Any]) -> None:
        self.queue.append(report)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        transport = self.trust.async_transport(self.local_address)
        async with httpx.AsyncClient(headers=self.headers, timeout=httpx.Timeout(5.0, connect=1.0),
                                     trust_env=False, transport=transport) as client:
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
