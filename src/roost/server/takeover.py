"""Host failure handling on the control plane: confirm a silent host is dead through other hosts, then start
the standbys that watch its machines — only after its lease has surely run out, so that a host that is
merely cut off has fenced itself first.

Confirmation is SWIM's indirect probe: a few other live hosts are asked to reach the silent host's agent.
If any of them can, only the control plane lost it: the host stays `unknown` (suspect), nothing is taken
over, and its machines keep serving. Every takeover increments the pair's fencing token, handed to the
standby (env ROOST_FENCING_TOKEN and a file), and leaves the replaced machine stopped with a note saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from roost.clock import SYSTEM, Clock
from roost.core.errors import RoostError
from roost.core.lifecycle import State
from roost.core.machine_config import standbys as standbys_of
from roost.core.model import Machine
from roost.detector import recovery
from roost.detector.fencing import LeaseConfig, takeover_at
from roost.detector.membership import Probe, confirm
from roost.detector.recovery import ServerAction
from roost.detector.standby import MachineView, takeovers, watched_on
from roost.server.agent_client import AgentClient
from roost.server.metrics import ServerMetrics
from roost.server.operations import Operations
from roost.server.state import ClusterState

log = logging.getLogger("roost.server.takeover")

PROBE_PEERS = 3
RECOVERY_WAIT = 30.0  # how long a lost machine's restart waits for its host to be marked ok again


class StandbyController:
    def __init__(self, state: ClusterState, ops: Operations, agents: AgentClient, lease: LeaseConfig,
                 clock: Clock = SYSTEM, metrics: ServerMetrics | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.clock = clock
        self.ops = ops
        self.agents = agents
        self.lease = lease
        self.probes: dict[str, Probe] = {}  # host -> what its peers answered last
        self._probing: set[str] = set()
        self._scheduled: set[str] = set()
        self.history: list[dict[str, Any]] = []  # recent takeovers, for the API and drills (bounded)
        # What each host's agent says it would fence (sent with every heartbeat). A machine is taken over only
        # if its host knew to fence it: otherwise a host that is merely cut off could still be running it.
        self.acknowledged: dict[str, set[str]] = {}

    def nearby(self, host_id: str) -> list[MachineView]:
        """What a decision about one host reads: its machines and every standby (not the whole fleet)."""
        machines = {m.id: m for m in (*self.state.machines_on(host_id), *self.state.standby_machines())}
        return [_view(m) for m in machines.values()]

    def watched(self, host_id: str) -> list[str]:
        """Asked on every heartbeat: reads the standbys and the machines they watch, not the host's machines
        (thousands, on a big host) nor the fleet."""
        standbys = self.state.standby_machines()
        targets = [self.state.machines.get(t) for s in standbys for t in standbys_of(s.config)]
        machines = {m.id: m for m in (*standbys, *targets) if m is not None and m.state is not State.DESTROYED}
        return sorted(watched_on(host_id, (_view(m) for m in machines.values())))

    def peers(self, host_id: str) -> list[dict[str, str]]:
        return [{"id": h.id, "agent_url": h.agent_url} for h in self.state.hosts.values()
                if h.id != host_id and h.status != "unreachable"]

    # ---- indirect probes ----

    def probe_soon(self, host_id: str) -> None:
        if host_id in self._probing:
            return
        self._probing.add(host_id)
        self.ops.spawn(self._probe(host_id))

    async def _probe(self, host_id: str) -> None:
        try:
            target = self.state.hosts.get(host_id)
            if target is None:
                return
            peers = [h for h in self.state.hosts.values() if h.id != host_id and h.status == "ok"][:PROBE_PEERS]
            reachable = False
            if peers:
                results = await asyncio.gather(*(self._ask(p.agent_url, target.agent_url) for p in peers),
                                               return_exceptions=True)
                reachable = any(r is True for r in results)
            self.probes[host_id] = Probe(self.clock.time(), reachable)
            log.info("indirect probe of %s through %d peers: %s", host_id, len(peers),
                     "reachable" if reachable else "unreachable")
        finally:
            self._probing.discard(host_id)

    async def _ask(self, peer_url: str, target_url: str) -> bool:
        timeout = self.lease.probe_timeout
        answer = await self.agents.call(peer_url, "POST", "/v1/probe", {"url": f"{target_url}/healthz",
                                                                        "timeout": timeout}, timeout=timeout + 2)
        return bool(answer and answer.get("reachable"))

    def confirmed_dead(self, host_id: str, last_seen: float) -> bool | None:
        """The detector's verdict on a silent host from its peers' answers (None while waiting for one)."""
        dead, again = confirm(self.probes.get(host_id), last_seen, self.clock.time())
        if again:
            self.probe_soon(host_id)
        return dead

    # ---- takeovers ----

    def host_dead(self, host_id: str, last_seen: float) -> None:
        if host_id not in self._scheduled:
            self._scheduled.add(host_id)
            self.ops.spawn(self._take_over(host_id, last_seen))

    def host_back(self, host_id: str, last_seen: dict[str, float] | None = None) -> None:
        self._scheduled.discard(host_id)
        self.probes.pop(host_id, None)
        # A standby whose own host was down too (a region outage) can take over now that it is back, if the
        # machine it watches is still on a dead host.
        for other in self.state.hosts.values():
            if other.id != host_id and other.status == "unreachable" and last_seen is not None:
                self.host_dead(other.id, last_seen.get(other.id, other.last_heartbeat))

    # ---- a host's machines when it is back ----

    def machine_lost(self, machine_id: str, desired: State) -> None:
        """An agent reports a machine its host lost (a power cut, or fenced while cut off); `desired` is the
        state the store held before the report. The recovery rule says whether it runs again."""
        m = self.state.machines.get(machine_id)
        if m is None:
            return
        action = recovery.on_machine_lost(desired, m.fencing)
        log.info("%s lost with its host (was %s): %s", machine_id, desired, action.value)
        if action is ServerAction.START:
            self.ops.spawn(self._run_again(machine_id))

    async def _run_again(self, machine_id: str) -> None:
        deadline = self.clock.monotonic() + RECOVERY_WAIT
        while True:  # its report can arrive before the heartbeat that marks the host ok
            m = self.state.machines.get(machine_id)
            if m is None:
                return
            host = self.state.hosts.get(m.host_id)
            if host is not None and host.status == "ok":
                break
            if self.clock.monotonic() > deadline:
                log.warning("not restarting %s: its host %s did not come back within %gs", machine_id, m.host_id,
                            RECOVERY_WAIT)
                return
            await self.clock.sleep(0.05)
        for _ in range(20):  # a host just back may take a moment to answer: bounded, then try anyway
            with contextlib.suppress(RoostError):
                await self.agents.call(host.agent_url, "GET", "/healthz", timeout=1)
                break
            await self.clock.sleep(0.1)
        async with self.ops.lock(machine_id):
            m = self.state.machines.get(machine_id)
            # Checked again under the lock a takeover also takes: the work may have moved meanwhile.
            if m is None or m.state is not State.STOPPED or recovery.replaced_by(m.fencing):
                return
            why = f"its host {m.host_id} came back and no standby had taken over its work"
            with contextlib.suppress(RoostError):
                await self.ops.start(m, "flyd", {"reason": why}, note=f"running again: {why}")

    async def _take_over(self, host_id: str, last_seen: float) -> None:
        try:
            delay = takeover_at(last_seen, self.lease) - self.clock.time()
            if delay > 0:
                await self.clock.sleep(delay)  # the host has surely fenced itself by now
            host = self.state.hosts.get(host_id)
            if host is None or host.status != "unreachable":
                return
            live = {h.id for h in self.state.hosts.values() if h.status == "ok"}
            # what it said to this server, else what it said to the leader before (kept in the store)
            known = self.acknowledged.get(host_id) or set(host.acknowledged)
            for plan in takeovers(host_id, self.nearby(host_id), live):
                if plan.watched not in known:
                    log.warning("not starting standby %s for %s: host %s went silent before it acknowledged "
                                "that it must fence %s (it may still be running it)", plan.standby, plan.watched,
                                host_id, plan.watched)
                    await self.ops.write(
                        plan.watched,
                        note=f"host {host_id} went silent before it learned of standby {plan.standby}; not taken "
                             "over, to be safe")
                    continue
                try:
                    await self._start_standby(host_id, plan.watched, plan.standby)
                except Exception:
                    log.exception("takeover of %s by %s failed", plan.watched, plan.standby)
        finally:
            self._scheduled.discard(host_id)

    async def _start_standby(self, host_id: str, watched_id: str, standby_id: str) -> None:
        async with self.ops.lock(watched_id):
            # Under the watched machine's lock, which a restart after its host's return takes too: the host may
            # have come back while this waited, and then its machine runs again instead.
            host = self.state.hosts.get(host_id)
            watched = self.state.machines[watched_id]
            if host is None or host.status != "unreachable" or recovery.replaced_by(watched.fencing):
                return
            standby = self.state.machines[standby_id]
            token = max(int(watched.fencing.get("token", 1)), int(standby.fencing.get("token", 1))) + 1
            now = self.clock.time()
            note = (f"replaced by standby {standby_id}: host {host_id} failed at "
                    f"{time.strftime('%H:%M:%S', time.gmtime(now))} UTC (fencing token {token})")
            fencing = {"token": token, "pair": [watched_id, standby_id], "holder": standby_id, "at": now}
            log.info("takeover: %s on dead host %s -> standby %s (token %d)", watched_id, host_id, standby_id,
                     token)
            await self.ops.write(
                watched_id, state=State.STOPPED, note=note,
                fencing={**fencing, "replaced_by": standby_id},
                event=self.ops.event("takeover", "replaced", "flyd",
                                    {"standby": standby_id, "host": host_id, "fencing_token": token}))
        standby = await self.ops.write(
            standby_id, state=State.STARTING, fencing=fencing, checks={},
            note=f"took over from {watched_id} (host {host_id} failed; fencing token {token})",
            event=self.ops.event("takeover", "starting", "flyd",
                                {"replaces": watched_id, "host": host_id, "fencing_token": token}))
        self.history.append({"watched": watched_id, "standby": standby_id, "host": host_id, "token": token,
                             "at": now})
        del self.history[:-100]
        if self.metrics is not None:
            self.metrics.takeovers.inc()
        async with self.ops.lock(standby_id):
            with contextlib.suppress(Exception):
                await self.ops.call_start(standby)


def _view(m: Machine) -> MachineView:
    return MachineView(m.id, m.host_id, m.state, tuple(standbys_of(m.config)))
