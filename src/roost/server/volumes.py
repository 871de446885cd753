"""Volumes: a directory on one host, attached to at most one machine at a time."""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from roost.core.errors import bad_request, not_found, precondition
from roost.core.ids import new_volume_id
from roost.core.lifecycle import State
from roost.core.model import Volume
from roost.placement.scheduler import place_volume
from roost.server.agent_client import AgentClient, AgentError
from roost.server.state import ClusterState

log = logging.getLogger("roost.server.volumes")

VOLUME_NAME = re.compile(r"^[a-z0-9_]{1,30}$")
MAX_SIZE_GB = 500
DEFAULT_SIZE_GB = 3  # the API's default; flyctl sends 1


class VolumeService:
    def __init__(self, state: ClusterState, default_region: str, agents: AgentClient | None = None) -> None:
        self.state = state
        self.default_region = default_region
        self.agents = agents

    def get(self, app: str, volume_id: str) -> Volume:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        volume = self.state.volumes.get(volume_id)
        if volume is None or volume.app != app:
            raise not_found(f"volume {volume_id!r} not found in app {app!r}")
        return volume

    async def create(self, app: str, body: Any) -> dict[str, Any]:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        if not isinstance(body, dict):
            raise bad_request("request body must be {\"name\": \"data\", \"region\": \"ams\", \"size_gb\": 1}")
        name = body.get("name")
        if not isinstance(name, str) or not VOLUME_NAME.match(name):
            raise bad_request(f"name: invalid volume name {name!r}: 1-30 lowercase letters, digits and underscores")
        size = body.get("size_gb", DEFAULT_SIZE_GB)
        if size is None:
            size = DEFAULT_SIZE_GB
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE_GB:
            raise bad_request(f"size_gb: expected a whole number of GB from 1 to {MAX_SIZE_GB}")
        region = body.get("region") or self.state.apps[app].primary_region or self.default_region
        if not isinstance(region, str):
            raise bad_request("region: expected a region code like \"ams\"")
        retention = body.get("snapshot_retention", 5)
        if retention is None:
            retention = 5
        if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= 60:
            raise bad_request("snapshot_retention: expected a number of days from 1 to 60")
        unique = body.get("require_unique_zone", True)
        if unique is None:
            unique = True
        for key in ("encrypted", "require_unique_zone", "auto_backup_enabled"):
            if body.get(key) is not None and not isinstance(body[key], bool):
                raise bad_request(f"{key}: expected true or false")
        async with self.state.lock:
            same_name: dict[str, int] = {}
            for v in self.state.volumes.values():
                if v.app == app and v.name == name:
                    same_name[v.host_id] = same_name.get(v.host_id, 0) + 1
            host = place_volume(app, name, region, self.state.host_views(), same_name, bool(unique))
            volume = Volume(
                id=new_volume_id(), app=app, name=name, region=region, host_id=host.id, size_gb=size,
                created_at=time.time(), encrypted=body.get("encrypted", True) is not False,
                snapshot_retention=retention, auto_backup_enabled=body.get("auto_backup_enabled") is not False,
            )
            await self.state.save(volume)
        try:
            await self.provision(volume)
        except AgentError:
            await self.state.save(deleted=[volume])  # refused by its host: nothing half-made is kept
            raise
        return self.state.volume_api(volume)

    async def provision(self, volume: Volume) -> dict[str, Any] | None:
        """Ask the volume's host to make it at its size (or grow it) now; None if the host did not answer,
        which is no harm: the host makes it when a machine first starts on it."""
        host = self.state.hosts.get(volume.host_id)
        if self.agents is None or host is None or host.status != "ok":
            return None
        try:
            answer: dict[str, Any] = await self.agents.call(
                host.agent_url, "PUT", f"/v1/volumes/{volume.id}", {"size_gb": volume.size_gb}, timeout=60)
        except AgentError as exc:
            if exc.status == 409:  # the host refuses it (its disk is too small): the caller must hear
                raise
            log.warning("volume %s: its host %s did not make it now (%s): it will on first use",
                        volume.id, host.id, exc.message)
            return None
        return answer

    def list(self, app: str) -> list[dict[str, Any]]:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        vols = sorted((v for v in self.state.volumes.values() if v.app == app), key=lambda v: v.created_at)
        return [self.state.volume_api(v) for v in vols]

    async def update(self, app: str, volume_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        async with self.state.lock:
            updated = copy.copy(self.get(app, volume_id))
            if body.get("snapshot_retention") is not None:
                value = body["snapshot_retention"]
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
                    raise bad_request("snapshot_retention: expected a number of days from 1 to 60")
                updated.snapshot_retention = value
            if body.get("auto_backup_enabled") is not None:
                if not isinstance(body["auto_backup_enabled"], bool):
                    raise bad_request("auto_backup_enabled: expected true or false")
                updated.auto_backup_enabled = body["auto_backup_enabled"]
            await self.state.save(updated)
        return self.state.volume_api(updated)

    async def extend(self, app: str, volume_id: str, body: Any) -> dict[str, Any]:
        size = body.get("size_gb") if isinstance(body, dict) else None
        async with self.state.lock:
            volume = self.get(app, volume_id)
            if isinstance(size, bool) or not isinstance(size, int) or not volume.size_gb < size <= MAX_SIZE_GB:
                raise bad_request(f"size_gb: a volume only grows: expected a whole number of GB above "
                                  f"{volume.size_gb} and at most {MAX_SIZE_GB}")
            updated = copy.copy(volume)
            updated.size_gb = size
            await self.state.save(updated)
        grown = await self.provision(updated)
        # Grown live where the host's kernel allows it; else when its machine next starts (as Fly says for
        # some volumes), which is also when a host that did not answer grows it.
        return {"needs_restart": grown is None or bool(grown.get("needs_restart")),
                "volume": self.state.volume_api(updated)}

    async def delete(self, app: str, volume_id: str) -> dict[str, Any]:
        async with self.state.lock:
            volume = self.get(app, volume_id)
            holder = self.state.machines.get(volume.attached_machine_id)
            if holder is not None and holder.state is not State.DESTROYED:
                raise precondition(f"volume {volume.id} is attached to machine {holder.id}; destroy the machine first")
            gone = copy.copy(volume)
            gone.state = "destroyed"
            await self.state.save(deleted=[volume])
        await self.remove_data([volume])
        return self.state.volume_api(gone)

    async def remove_data(self, volumes: Iterable[Volume]) -> None:
        """Delete destroyed volumes' directories on their hosts, best effort: a host that is down keeps the
        directory (the record is gone either way, so nothing will use it again)."""
        if self.agents is None:
            return
        for volume in volumes:
            host = self.state.hosts.get(volume.host_id)
            if host is None or host.status != "ok":
                log.warning("volume %s destroyed while its host %s is not reachable: its data stays there",
                            volume.id, volume.host_id)
                continue
            try:
                await self.agents.call(host.agent_url, "DELETE", f"/v1/volumes/{volume.id}", timeout=5)
            except AgentError as exc:
                log.warning("volume %s: could not delete its data on host %s: %s", volume.id, host.id, exc.message)
