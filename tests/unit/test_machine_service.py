"""The Machines API's verbs over a scripted fake agent (issue 13): each verb writes its transitional state,
calls the host's agent, and settles the record from the answer or the failure, through one runner. The real
MachineService on an in-memory store and a virtual clock; the fake agent answers what the test scripts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roost.core.errors import RoostError
from roost.core.lifecycle import State
from roost.core.model import App, Host, Image, Lease, Machine, Volume, canonical_image_ref
from roost.server import operations
from roost.server.machines import MachineService
from roost.server.state import ClusterState
from roost.server.watch import WatchHub
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore


class ScriptedAgents:
    """An agent client whose answers the test chooses per verb; a verb can also hang until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: dict[str, Any] = {}  # last path segment -> answer, or a RoostError to raise
        self.gates: dict[str, asyncio.Event] = {}  # last path segment -> wait for it before answering

    async def call(self, agent_url: str, method: str, path: str, body: Any = None,
                   timeout: float | None = None) -> Any:
        verb = path.rsplit("/", 1)[-1] if method == "POST" else method
        self.calls.append((method, path, body))
        if verb in self.gates:
            await self.gates[verb].wait()
        answer = self.answers.get(verb, {"ok": True})
        if isinstance(answer, RoostError):
            raise answer
        return answer

    def verbs(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] if method == "POST" else method for method, path, _ in self.calls]


class World:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.state = ClusterState(MemoryStore(), WatchHub(), inline=True)
        self.state.load()
        self.agents = ScriptedAgents()
        self.service = MachineService(self.state, self.agents, "ams", clock=self.clock)  # type: ignore[arg-type]

    async def setup(self, state: State = State.STARTED, **extra: Any) -> Machine:
        now = self.clock.time()
        image = Image(canonical_image_ref("w:v1"), "", "w", "v1", "sha256:" + "0" * 64, 1, 0.0, ["run"])
        host = Host("h1", "ams", "127.0.9.1", "http://h1", 2, 2048, now, now)
        app = App("app", "app-id", "personal", now)
        m = Machine("m1", "app", "m1", "ams", "h1", state, "v1", {"image": "w:v1", **extra}, {}, "127.0.9.1",
                    now, now)
        await self.state.save(app, host, image, m)
        return m

    def machine(self) -> Machine:
        return self.state.machines["m1"]

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["status"]) for e in reversed(self.machine().events)]


async def test_start_writes_starting_then_settles_from_the_agent_answer() -> None:
    w = World()
    await w.setup(State.STOPPED)
    w.agents.gates["start"] = gate = asyncio.Event()
    task = asyncio.ensure_future(w.service.start("app", "m1", None))
    await w.clock.settle()
    assert w.machine().state is State.STARTING, "the transitional state is written before the agent answers"
    gate.set()
    assert (await task)["previous_state"] == "stopped"
    assert w.machine().state is State.STARTED
    assert w.events()[-2:] == [("start", "starting"), ("start", "started")]
    spec = w.agents.calls[-1][2]
    assert spec["id"] == "m1" and spec["instance_id"] == "v1" and spec["image"]["cmd"] == ["run"]


async def test_a_failed_start_settles_failed_and_the_caller_sees_the_agents_error() -> None:
    w = World()
    await w.setup(State.STOPPED)
    w.agents.answers["start"] = RoostError(422, "host agent: image not found")
    with pytest.raises(RoostError) as err:
        await w.service.start("app", "m1", None)
    assert err.value.status == 422
    assert w.machine().state is State.FAILED
    assert w.machine().events[0]["request"] == {"error": "host agent: image not found"}


async def test_an_illegal_move_changes_nothing_and_calls_no_agent() -> None:
    w = World()
    await w.setup(State.STOPPED)
    before = list(w.machine().events)
    with pytest.raises(RoostError) as err:
        await w.service.suspend("app", "m1", None)
    assert err.value.status == 412 and "from current state: 'stopped'" in err.value.message
    assert w.agents.calls == [] and w.machine().state is State.STOPPED and w.machine().events == before


async def test_a_leased_machine_refuses_a_caller_without_the_nonce() -> None:
    w = World()
    m = await w.setup(State.STOPPED)
    await w.state.write_machine(m.id, now=w.clock.time(),
                                lease=Lease("n0nce", w.clock.time() + 30, "deploy", "", m.instance_id))
    with pytest.raises(RoostError) as err:
        await w.service.start("app", "m1", None)
    assert err.value.status == 409 and w.agents.calls == []
    await w.service.start("app", "m1", "n0nce")
    assert w.machine().state is State.STARTED


async def test_stop_answers_at_once_and_settles_in_the_background_with_the_exit_code() -> None:
    w = World()
    await w.setup()
    w.agents.gates["stop"] = gate = asyncio.Event()
    w.agents.answers["stop"] = {"state": "stopped", "exit_code": 143}
    assert await w.service.stop("app", "m1", {"signal": "SIGTERM", "timeout": "3s"}, None) == {"ok": True}
    assert w.machine().state is State.STOPPING
    assert w.machine().events[0]["request"] == {"signal": "SIGTERM", "timeout": 3.0}
    gate.set()
    await w.clock.settle()
    assert w.machine().state is State.STOPPED and w.machine().exit_code == 143
    assert w.agents.calls[-1][2] == {"signal": 15, "timeout": 3.0}


async def test_a_stop_the_host_cannot_answer_is_left_to_the_heartbeat() -> None:
    w = World()
    await w.setup()
    w.agents.answers["stop"] = RoostError(503, "host agent at http://h1 unreachable")
    await w.service.stop("app", "m1", None, None)
    await w.clock.settle()
    assert w.machine().state is State.STOPPING, "not guessed: the next heartbeat says what the host runs"


async def test_a_failed_suspend_leaves_the_machine_running_and_raises() -> None:
    w = World()
    await w.setup()
    w.agents.answers["suspend"] = RoostError(503, "host agent: freezer busy")
    with pytest.raises(RoostError):
        await w.service.suspend("app", "m1", None)
    assert w.machine().state is State.STARTED
    assert w.events()[-2:] == [("suspend", "suspending"), ("suspend", "failed")]


async def test_restart_stops_and_starts_in_one_agent_call_and_a_failure_settles_failed() -> None:
    w = World()
    await w.setup()
    w.agents.gates["restart"] = gate = asyncio.Event()
    await w.service.restart("app", "m1", {"force_stop": "true"}, None)
    assert w.machine().state is State.STOPPING
    w.agents.answers["restart"] = RoostError(503, "host agent: exec format error")
    gate.set()
    await w.clock.settle()
    assert w.machine().state is State.FAILED
    body = w.agents.calls[-1][2]
    assert body["signal"] == 9 and body["spec"]["id"] == "m1"


async def test_an_update_of_a_running_machine_replaces_it_with_the_new_version() -> None:
    w = World()
    await w.setup()
    result = await w.service.update("app", "m1", {"config": {"image": "w:v1", "env": {"COLOR": "blue"}}}, None)
    new_version = result["instance_id"]
    assert new_version != "v1" and result["state"] == "replacing"
    await w.clock.settle()
    m = w.machine()
    assert m.state is State.STARTED and m.instance_id == new_version
    _, path, body = w.agents.calls[-1]
    assert path == "/v1/machines/m1/restart" and body["spec"]["instance_id"] == new_version
    assert body["spec"]["env"]["COLOR"] == "blue"
    assert m.versions[0]["version"] == "v1"


async def test_an_answer_for_an_older_version_does_not_overwrite_the_new_one() -> None:
    w = World()
    await w.setup(State.STOPPED)
    w.agents.gates["start"] = gate = asyncio.Event()
    task = asyncio.ensure_future(w.service.start("app", "m1", None))
    await w.clock.settle()
    # Meanwhile the record moves on (as a concurrent update would make it).
    await w.state.write_machine("m1", now=w.clock.time(), instance_id="v2", state=State.STOPPED)
    gate.set()
    await task
    assert w.machine().state is State.STOPPED and w.machine().instance_id == "v2"


async def test_destroy_on_a_lost_host_still_destroys_and_frees_the_volume() -> None:
    w = World()
    await w.setup(State.STOPPED, mounts=[{"volume": "vol_1", "path": "/data"}])
    now = w.clock.time()
    volume = Volume("vol_1", "app", "data", "ams", "h1", 1, now, attached_machine_id="m1", attached_alloc_id="m1")
    await w.state.save(volume)
    host = w.state.hosts["h1"]
    host_copy = Host(**{**host.__dict__, "status": "unreachable"})
    await w.state.save(host_copy)
    await w.service.destroy("app", "m1", False, None)
    assert w.machine().state is State.DESTROYED and w.agents.calls == []
    assert w.state.volumes["vol_1"].attached_machine_id == ""
    assert not w.service.ops.is_busy("m1")


async def test_a_verb_on_a_machine_whose_host_is_lost_is_refused_before_any_write() -> None:
    w = World()
    await w.setup(State.STOPPED)
    host = w.state.hosts["h1"]
    await w.state.save(Host(**{**host.__dict__, "status": "unreachable"}))
    with pytest.raises(RoostError) as err:
        await w.service.start("app", "m1", None)
    assert err.value.status == 412 and "host h1 is unreachable" in err.value.message
    assert w.machine().state is State.STOPPED


async def test_background_operations_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    await w.setup()
    monkeypatch.setattr(operations, "MAX_BACKGROUND_OPS", 1)
    w.agents.gates["stop"] = gate = asyncio.Event()
    await w.service.stop("app", "m1", None, None)  # one stop waits on its agent
    with pytest.raises(RoostError) as err:
        w.service.ops.spawn(_noop())
    assert err.value.status == 503
    gate.set()
    await w.clock.settle()


async def _noop() -> None:
    return None


async def test_a_made_up_name_that_is_taken_is_drawn_again_but_a_callers_is_refused(monkeypatch) -> None:
    """Issue 21: 10,000 unnamed creates failed partway with 409 name_taken on a name the server made up."""
    w = World()
    await w.setup()  # a machine named m1
    names = iter(["m1", "m1", "fresh-name-1"])  # the first two draws collide with the existing machine
    monkeypatch.setattr("roost.server.machines.new_machine_name", lambda: next(names))
    made = await w.service.create("app", {"config": {"image": "w:v1"}, "skip_launch": True}, "user")
    assert made["name"] == "fresh-name-1"
    with pytest.raises(RoostError) as refused:
        await w.service.create("app", {"name": "m1", "config": {"image": "w:v1"}, "skip_launch": True}, "user")
    assert refused.value.status == 409 and "already exists" in refused.value.message
