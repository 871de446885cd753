"""Failure detection and standby takeover on a virtual clock (issue 13: time is an input): the server's real
HostService and StandbyController, an in-memory store and a fake agent client; heartbeats are sent by the test
at the times it chooses. Seconds of failover run in milliseconds, and every bound is checked exactly."""

from __future__ import annotations

import asyncio
from typing import Any

from roost.core.lifecycle import State
from roost.core.model import Image, Machine, canonical_image_ref
from roost.detector.fencing import LeaseConfig
from roost.detector.membership import DetectorConfig
from roost.server.hosts import HostService
from roost.server.machines import MachineService
from roost.server.state import ClusterState
from roost.server.takeover import StandbyController
from roost.server.watch import WatchHub
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore


class FakeAgents:
    """The agents as the control plane sees them: each call is recorded with the virtual time it was made."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, str]] = []
        self.reachable: set[str] = set()  # agent URLs a peer probe reaches
        self.probe_timeouts: list[tuple[float, float | None]] = []  # (what the peer waits, what we wait for it)

    async def call(self, agent_url: str, method: str, path: str, body: Any = None,
                   timeout: float | None = None) -> Any:
        self.calls.append((self.clock.time(), agent_url, path))
        if path == "/v1/probe":
            self.probe_timeouts.append((float(body["timeout"]), timeout))
            target = str(body["url"]).removesuffix("/healthz")
            return {"reachable": target in self.reachable}
        if path.endswith("/start"):
            return {"state": "started"}
        return {"ok": True}

    def started(self, machine_id: str) -> list[float]:
        return [t for t, _, path in self.calls if path == f"/v1/machines/{machine_id}/start"]


class World:
    def __init__(self, lease: LeaseConfig | None = None) -> None:
        self.clock = VirtualClock()
        self.state = ClusterState(MemoryStore(), WatchHub(), inline=True)
        self.state.load()
        self.agents = FakeAgents(self.clock)
        self.machines = MachineService(self.state, self.agents, "ams", clock=self.clock)  # type: ignore[arg-type]
        self.takeover = StandbyController(self.state, self.machines.ops, self.agents, lease or LeaseConfig(),  # type: ignore[arg-type]
                                          clock=self.clock)
        self.hosts = HostService(self.state, self.machines, DetectorConfig(), self.takeover, clock=self.clock)
        self.beating: set[str] = set()

    async def setup(self) -> None:
        for i in (1, 2, 3):
            await self.hosts.register({"id": f"h{i}", "region": "ams", "address": f"127.0.9.{i}",
                                       "agent_url": f"http://h{i}", "cpus": 2, "memory_mb": 2048})
        image = Image(canonical_image_ref("w:v1"), "", "w", "v1", "sha256:" + "0" * 64, 1, 0.0, ["run"])
        now = self.clock.time()
        worker = Machine("w", "app", "w", "ams", "h1", State.STARTED, "v1", {"image": "w:v1"}, {}, "127.0.9.1",
                         now, now)
        standby = Machine("s", "app", "s", "ams", "h2", State.STOPPED, "v1", {"image": "w:v1", "standbys": ["w"]},
                          {}, "127.0.9.2", now, now)
        await self.state.save(image, worker, standby)
        self.beating = {"h1", "h2", "h3"}

    async def beat(self, stop: asyncio.Event) -> None:
        """Every live host heartbeats every 0.25 s (virtual), acknowledging what it must fence."""
        while not stop.is_set():
            for host in sorted(self.beating):
                await self.hosts.heartbeat(host, {"watched": self.takeover.watched(host)})
            await self.clock.sleep(0.25)


async def test_a_dead_hosts_standby_starts_after_the_lease_and_margin_not_before() -> None:
    world = World()
    await world.setup()
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(world.beat(stop)), asyncio.ensure_future(world.hosts.run_detector(stop))]
    await world.clock.advance(2.0)  # steady state: h1 acknowledged that it must fence w
    world.beating.discard("h1")  # power cut: no beat from now on
    cut = world.hosts.last_seen["h1"]  # its last one
    await world.clock.advance(cut + 1.45 - world.clock.time())
    assert world.agents.started("s") == [], "not before the lease (1.0 s) and the margin (0.5 s) have passed"
    assert world.state.hosts["h1"].status == "unknown", "suspect after 0.75 s, dead only at 1.5 s"
    await world.clock.advance(0.2)
    starts = world.agents.started("s")
    assert len(starts) == 1 and 1.5 <= starts[0] - cut < 1.6
    assert world.state.machines["w"].fencing["replaced_by"] == "s"
    assert world.state.machines["s"].fencing["token"] == 2
    stop.set()
    await world.clock.advance(0.5)
    await asyncio.gather(*tasks)


async def test_the_operators_wan_timings_reach_the_agents_and_rule_the_takeover() -> None:
    """`roost server --lease 2 --lease-margin 1 --peer-probe-timeout 0.8` (a fleet across continents): every
    heartbeat reply carries them, the peers' probes wait that long, and a standby starts at lease + margin."""
    world = World(LeaseConfig(lease=2.0, margin=1.0, probe_timeout=0.8))
    await world.setup()
    reply = await world.hosts.heartbeat("h1", {"watched": world.takeover.watched("h1")})
    assert (reply["lease"], reply["peer_probe_timeout"]) == (2.0, 0.8)
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(world.beat(stop)), asyncio.ensure_future(world.hosts.run_detector(stop))]
    await world.clock.advance(2.0)
    world.beating.discard("h1")
    cut = world.hosts.last_seen["h1"]
    await world.clock.advance(cut + 2.9 - world.clock.time())
    assert world.agents.started("s") == [], "not before the lease (2 s) and the margin (1 s)"
    await world.clock.advance(0.3)
    starts = world.agents.started("s")
    assert len(starts) == 1 and 3.0 <= starts[0] - cut < 3.1
    assert world.agents.probe_timeouts and all(
        peer == 0.8 and ours is not None and ours > peer for peer, ours in world.agents.probe_timeouts)
    stop.set()
    await world.clock.advance(0.5)
    await asyncio.gather(*tasks)


async def test_a_host_its_peers_still_reach_is_never_taken_over() -> None:
    world = World()
    await world.setup()
    world.agents.reachable.add("http://h1")  # only the control plane lost it
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(world.beat(stop)), asyncio.ensure_future(world.hosts.run_detector(stop))]
    await world.clock.advance(2.0)
    world.beating.discard("h1")
    await world.clock.advance(60.0, step=0.05)  # a minute of silence
    assert world.state.hosts["h1"].status == "unknown"
    assert world.agents.started("s") == [] and world.state.machines["w"].state is State.STARTED
    stop.set()
    await world.clock.advance(0.5)
    await asyncio.gather(*tasks)





async def test_a_stall_of_the_server_itself_convicts_no_host() -> None:
    """When the server's own loop stalls (2 s here), the heartbeats it could not read meanwhile are no evidence:
    no host turns unknown for it. A host that then stays silent is judged as usual."""
    world = World()
    await world.setup()
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(world.beat(stop)), asyncio.ensure_future(world.hosts.run_detector(stop))]
    await world.clock.advance(2.0)
    beating, world.beating = world.beating, set()
    await world.clock.advance(2.0, step=2.0)  # one jump: nothing ran on the server for 2 s
    assert {h.status for h in world.state.hosts.values()} == {"ok"}
    world.beating = beating - {"h3"}  # the others' late heartbeats arrive; h3 has really gone quiet
    await world.clock.advance(1.0)
    assert world.state.hosts["h1"].status == "ok" and world.state.hosts["h3"].status == "unknown"
    stop.set()
    await world.clock.advance(0.5)
    await asyncio.gather(*tasks)
