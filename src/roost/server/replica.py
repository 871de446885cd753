"""One of several `roost server` replicas on one PostgreSQL (issue 18).

- **Leadership.** Every replica asks the store for the lease every `renew_every`; the holder leads (the
  store's lease; `detector/leadership.py` judges how long it may act on it). The leader alone writes (each
  commit fenced with its term) and runs the singletons: the failure detector and takeovers, compaction,
  certificate renewals. Losing the lease stops them.
- **Following.** A follower applies the leader's commits from the store's delta (woken by the leader's
  NOTIFY, polled as a floor) and publishes them to its own watchers; before it answers a read it catches up
  with the database, so a caller reads its own writes whichever replica it asks.
- **Forwarding.** A follower hands every write (anything but GET/HEAD, and WebSockets) to the leader and
  relays the answer; with no leader yet, 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from roost.detector.leadership import NAME, LeaderConfig, Leadership
from roost.server.state import ClusterState
from roost.store.base import StoreUnavailable
from roost.tasks import spawn
from roost.tls import Trust

log = logging.getLogger("roost.server.replica")

FOLLOW_EVERY = 0.5  # a follower's poll when no NOTIFY comes (PostgreSQL's NOTIFY wakes it at each commit)
FORWARD_TIMEOUT = 70.0  # longer than any API call may take (a machine's /wait is at most 60 s)
Singletons = Callable[[asyncio.Event], list["asyncio.Task[None]"]]


class Replica:
    def __init__(self, state: ClusterState, me: str, singletons: Singletons,
                 config: LeaderConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.me = me  # the URL other replicas forward writes to: how the lease names its holder
        self.singletons = singletons
        self.leadership = Leadership(me, config)
        self.clock = clock
        self._catching_up = asyncio.Lock()
        self._caught_up_from = float("-inf")  # when the newest finished catch-up started
        self._stop_singletons: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_try = float("-inf")  # a follower asks for the lease again from then
        state.replicated = True

    @property
    def leads(self) -> bool:
        """Leading now: holding the lease in time, and in office (caught up, its writes fenced)."""
        return self.state.fence is not None and self.leadership.leads(self.clock())

    @property
    def leader(self) -> str:
        """The leader's URL ("" when none is known)."""
        return self.me if self.leads else self.leadership.leader

    def view(self) -> dict[str, Any]:
        """GET /v1/control-plane: this replica, who leads, in which term, how far it has applied."""
        return {"replicated": True, "replica": self.me, "leads": self.leads, "leader": self.leader,
                "term": self.leadership.term, "seq": self.state.seq, "revision": self.state.hub.revision}

    async def catch_up(self, asked_at: float | None = None) -> None:
        """Apply every commit made before `asked_at` (default: now) that this replica has not applied yet.
        Concurrent callers share one catch-up if it started after they asked."""
        asked = self.clock() if asked_at is None else asked_at
        async with self._catching_up:
            if self._caught_up_from > asked:  # one that began after this caller asked covers it
                return
            started = self.clock()
            state = self.state
            delta = await state.in_store_thread(state.store.delta, state.seq)
            records = []
            if delta.revision > state.hub.revision:
                records = await state.in_store_thread(state.store.changes_since, state.hub.revision,
                                                      delta.revision - state.hub.revision)
            state.follow(delta, records)
            self._caught_up_from = started

    async def start(self) -> None:
        """The first round (take the lease if it is free, else follow), before the server answers anything."""
        try:
            await self._round()
        except StoreUnavailable as exc:
            log.warning("cannot reach the store at start: %s", exc.message)

    async def run(self, stop: asyncio.Event) -> None:
        """Hold or seek the lease, and follow while not leading, until `stop`; then give the lease up."""
        config = self.leadership.config
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()  # another server committed (PostgreSQL's NOTIFY)

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        unlisten = self.state.store.listen(wake)
        try:
            while not stop.is_set():
                woken.clear()
                try:
                    await self._round()
                except Exception:  # never let one bad round end leading or following for good
                    log.exception("replica round failed")
                    change = self.leadership.lapse(self.clock())
                    if change is not None:
                        await self._step_down()
                wait = config.renew_every if self.leads else min(config.renew_every, FOLLOW_EVERY)
                if self.leads:  # wake in time to stop acting if no renewal comes back
                    wait = max(0.0, min(wait, self.leadership.valid_until - self.clock()))
                with contextlib.suppress(TimeoutError):  # the leader ignores NOTIFYs: it made the commits
                    await asyncio.wait_for(stop.wait() if self.leads else _first(stop, woken), wait)
        finally:
            unlisten()
            await self._step_down()
            with contextlib.suppress(Exception):
                await self.state.in_store_thread(self.state.store.resign, NAME, self.me)

    async def _round(self) -> None:
        now = self.clock()
        change = self.leadership.lapse(now)
        if change is None and (self.leads or now >= self._next_try):
            asked = self.clock()
            try:
                lease = await self.state.in_store_thread(self.state.store.acquire, NAME, self.me,
                                                         self.leadership.config.ttl)
            except StoreUnavailable as exc:
                log.warning("cannot reach the store for the lease: %s", exc.message)
                change = self.leadership.lapse(self.clock())
            else:
                change = self.leadership.observe(lease, asked)
            self._next_try = self.clock() + self.leadership.config.renew_every
        if change is not None:
            if change.leads:
                try:
                    await self._step_up(change.term)
                except BaseException:
                    self.leadership.forget()
                    raise
            else:
                log.info("no longer leading (leader now: %s)", change.leader or "none")
                await self._step_down()
        if not self.leads:
            try:
                await self.catch_up()
            except StoreUnavailable as exc:
                log.warning("cannot follow the store: %s", exc.message)

    async def _step_up(self, term: int) -> None:
        await self.catch_up()  # everything the previous leader committed, before deciding anything
        self.state.fence = self.leadership.fence()
        log.info("leading the control plane (term %d) as %s", term, self.me)
        self._stop_singletons = asyncio.Event()
        self._tasks = self.singletons(self._stop_singletons)

    async def _step_down(self) -> None:
        self.state.fence = None
        if self._stop_singletons is not None:
            self._stop_singletons.set()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            self._stop_singletons = None
            self._tasks = []


async def _first(*events: asyncio.Event) -> None:
    """Until any of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _leader_only(path: str) -> bool:
    """Reads of what the leader alone holds in memory (the edges' traffic reports, drills' progress, and the
    dashboard's app pages that show them): a follower forwards them as it does writes."""
    parts = path.strip("/").split("/")
    return (len(parts) >= 4 and parts[:2] == ["v1", "apps"] and parts[3] in ("traffic", "drills")) \
        or parts[:2] == ["ui", "apps"]  # an app's dashboard page lists its drills


class ReplicaRouter:
    """ASGI middleware in front of the API: reads are answered here once caught up; writes go to the leader."""

    def __init__(self, app: ASGIApp, replica: Replica, trust: Trust | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.app = app
        self.replica = replica
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(FORWARD_TIMEOUT, connect=2.0), trust_env=False,
            transport=(trust or Trust()).async_transport(limits=httpx.Limits(max_connections=100)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        if scope["method"] in READS and not (_leader_only(scope["path"]) and not self.replica.leads):
            if not self.replica.leads:
                try:
                    await self.replica.catch_up()
                except StoreUnavailable as exc:
                    await _answer(send, 503, exc.message)
                    return
            await self.app(scope, receive, send)
            return
        if self.replica.leads:
            await self.app(scope, receive, send)
            return
        leader = self.replica.leader
        if not leader or leader == self.replica.me:
            await _answer(send, 503, "no control-plane leader is elected yet; retry shortly")
            return
        await self._forward(leader, scope, receive, send)

    async def _forward(self, leader: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"] + (("?" + scope["query_string"].decode("latin-1")) if scope["query_string"] else "")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in (b"host", b"content-length", b"connection", b"transfer-encoding")]
        try:
            answer = await self.client.request(scope["method"], leader.rstrip("/") + path, headers=headers,
                                               content=bytes(body))
        except httpx.HTTPError as exc:
            await _answer(send, 503, f"the control-plane leader at {leader} did not answer "
                                     f"({type(exc).__name__}); retry shortly")
            return
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
               if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding")]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})


def singletons_of(*loops: tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]]) -> Singletons:
    """The leader's jobs, each started with the event that stops them when leadership ends."""
    def start(stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [spawn(loop(stop), name) for name, loop in loops]

    return start

