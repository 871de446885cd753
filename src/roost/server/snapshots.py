"""Volume snapshots, as Fly's: taken on demand and daily, kept `snapshot_retention` days (even after their
volume is gone), restored into a new volume on any host of the region (`snapshot_id`), and forks
(`source_volume_id`: a snapshot of the source restored into a new volume, on another host where there is one).

A snapshot is a file on its volume's host (agent/snapshots.py), copied to a second host of the region where
there is one (`copies`), so losing a host loses no snapshot; restoring it on another host streams it there
from whichever holder is up, through the control plane, checked against its digest on arrival.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from roost.core.errors import RoostError, bad_request, not_found, precondition
from roost.core.ids import new_snapshot_id
from roost.core.model import Volume, VolumeSnapshot
from roost.server.agent_client import AgentClient, AgentError
from roost.server.state import ClusterState
from roost.server.volumes import VolumeService

log = logging.getLogger("roost.server.snapshots")

DAY = 86400.0
MAX_PER_VOLUME = 100  # on-demand snapshots a volume may have at once (daily ones are pruned by age)


class SnapshotService:
    def __init__(self, state: ClusterState, volumes: VolumeService, agents: AgentClient,
                 daily_interval: float = DAY, copies: bool = True) -> None:
        self.state = state
        self.volumes = volumes
        self.agents = agents
        self.daily_interval = daily_interval
        self.copies = copies

    def _host_url(self, host_id: str, what: str) -> str:
        host = self.state.hosts.get(host_id)
        if host is None or host.status != "ok":
            status = host.status if host else "gone"
            raise precondition(f"unable to {what}: host {host_id} is {status}")
        return host.agent_url

    def list(self, app: str, volume_id: str) -> list[dict[str, Any]]:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        found = [s for s in self.state.snapshots.values() if s.app == app and s.volume_id == volume_id]
        if not found:
            self.volumes.get(app, volume_id)  # a volume with no snapshot yet lists none; an unknown one is a 404
        return [s.to_api() for s in sorted(found, key=lambda s: s.created_at)]

    async def take(self, app: str, volume_id: str, kind: str = "on-demand") -> dict[str, Any]:
        return (await self._take(self.volumes.get(app, volume_id), kind)).to_api()

    async def _take(self, volume: Volume, kind: str, now: float | None = None) -> VolumeSnapshot:
        mine = [s for s in self.state.snapshots.values() if s.volume_id == volume.id and s.kind == "on-demand"]
        if kind == "on-demand" and len(mine) >= MAX_PER_VOLUME:
            raise bad_request(f"volume {volume.id} has {MAX_PER_VOLUME} snapshots taken on demand: they are kept "
                              f"{volume.snapshot_retention} days; lower snapshot_retention, or wait")
        url = self._host_url(volume.host_id, f"snapshot volume {volume.id}")
        sid = new_snapshot_id()
        made = await self.agents.call(url, "POST", f"/v1/volumes/{volume.id}/snapshots/{sid}", timeout=600)
        snapshot = VolumeSnapshot(id=sid, app=volume.app, volume_id=volume.id, host_id=volume.host_id,
                                  region=volume.region, created_at=time.time() if now is None else now,
                                  size=int(made["size"]),
                                  digest=str(made["digest"]), volume_size_gb=volume.size_gb,
                                  retention_days=volume.snapshot_retention, kind=kind)
        if self.copies and kind != "fork":  # a fork's snapshot is restored at once: no second copy needed
            snapshot.copy_host_id = await self._copy(snapshot, url)
        await self.state.save(snapshot)
        return snapshot

    async def _copy(self, snapshot: VolumeSnapshot, source_url: str) -> str:
        """Copy a new snapshot to another live host of its region (the least used by snapshots); that host,
        or '' where there is none or the copy failed (the snapshot is kept on its own host all the same)."""
        held: dict[str, int] = {}
        for s in self.state.snapshots.values():
            for holder in (s.host_id, s.copy_host_id):
                held[holder] = held.get(holder, 0) + 1
        others = sorted((h for h in self.state.hosts.values()
                         if h.region == snapshot.region and h.id != snapshot.host_id and h.status == "ok"),
                        key=lambda h: (held.get(h.id, 0), h.id))
        for host in others[:2]:
            try:
                await self.agents.relay(source_url, f"/v1/snapshots/{snapshot.id}", host.agent_url,
                                        f"/v1/snapshots/{snapshot.id}?digest={snapshot.digest}")
                return host.id
            except RoostError as exc:
                log.warning("snapshot %s: could not copy it to host %s: %s", snapshot.id, host.id, exc.message)
        return ""

    async def create_volume(self, app: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new volume from a snapshot (`snapshot_id`) or a fork of a volume (`source_volume_id`)."""
        snapshot_id, source_id = body.get("snapshot_id"), body.get("source_volume_id")
        if snapshot_id and source_id:
            raise bad_request("give snapshot_id or source_volume_id, not both")
        if source_id is not None:
            if not isinstance(source_id, str):
                raise bad_request("source_volume_id: expected a volume id")
            source = self.volumes.get(app, source_id)
            snapshot = await self._take(source, "fork")
            body = {"name": source.name, "region": source.region, **body}
        else:
            found = self.state.snapshots.get(snapshot_id) if isinstance(snapshot_id, str) else None
            if found is None or found.app != app:
                raise not_found(f"snapshot {snapshot_id!r} not found in app {app!r}")
            snapshot = found
            body = {"region": snapshot.region, **body}
        if body["region"] != snapshot.region:
            raise bad_request(f"region: a snapshot restores within its region ({snapshot.region}), "
                              f"not in {body['region']!r}")
        size = body.get("size_gb")
        if isinstance(size, int) and not isinstance(size, bool) and size < snapshot.volume_size_gb:
            raise bad_request(f"size_gb: at least {snapshot.volume_size_gb}, the size of the volume it was taken of")
        body = {k: v for k, v in body.items() if k not in ("snapshot_id", "source_volume_id")}
        body.setdefault("size_gb", snapshot.volume_size_gb)
        created = await self.volumes.create(app, body)
        volume = self.state.volumes[created["id"]]
        try:
            await self._restore(snapshot, volume)
        except RoostError:
            await self.state.save(deleted=[volume])  # nothing half-restored is left to attach
            await self.volumes.remove_data([volume])
            raise
        return {**created, "snapshot_id": snapshot.id, **({"source_volume_id": source_id} if source_id else {})}

    async def _restore(self, snapshot: VolumeSnapshot, volume: Volume) -> None:
        target = self._host_url(volume.host_id, f"restore snapshot {snapshot.id}")
        holders = [h for h in (snapshot.host_id, snapshot.copy_host_id) if h]
        if volume.host_id not in holders:
            up = [h for h in holders if (host := self.state.hosts.get(h)) is not None and host.status == "ok"]
            source = self._host_url(up[0] if up else snapshot.host_id, f"copy snapshot {snapshot.id} from its host")
            await self.agents.relay(source, f"/v1/snapshots/{snapshot.id}", target,
                                    f"/v1/snapshots/{snapshot.id}?digest={snapshot.digest}")
        await self.agents.call(target, "POST",
                               f"/v1/volumes/{volume.id}/restore/{snapshot.id}?digest={snapshot.digest}", timeout=600)

    # ---- daily snapshots and retention (the leader's job) ----

    async def run_daily(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.daily_pass()
            except Exception:  # a pass that fails is logged; the next one runs
                log.exception("daily snapshots")
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(self.daily_interval, 60.0))
            except TimeoutError:
                pass

    async def daily_pass(self, now: float | None = None) -> tuple[int, int]:
        """Snapshot every auto-backed-up volume whose last daily snapshot is older than a day (the interval),
        and delete snapshots past their retention; (taken, pruned)."""
        now = time.time() if now is None else now
        taken = pruned = 0
        last: dict[str, float] = {}
        for s in self.state.snapshots.values():
            if s.kind == "daily":
                last[s.volume_id] = max(last.get(s.volume_id, 0.0), s.created_at)
        for volume in list(self.state.volumes.values()):
            # the first one a day (an interval) after the volume was made, then one a day
            if not volume.auto_backup_enabled or now - last.get(volume.id, volume.created_at) < self.daily_interval:
                continue
            try:
                await self._take(volume, "daily", now)
                taken += 1
            except RoostError as exc:  # its host is down: the next pass tries again
                log.warning("daily snapshot of volume %s: %s", volume.id, exc.message)
        for snapshot in list(self.state.snapshots.values()):
            if now - snapshot.created_at < snapshot.retention_days * DAY:
                continue
            if await self._forget(snapshot):
                pruned += 1
        return taken, pruned

    async def _forget(self, snapshot: VolumeSnapshot) -> bool:
        for holder in (snapshot.host_id, snapshot.copy_host_id):
            host = self.state.hosts.get(holder) if holder else None
            if host is not None and host.status == "ok":
                try:
                    await self.agents.call(host.agent_url, "DELETE", f"/v1/snapshots/{snapshot.id}", timeout=10)
                except AgentError as exc:
                    log.warning("snapshot %s: could not delete its file on %s: %s", snapshot.id, host.id,
                                exc.message)
                    return False
            elif host is not None:
                return False  # a holder is away: its file would stay behind; the next pass tries again
        await self.state.save(deleted=[copy.copy(snapshot)])
        return True
