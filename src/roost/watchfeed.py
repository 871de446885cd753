"""Following the control plane's watch feed (SSE): a reset, then changes, resumed from the last revision after
a lost connection; what it said last is kept (and, for an edge, saved to disk) while the server is away.
Used by the edges (routing) and the hosts' `.internal` resolvers (the feed's names view)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import httpx

from roost.tasks import spawn
from roost.tls import Trust

log = logging.getLogger("roost.watchfeed")


class FeedSink(Protocol):
    revision: int

    def reset(self, objects: list[dict[str, Any]], revision: int) -> None: ...

    def apply(self, event: dict[str, Any]) -> None: ...


class FeedFollower:
    """Keeps a sink current from the server's watch feed (SSE), reconnecting with its last revision."""

    def __init__(self, table: FeedSink, server_url: str, token: str, snapshot_path: Path | None,
                 trust: Trust | None = None, path: str = "/v1/watch") -> None:
        self.table = table
        self.path = path
        self.trust = trust or Trust()
        self.url = server_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.snapshot_path = snapshot_path
        self.connected = False
        self.synced = asyncio.Event()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._dirty = False

    def load_snapshot(self) -> bool:
        if self.snapshot_path is None or not self.snapshot_path.exists():
            return False
        try:
            data = json.loads(self.snapshot_path.read_text())
        except (OSError, ValueError):
            return False
        objects = data.get("objects") or []
        self._objects = {(o["kind"], o["key"]): o for o in objects}
        self.table.reset(objects, int(data.get("revision", 0)))
        log.info("loaded routing snapshot at revision %s (%d objects)", self.table.revision, len(objects))
        return True

    def _save(self) -> None:
        if self.snapshot_path is None or not self._dirty:
            return
        self._dirty = False
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"revision": self.table.revision, "objects": list(self._objects.values())}))
        os.replace(tmp, self.snapshot_path)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        saver = spawn(self._save_loop(stop), "feed-saver")
        try:
            while not stop.is_set():
                try:
                    await self._follow(stop)
                    delay = 0.1
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    if self.connected:
                        log.warning("watch feed lost (%s); keeping what it said last", exc)
                    self.connected = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(2.0, delay * 2)
        finally:
            saver.cancel()

    async def _save_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(2.0)
            with contextlib.suppress(OSError):
                self._save()

    async def _follow(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(connect=2.0, read=30.0, write=5.0, pool=5.0)
        transport = self.trust.async_transport()
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, transport=transport) as client, client.stream(
            "GET", f"{self.url}{self.path}", params={"since": self.table.revision if self.synced.is_set() else 0},
            headers=self.headers,
        ) as response:
            if response.status_code != 200:
                raise httpx.HTTPStatusError("watch refused", request=response.request, response=response)
            self.connected = True
            event_name = ""
            async for line in response.aiter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    event_name = line[7:].strip()
                elif line.startswith("data: "):
                    payload = json.loads(line[6:])
                    if event_name == "reset":
                        self._objects = {(o["kind"], o["key"]): o for o in payload.get("objects", [])}
                        self.table.reset(payload.get("objects", []), int(payload["revision"]))
                    else:
                        key = (payload["kind"], payload["key"])
                        if payload["op"] == "delete":
                            self._objects.pop(key, None)
                        else:
                            self._objects[key] = {"kind": payload["kind"], "key": payload["key"],
                                                  "object": payload["object"]}
                        self.table.apply(payload)
                    self._dirty = True
                    self.synced.set()
