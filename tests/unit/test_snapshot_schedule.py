"""The daily snapshot pass (server/snapshots.py), on a virtual day: who is snapshotted, when, and what is
pruned past its retention; a host that is away keeps its snapshots until it is back (nothing left behind)."""

from __future__ import annotations

from typing import Any

from roost.core.model import App, Host, Volume, VolumeSnapshot
from roost.server.snapshots import DAY, SnapshotService
from roost.server.state import ClusterState
from roost.server.volumes import VolumeService
from roost.server.watch import WatchHub
from roost.testing.memstore import MemoryStore


class FakeAgents:
    """What the agents were asked, and answers as an agent does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def call(self, url: str, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        self.calls.append((method, path))
        return {"size": 10, "digest": "0" * 64} if method == "POST" else {"deleted": True}


async def fleet() -> tuple[ClusterState, SnapshotService, FakeAgents]:
    state = ClusterState(MemoryStore(), WatchHub(), inline=True)
    state.load()
    await state.save(App(name="web", id="web", org_slug="personal", created_at=0.0),
                     Host("h1", "ams", "127.0.0.1", "http://h1", 2, 2048, 0.0, 0.0),
                     Volume("vol_a", "web", "data", "ams", "h1", 1, 0.0, snapshot_retention=2),
                     Volume("vol_b", "web", "scratch", "ams", "h1", 1, 0.0, auto_backup_enabled=False))
    agents = FakeAgents()
    return state, SnapshotService(state, VolumeService(state, "ams"), agents), agents  # type: ignore[arg-type]


async def test_one_snapshot_a_day_for_volumes_that_want_them() -> None:
    state, service, _agents = await fleet()
    assert await service.daily_pass(now=DAY - 1) == (0, 0), "the first a day after the volume was made"
    assert await service.daily_pass(now=10 * DAY) == (1, 0)
    assert [(s.volume_id, s.kind) for s in state.snapshots.values()] == [("vol_a", "daily")]
    # the next pass the same day takes none; a day later, one more
    assert await service.daily_pass(now=10 * DAY + 3600) == (0, 0)
    assert await service.daily_pass(now=11 * DAY + 1) == (1, 0)
    assert len(state.snapshots) == 2


async def test_snapshots_past_retention_are_pruned_with_their_files() -> None:
    state, service, agents = await fleet()
    old = VolumeSnapshot("vs_00000000000000aa", "web", "vol_gone", "h1", "ams", created_at=0.0, retention_days=2)
    await state.save(old)
    taken, pruned = await service.daily_pass(now=3 * DAY)
    assert (taken, pruned) == (1, 1) and old.id not in state.snapshots
    assert ("DELETE", f"/v1/snapshots/{old.id}") in agents.calls


async def test_a_host_away_keeps_its_snapshots_until_it_is_back() -> None:
    state, service, _agents = await fleet()
    old = VolumeSnapshot("vs_00000000000000bb", "web", "vol_a", "h1", "ams", created_at=0.0, retention_days=2)
    await state.save(old)
    host = state.hosts["h1"]
    host.status = "unreachable"
    assert await service.daily_pass(now=3 * DAY) == (0, 0)  # nothing taken, nothing pruned: its file is there
    assert old.id in state.snapshots
    host.status = "ok"
    assert (await service.daily_pass(now=3 * DAY))[1] == 1 and old.id not in state.snapshots
