"""Two servers on one store (issue 18): the leader writes, fenced by its term; a follower applies the leader's
commits from the store's delta and publishes them to its own watchers; a follower never writes, and a deposed
leader's late write is refused. The real ClusterState on an in-memory store and a virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from roost.core.lifecycle import State
from roost.core.model import App, Host, Machine
from roost.detector.leadership import NAME
from roost.server.state import ClusterState
from roost.server.watch import WatchHub
from roost.store.base import Deposed, Fence
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore


def replica(store: MemoryStore) -> ClusterState:
    state = ClusterState(store, WatchHub(), inline=True)
    state.replicated = True
    state.follow(store.delta(0), store.changes_since(0, 1000))
    return state


def catch_up(state: ClusterState, store: MemoryStore) -> int:
    return state.follow(store.delta(state.seq), store.changes_since(state.hub.revision, 1000))


def test_a_follower_sees_the_leaders_writes_and_deletes_and_its_watchers_hear_them():
    clock = VirtualClock()
    store = MemoryStore(clock.time)
    leader, follower = replica(store), replica(store)
    lease = store.acquire(NAME, "a", 2.0)
    leader.fence = Fence("a", lease.term)

    async def scenario() -> None:
        now = clock.time()
        await leader.save(Host("h1", "ams", "127.0.9.1", "http://h1", 2, 2048, now, now),
                          App("web", "web-id", "personal", now))
        await leader.save(Machine("m1", "web", "m1", "ams", "h1", State.STARTED, "v1", {"image": "w:v1"}, {},
                                  "127.0.9.1", now, now))
        assert catch_up(follower, store) == 3
        assert follower.machines["m1"].state is State.STARTED and follower.host_usage("h1")[2] == 1
        assert follower.hub.revision == leader.hub.revision == 3
        assert [r.key for r in follower.hub.ring] == ["h1", "web", "m1"]  # its watchers hear what the leader's do
        await leader.write_machine("m1", state=State.STOPPED, now=clock.time())
        await leader.save(deleted=[leader.apps["web"]])
        catch_up(follower, store)
        assert follower.machines["m1"].state is State.STOPPED and "web" not in follower.apps
        assert catch_up(follower, store) == 0  # nothing new: nothing applied, nothing published
        assert follower.hub.revision == leader.hub.revision

    asyncio.run(scenario())


def test_a_follower_never_writes_and_a_deposed_leader_cannot_either():
    clock = VirtualClock()
    store = MemoryStore(clock.time)
    old, new = replica(store), replica(store)
    old.fence = Fence("a", store.acquire(NAME, "a", 2.0).term)

    async def scenario() -> None:
        now = clock.time()
        with pytest.raises(Deposed):
            await new.save(App("by-follower", "x", "personal", now))
        await old.save(App("by-leader", "y", "personal", now))
        await clock.advance(3.0)  # the old leader paused past its lease; another takes over
        taken = store.acquire(NAME, "b", 2.0)
        assert taken.holder == "b" and taken.term == 2
        catch_up(new, store)
        new.fence = Fence("b", taken.term)
        with pytest.raises(Deposed):
            await old.save(App("late", "z", "personal", clock.time()))
        await new.save(App("by-new-leader", "w", "personal", clock.time()))
        assert set(store.objects["app"]) == {"by-leader", "by-new-leader"}
        assert "late" not in old.apps  # a refused write is not applied in memory either

    asyncio.run(scenario())


def test_replicas_take_turns_leading_and_only_the_leader_runs_the_singletons():
    from roost.detector.leadership import LeaderConfig
    from roost.server.replica import Replica

    clock = VirtualClock()
    store = MemoryStore(clock.time)
    running: dict[str, int] = {"a": 0, "b": 0}

    def jobs(name: str):
        def start(stop: asyncio.Event) -> list[asyncio.Task[None]]:
            async def job() -> None:
                running[name] += 1
                try:
                    await stop.wait()
                finally:
                    running[name] -= 1

            return [asyncio.ensure_future(job())]

        return start

    config = LeaderConfig(ttl=1.5, renew_every=0.3, margin=0.3)

    async def scenario() -> None:
        a = Replica(replica(store), "https://a", jobs("a"), config, clock=clock.time)
        b = Replica(replica(store), "https://b", jobs("b"), config, clock=clock.time)
        await a.start()
        await b.start()
        await asyncio.sleep(0)
        assert a.leads and not b.leads and b.leader == "https://a" and running == {"a": 1, "b": 0}
        await a.state.save(App("made-by-a", "x", "personal", clock.time()))
        await b.catch_up()
        assert "made-by-a" in b.state.apps  # a follower reads what the leader wrote
        await clock.advance(1.3)  # a was frozen past its own deadline (1.5 s lease - 0.3 s margin)
        await a._round()  # thawed, it first stops acting: its lease may have lapsed by now
        assert not a.leads and running["a"] == 0 and a.state.fence is None
        await clock.advance(0.3)  # the lease lapses at 1.5 s; b asks again
        await b._round()
        await asyncio.sleep(0)
        assert b.leads and b.leadership.term == 2 and running == {"a": 0, "b": 1}
        with pytest.raises(Deposed):  # a's late write, whatever it believes
            a.state.fence = Fence("https://a", 1)
            await a.state.save(App("late", "y", "personal", clock.time()))

    asyncio.run(scenario())
