"""What a heartbeat and a takeover read (issue 18: each cost O(fleet) before): each host's live machines and the
standbys, kept by the cluster state on every write, delete and follow, and the controller's answers from them,
agree with a scan of the whole fleet."""

from __future__ import annotations

import asyncio
import random

from roost.core.lifecycle import State
from roost.core.model import Host, Machine
from roost.detector.fencing import LeaseConfig
from roost.detector.standby import MachineView, takeovers, watched_on
from roost.server.state import ClusterState
from roost.server.takeover import StandbyController
from roost.server.watch import WatchHub
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore

HOSTS = ["h1", "h2", "h3"]


def machine(mid: str, host: str, standby_for: str = "", state: State = State.STARTED) -> Machine:
    config = {"image": "w:v1", **({"standbys": [standby_for]} if standby_for else {})}
    return Machine(mid, "web", mid, "ams", host, state, "v1", config, {}, "127.0.9.1", 1.0, 1.0)


def views(ms: list[Machine]) -> list[MachineView]:
    return [MachineView(m.id, m.host_id, m.state, tuple(m.config.get("standbys") or ())) for m in ms]


def scanned(state: ClusterState, host: str) -> tuple[set[str], set[str]]:
    live = [m for m in state.machines.values() if m.state is not State.DESTROYED]
    return {m.id for m in live if m.host_id == host}, watched_on(host, views(live))


def indexed(state: ClusterState, host: str) -> tuple[set[str], set[str]]:
    nearby = state.machines_on(host) + state.standby_machines()
    return {m.id for m in state.machines_on(host)}, watched_on(host, views(nearby))


def test_a_hosts_machines_and_what_it_fences_follow_every_write():
    clock = VirtualClock()
    store = MemoryStore(clock.time)
    state = ClusterState(store, WatchHub(), inline=True)
    controller = StandbyController(state, None, None, LeaseConfig())  # type: ignore[arg-type]  # reads only
    rng = random.Random(7)

    async def scenario() -> None:
        await state.save(*(Host(h, "ams", "127.0.9.1", f"http://{h}", 2, 2048, 1.0, 1.0) for h in HOSTS))
        ids: list[str] = []
        for step in range(300):
            action = rng.random()
            if action < 0.5 or not ids:
                mid = f"m{step}"
                watched = rng.choice(ids) if ids and rng.random() < 0.3 else ""
                await state.save(machine(mid, rng.choice(HOSTS), watched))
                ids.append(mid)
            elif action < 0.7:
                mid = rng.choice(ids)
                await state.write_machine(mid, now=clock.time(), state=rng.choice(
                    [State.STOPPED, State.STARTED, State.DESTROYED]))
            elif action < 0.85:
                old = state.machines[rng.choice(ids)]
                await state.save(machine(old.id, rng.choice(HOSTS), (old.config.get("standbys") or [""])[0],
                                         old.state))  # moved to another host
            else:
                mid = ids.pop(rng.randrange(len(ids)))
                await state.save(deleted=[state.machines[mid]])
            for host in HOSTS:
                assert indexed(state, host) == scanned(state, host), (step, host)
                assert set(controller.watched(host)) == scanned(state, host)[1], (step, host)
                live = [m for m in state.machines.values() if m.state is not State.DESTROYED]
                assert takeovers(host, controller.nearby(host), set(HOSTS) - {host}) == \
                    takeovers(host, views(live), set(HOSTS) - {host}), (step, host)

        follower = ClusterState(store, WatchHub(), inline=True)
        follower.replicated = True
        follower.follow(store.delta(0), [])
        for host in HOSTS:
            assert indexed(follower, host) == scanned(state, host)
        assert any(indexed(state, h)[1] for h in HOSTS), "the fleet had watched machines to check"

    asyncio.run(scenario())
