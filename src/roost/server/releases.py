"""Releases: one record per deploy (version, status, image, strategy, time), numbered per app."""

from __future__ import annotations

import copy
import time
from typing import Any

from roost.core.errors import bad_request, not_found
from roost.core.model import Release
from roost.server.state import ClusterState

STATUSES = ("pending", "running", "complete", "failed")


class ReleaseService:
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def _check_app(self, app: str) -> None:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")

    def list(self, app: str) -> list[dict[str, Any]]:
        self._check_app(app)
        releases = sorted((r for r in self.state.releases.values() if r.app == app), key=lambda r: -r.version)
        return [r.to_api() for r in releases]

    async def create(self, app: str, body: Any) -> dict[str, Any]:
        self._check_app(app)
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            raise bad_request("body must be {\"image\": \"...\", \"strategy\": \"rolling\", \"description\": \"...\"}")
        async with self.state.lock:
            version = 1 + max((r.version for r in self.state.releases.values() if r.app == app), default=0)
            now = time.time()
            release = Release(app=app, version=version, status="running", image=body["image"],
                              strategy=str(body.get("strategy") or "rolling"), created_at=now, updated_at=now,
                              description=str(body.get("description") or ""))
            await self.state.save(release)
        return release.to_api()

    async def update(self, app: str, version: int, body: Any) -> dict[str, Any]:
        self._check_app(app)
        key = f"{app}/{version:08d}"
        if key not in self.state.releases:
            raise not_found(f"release v{version} of app {app!r} not found")
        status = body.get("status") if isinstance(body, dict) else None
        if status not in STATUSES:
            raise bad_request(f"status: one of {', '.join(STATUSES)}")
        async with self.state.lock:
            release = copy.copy(self.state.releases[key])
            release.status = status
            release.description = str(body.get("description") or release.description)
            release.updated_at = time.time()
            await self.state.save(release)
        return release.to_api()
