"""The one way a machine's state changes through its host: transitional write → agent call → settle.

Every verb that needs a host agent (start, stop, suspend, restart, replace, destroy) is an `AgentOp`: the
lifecycle table names the transitional state it writes first, and the op says how the agent is asked and how
its answer (or its failure) settles the machine. The runner holds what every verb shares: the per-machine
operation lock, the record writes with their events, the host checks, the error mapping and the bounded set
of background operations. The machine service (the API's verbs), the host service and the standby
controller all change machines through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from roost import tasks
from roost.clock import SYSTEM, Clock
from roost.core import lifecycle
from roost.core.agent_spec import AgentSpec
from roost.core.errors import RoostError, precondition
from roost.core.events import machine_event
from roost.core.lifecycle import Action, State
from roost.core.model import Host, Machine
from roost.keyed_locks import KeyedLocks
from roost.server.agent_client import AgentClient
from roost.server.state import ClusterState

log = logging.getLogger("roost.server.operations")

AGENT_START_TIMEOUT = 60.0  # an image pull and a cold start
AGENT_STOP_GRACE = 30.0  # beyond the machine's own kill timeout
MAX_BACKGROUND_OPS = 1000


@dataclass(frozen=True)
class AgentOp:
    """How one verb is carried out by a host agent and settled from its answer."""

    action: Action  # the lifecycle rule: which states allow it, which transitional state it writes
    method: str
    path: str  # after /v1/machines/{id}
    event: str  # the event type of the transitional write and of a failure
    done: str  # the event type recorded when the agent answers
    reports: State  # what an answer without a state means
    on_failure: State | None  # settled when the agent fails; None: the heartbeat's repair settles it later
    raises: bool  # the caller waits for the answer and sees the agent's error


START = AgentOp(Action.START, "POST", "/start", "start", "start", State.STARTED, State.FAILED, True)
STOP = AgentOp(Action.STOP, "POST", "/stop", "stop", "stop", State.STOPPED, None, False)
SUSPEND = AgentOp(Action.SUSPEND, "POST", "/suspend", "suspend", "suspend", State.SUSPENDED, State.STARTED, True)
RESTART = AgentOp(Action.RESTART, "POST", "/restart", "restart", "restart", State.STARTED, State.FAILED, False)
# An update of a running machine: the agent stops the old version and starts the new one in one call.
REPLACE = AgentOp(Action.UPDATE, "POST", "/restart", "update", "start", State.STARTED, State.FAILED, False)


class Operations:
    def __init__(self, state: ClusterState, agents: AgentClient, spec_for: Callable[[Machine], AgentSpec],
                 clock: Clock = SYSTEM) -> None:
        self.state = state
        self.agents = agents
        self.spec_for = spec_for
        self.clock = clock
        self._locks = KeyedLocks()
        self._background: set[asyncio.Task[None]] = set()

    # ---- one operation at a time per machine ----

    def lock(self, machine_id: str) -> asyncio.Lock:
        return self._locks(machine_id)

    def is_busy(self, machine_id: str) -> bool:
        return self._locks.busy(machine_id)

    def forget(self, machine_id: str) -> None:
        self._locks.forget(machine_id)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an operation in the background (bounded: a flood of requests gets a 503, not a memory leak)."""
        if len(self._background) >= MAX_BACKGROUND_OPS:
            coro.close()
            raise RoostError(503, "too many machine operations in progress; retry shortly")
        tasks.spawn(coro, getattr(coro, "__qualname__", "machine-op"), keep=self._background)

    async def shutdown(self, timeout: float = 5.0) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

    # ---- the host ----

    def host_for(self, m: Machine, verb: str) -> Host:
        host = self.state.hosts.get(m.host_id)
        if host is None:
            raise precondition(f"unable to {verb} machine {m.id}: its host {m.host_id!r} is not registered")
        if host.status != "ok":
            raise precondition(f"unable to {verb} machine {m.id}: its host {host.id} is {host.status}")
        return host

    def live_host(self, m: Machine) -> Host | None:
        host = self.state.hosts.get(m.host_id)
        return host if host is not None and host.status == "ok" else None

    # ---- record writes ----

    async def write(self, machine_id: str, *, state: State | None = None, event: dict[str, Any] | None = None,
                    **changes: Any) -> Machine:
        return await self.state.write_machine(machine_id, state=state, event=event, now=self.clock.time(), **changes)

    def event(self, kind: str, status: str, source: str = "user", detail: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        return machine_event(kind, status, source, detail, now=self.clock.time())

    async def settle(self, machine_id: str, instance_id: str, reported: State, event: dict[str, Any] | None,
                     **changes: Any) -> Machine | None:
        """Record what the agent says happened, unless the machine moved on to another version meanwhile."""
        current = self.state.machines.get(machine_id)
        if current is None or current.instance_id != instance_id:
            return None
        return await self.write(machine_id, state=lifecycle.observed(current.state, reported), event=event,
                                **changes)

    async def enter(self, m: Machine, op: AgentOp, cause: str = "user", detail: dict[str, Any] | None = None,
                    **changes: Any) -> Machine:
        """Write the op's transitional state (the lifecycle table's) with its event."""
        enters = lifecycle.TABLE[op.action].enters
        assert enters is not None, f"{op.action} writes no transitional state"
        return await self.write(m.id, state=enters, event=self.event(op.event, str(enters), cause, detail),
                                **changes)

    # ---- the agent call ----

    async def call(self, m: Machine, op: AgentOp, body: Any = None,
                   timeout: float = AGENT_START_TIMEOUT) -> Machine | None:
        """Ask the machine's host to carry out `op` and settle the record from the answer.

        On failure the record settles to `op.on_failure` (if the op names one) and the error is raised to a
        caller who waits (`op.raises`); otherwise it is logged and the heartbeat's repair settles the state
        once the host answers again."""
        try:
            host = self.host_for(m, op.event)
            result = await self.agents.call(host.agent_url, op.method, f"/v1/machines/{m.id}{op.path}", body,
                                            timeout=timeout)
        except RoostError as exc:
            if op.on_failure is not None:
                await self.settle(m.id, m.instance_id, op.on_failure,
                                  self.event(op.event, "failed", "flyd", {"error": exc.message}))
            if op.raises:
                raise
            log.warning("%s %s failed: %s", op.event, m.id, exc.message)
            return None
        result = result if isinstance(result, dict) else {}
        reported = State(result.get("state", op.reports))
        changes: dict[str, Any] = {}
        detail: dict[str, Any] | None = None
        if "exit_code" in result:
            changes["exit_code"] = result["exit_code"]
            detail = {"exit_code": result["exit_code"]}
        return await self.settle(m.id, m.instance_id, reported, self.event(op.done, str(reported), "flyd", detail),
                                 **changes)

    # ---- the shared verbs ----

    async def start(self, m: Machine, cause: str = "user", detail: dict[str, Any] | None = None,
                    **changes: Any) -> Machine | None:
        """Write STARTING, start `m` on its host, settle (FAILED on an agent error, raised). The caller holds
        the machine's lock."""
        m = await self.enter(m, START, cause, detail, checks={}, **changes)
        return await self.call_start(m)

    async def call_start(self, m: Machine) -> Machine | None:
        """Ask the host to run `m` (its transitional state, if any, already written) and settle."""
        return await self.call(m, START, self.spec_for(m).to_json(), AGENT_START_TIMEOUT)

    async def stop(self, m: Machine, sig: int, timeout: float) -> None:
        """Ask the host to stop `m` (already written STOPPING) and settle; failures are left to the heartbeat."""
        await self.call(m, STOP, {"signal": sig, "timeout": timeout}, timeout + AGENT_STOP_GRACE)

    async def restart(self, m: Machine, op: AgentOp, sig: int, timeout: float) -> None:
        """Stop the running version and start the record's (RESTART, or REPLACE after an update)."""
        async with self.lock(m.id):
            await self.call(m, op, {"signal": sig, "timeout": timeout, "spec": self.spec_for(m).to_json()},
                            timeout + AGENT_START_TIMEOUT)
