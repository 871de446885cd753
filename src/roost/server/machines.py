"""Machine operations: the Machines API's verbs, checked against the lifecycle table, carried out by agents.

Every verb follows one shape: check the request (lease, lifecycle table) and fail fast without changing
anything; under the machine's operation lock write the transitional state; ask the host's agent; settle
the state from the agent's answer. Long agent work (a stop that waits kill_timeout) runs in a background
task; the transitional state written before it guards the machine against conflicting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from roost.clock import SYSTEM, Clock
from roost.core import lifecycle
from roost.core import machine_config as mc
from roost.core.errors import RoostError, bad_request, conflict, not_found, precondition
from roost.core.events import machine_event
from roost.core.exec_request import exec_request
from roost.core.ids import APP_NAME_RE, new_machine_id, new_machine_name, new_nonce, new_ulid
from roost.core.lifecycle import Action, State
from roost.core.model import Lease, Machine, rfc3339
from roost.core.units import duration_seconds, lease_seconds, parse_signal, signal_name
from roost.detector import recovery
from roost.placement.scheduler import PlacementRequest, allocate_ports, machine_address, place
from roost.server.agent_client import AgentClient
from roost.server.operations import AGENT_START_TIMEOUT, REPLACE, RESTART, STOP, SUSPEND, Operations
from roost.server.specs import SpecBuilder
from roost.server.state import ClusterState

log = logging.getLogger("roost.server.machines")

WAIT_MAX_SECONDS = 60
WAITABLE_STATES = {"started", "stopped", "suspended", "destroyed", "created", "failed"}


class MachineService:
    def __init__(self, state: ClusterState, agents: AgentClient, default_region: str,
                 secrets: Callable[[str], dict[str, str]] = lambda _app: {}, clock: Clock = SYSTEM,
                 specs: SpecBuilder | None = None) -> None:
        self.state = state
        self.clock = clock
        self.default_region = default_region
        self.specs = specs or SpecBuilder(state, secrets)
        self.ops = Operations(state, agents, self.specs.agent_spec, clock)
        self.on_placement: Callable[[str, str], None] = lambda region, result: None  # (region, result): metrics

    # ---- lookups and guards ----

    def app_or_404(self, app: str) -> None:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")

    def get(self, app: str, machine_id: str) -> Machine:
        self.app_or_404(app)
        m = self.state.app_machines.get(app, {}).get(machine_id)
        if m is None:
            raise not_found(f"machine {machine_id!r} not found in app {app!r}")
        return m

    @staticmethod
    def check_lease(m: Machine, nonce: str | None, now: float) -> None:
        lease = m.lease
        if lease is None or lease.expires_at <= now:
            return
        if nonce == lease.nonce:
            return
        raise conflict(
            f"machine {m.id} is leased by {lease.owner} until {rfc3339(lease.expires_at)}; "
            "send the lease's nonce in the fly-machine-lease-nonce header, or wait for it to expire"
        )

    def _checked(self, app: str, machine_id: str, nonce: str | None) -> Machine:
        m = self.get(app, machine_id)
        self.check_lease(m, nonce, self.clock.time())
        return m

    async def shutdown(self, timeout: float = 5.0) -> None:
        await self.ops.shutdown(timeout)

    # ---- create ----

    async def create(self, app: str, body: Any, owner: str) -> dict[str, Any]:
        self.app_or_404(app)
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object with at least {\"config\": {\"image\": ...}}")
        config = mc.normalize(body.get("config"))
        name = body.get("name") or new_machine_name()
        if not isinstance(name, str) or not APP_NAME_RE.match(name):
            raise bad_request(f"name: invalid machine name {name!r} (lowercase letters, digits and dashes)")
        skip_launch = _bool(body.get("skip_launch"), "skip_launch")
        skip_reg = _bool(body.get("skip_service_registration"), "skip_service_registration")
        lease_ttl = body.get("lease_ttl")
        if lease_ttl is not None:
            lease_seconds(lease_ttl, "lease_ttl")
        region = body.get("region")
        if region is not None and not isinstance(region, str):
            raise bad_request("region: expected a region code like \"ams\"")
        image = await self.specs.choose(config["image"])
        self._check_standbys(app, config, None)

        async with self.state.lock:
            taken = {other.name for other in self.state.app_machines.get(app, {}).values()
                     if other.state is not State.DESTROYED}
            if name in taken:
                if body.get("name"):
                    raise RoostError(409, f"a machine named {name!r} already exists in app {app!r}", "name_taken")
                name = _fresh_name(taken)  # a name we made up: never the caller's conflict (as Fly)
            app_rec = self.state.apps[app]
            volume = self._volume_for(app, config, None)
            region = region or (volume.region if volume else "") or app_rec.primary_region or self.default_region
            if volume and volume.region != region:
                raise bad_request(f"volume {volume.id} is in region {volume.region!r}, not {region!r}")
            g = mc.guest(config)
            watched_hosts = self._watched_hosts(app, config)
            if volume and volume.host_id in watched_hosts:
                raise precondition(f"volume {volume.id} is on host {volume.host_id}, which runs a machine this "
                                   "standby stands by for: a standby must be on another host to survive it; "
                                   "give it a volume on another host")
            try:
                host = place(PlacementRequest(app, mc.process_group(config), region, g.cpu_kind, g.cpus, g.memory_mb,
                                              pinned_host=volume.host_id if volume else None,
                                              exclude_hosts=frozenset(watched_hosts)),
                             self.state.host_views())
            except RoostError as exc:  # a region no host is in is not a label (a caller could make endless ones)
                known = any(h.region == region for h in self.state.hosts.values())
                self.on_placement(region if known else "(unknown)", exc.fly_status or "refused")
                raise
            self.on_placement(region, "placed")
            now = self.clock.time()
            host_rec = self.state.hosts[host.id]
            if host_rec.machine_net:  # a machine with a network of its own: its address, its own ports
                private_ip = machine_address(host_rec.machine_net, self.state.used_addresses(host.id))
                ports = {str(p): p for p in mc.internal_ports(config)}
            else:
                private_ip = host_rec.address
                ports = allocate_ports(mc.internal_ports(config), self.state.used_ports(host.id))
            m = Machine(
                id=new_machine_id(), app=app, name=name, region=region, host_id=host.id, state=State.CREATED,
                instance_id=new_ulid(), config=config, image_ref=image.image_ref, private_ip=private_ip,
                created_at=now, updated_at=now, ports=ports, skip_service_registration=skip_reg,
                image_source=image.source,
            )
            m.add_event(machine_event("launch", "created", "user", now=now))
            if lease_ttl:
                m.lease = Lease(new_nonce(), now + lease_ttl, owner, "", m.instance_id)
            to_save: list[Any] = [m]
            if volume:
                attached = _copy(volume)
                attached.attached_machine_id = m.id
                attached.attached_alloc_id = m.id
                to_save.append(attached)
            await self.state.save(*to_save)

        if not skip_launch and not mc.standbys(config):
            self.ops.spawn(self._launch(m.id))
        else:
            self.ops.spawn(self._stage(m))
        result = self.state.machine_api(m)
        if m.lease:
            result["nonce"] = m.lease.nonce
        return result

    def _check_standbys(self, app: str, config: dict[str, Any], self_id: str | None) -> None:
        for sid in mc.standbys(config):
            if sid == self_id:
                raise bad_request("config.standbys: a machine cannot be a standby for itself")
            other = self.state.app_machines.get(app, {}).get(sid)
            if other is None or other.state is State.DESTROYED:
                raise bad_request(f"config.standbys: machine {sid!r} not found in app {app!r}")
        if mc.standbys(config) and config.get("services"):
            raise bad_request("config.standbys: a standby has no services (the edge never routes to it, even when "
                              "the machine it stands by for has them); remove config.services")

    def _watched_hosts(self, app: str, config: dict[str, Any]) -> set[str]:
        """The hosts a standby with this config must not share: those of the machines it stands by for."""
        machines = self.state.app_machines.get(app, {})
        return {machines[sid].host_id for sid in mc.standbys(config) if sid in machines}

    def _volume_for(self, app: str, config: dict[str, Any], machine_id: str | None) -> Any:
        mount = mc.volume_mount(config)
        if not mount:
            return None
        volume = self.state.volumes.get(mount[0])
        if volume is None or volume.app != app:
            raise bad_request(f"config.mounts[0].volume: volume {mount[0]!r} not found in app {app!r}")
        if volume.attached_machine_id and volume.attached_machine_id != machine_id:
            holder = self.state.machines.get(volume.attached_machine_id)
            if holder is not None and holder.state is not State.DESTROYED:
                raise precondition(f"volume {volume.id} is already attached to machine {holder.id}")
        return volume

    async def _stage(self, m: Machine) -> None:
        """Give the host agent the machine's spec ahead of its first start, so that a proxy can start it
        without the control plane. Best effort: the server can always start it itself."""
        host = self.ops.live_host(m)
        if host is not None:
            with contextlib.suppress(RoostError):
                await self.ops.agents.call(host.agent_url, "PUT", f"/v1/machines/{m.id}",
                                           self.specs.agent_spec(m).to_json(), timeout=10)

    async def _discard_snapshot(self, m: Machine, stage: bool = True) -> None:
        """A suspended machine updated to a new version: its frozen process (the old version's memory) is
        killed, not resumed; the new version starts cold."""
        host = self.ops.live_host(m)
        if host is not None:
            with contextlib.suppress(RoostError):
                await self.ops.agents.call(host.agent_url, "POST", f"/v1/machines/{m.id}/stop",
                                           {"signal": 9, "timeout": 1}, timeout=15)
        if stage:
            await self._stage(m)

    async def _launch(self, machine_id: str) -> None:
        async with self.ops.lock(machine_id):
            m = self.state.machines.get(machine_id)
            if m is None or m.state is not State.CREATED:
                return
            with contextlib.suppress(RoostError):
                await self.ops.start(m)

    # ---- lifecycle verbs ----

    async def start(self, app: str, machine_id: str, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        if mc.standbys(m.config) and not recovery.holds_work(m.id, m.fencing):
            raise precondition(
                f"machine {m.id} is a standby for {', '.join(mc.standbys(m.config))}: it starts only when a "
                f"watched machine's host fails; clear it with 'roost machine update {m.id} --standby-for \"\"'"
            )
        if recovery.replaced_by(m.fencing) and m.state is not State.DESTROYED:
            await self._hand_back(m)
        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            previous = str(m.state)
            if lifecycle.check(Action.START, m.state):
                self.ops.host_for(m, "start")
                if m.state is State.SUSPENDED:
                    # A resume takes a few ms: the operation lock guards it without a transitional write.
                    await self.ops.call_start(m)
                else:
                    await self.ops.start(m)
        return {"previous_state": previous, "migrated": False, "new_host": ""}

    async def _hand_back(self, m: Machine) -> None:
        """The operator starts a machine its standby replaced: stop the standby (it holds the work), give
        both a fencing token above any before, and leave the standby a standby again."""
        standby_id = recovery.replaced_by(m.fencing)
        async with self.ops.lock(standby_id):
            standby = self.state.machines.get(standby_id)
            if standby is not None and standby.state not in (State.DESTROYED, State.STOPPED, State.CREATED):
                host = self.state.hosts.get(standby.host_id)
                if host is None or host.status != "ok":
                    raise precondition(
                        f"machine {m.id} was replaced by standby {standby_id}, whose host {standby.host_id} is "
                        f"{host.status if host else 'gone'}: it may still be running, so {m.id} cannot take "
                        "the work back yet; wait for that host, or destroy the standby with --force")
                if standby.state not in lifecycle.TRANSIENT:
                    standby = await self.ops.enter(standby, STOP, "user", {"reason": f"{m.id} takes its work back"})
                await self.ops.stop(standby, mc.stop_signal(standby.config), mc.stop_timeout(standby.config))
                standby = self.state.machines[standby_id]
                if standby.state is not State.STOPPED:
                    raise precondition(f"standby {standby_id} did not stop (it is {standby.state}), so {m.id} "
                                       "cannot take its work back; try again")
            back = recovery.hand_back(m.id, standby_id, m.fencing, standby.fencing if standby else {},
                                      self.clock.time())
            if standby is not None and standby.state is not State.DESTROYED:
                await self.ops.write(standby_id, fencing=back.standby,
                                     note=f"handed the work back to {m.id} (fencing token {back.token}); a "
                                          "standby for it again",
                                     event=self.ops.event("handback", "stopped", "user", {
                                         "to": m.id, "fencing_token": back.token}))
        log.info("hand-back: %s takes its work back from %s (token %d)", m.id, standby_id, back.token)
        await self.ops.write(m.id, fencing=back.watched,
                             note=f"took its work back from standby {standby_id} (fencing token {back.token})",
                             event=self.ops.event("handback", "started", "user", {
                                 "from": standby_id, "fencing_token": back.token}))

    async def stop(self, app: str, machine_id: str, body: Any, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        body = body if isinstance(body, dict) else {}
        sig = parse_signal(body["signal"]) if body.get("signal") else mc.stop_signal(m.config)
        timeout = (duration_seconds(body["timeout"], field="timeout", int_unit=1.0) if body.get("timeout") is not None
                   else mc.stop_timeout(m.config))
        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            if not lifecycle.check(Action.STOP, m.state):
                return {"ok": True}
            if m.state is State.CREATED:
                await self.ops.write(m.id, state=State.STOPPED, event=self.ops.event("stop", "stopped", "user"))
                return {"ok": True}
            self.ops.host_for(m, "stop")
            m = await self.ops.enter(m, STOP, "user", {"signal": signal_name(sig), "timeout": timeout})
        # Not under the lock: a stop may wait the machine's kill timeout; STOPPING guards it meanwhile.
        self.ops.spawn(self.ops.stop(m, sig, timeout))
        return {"ok": True}

    async def suspend(self, app: str, machine_id: str, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            if not lifecycle.check(Action.SUSPEND, m.state):
                return {"ok": True}
            self.ops.host_for(m, "suspend")
            m = await self.ops.enter(m, SUSPEND)
            await self.ops.call(m, SUSPEND, {}, AGENT_START_TIMEOUT)
        return {"ok": True}

    async def restart(self, app: str, machine_id: str, query: dict[str, str], nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        sig = parse_signal(query["signal"]) if query.get("signal") else mc.stop_signal(m.config)
        timeout = (duration_seconds(query["timeout"], field="timeout", int_unit=1.0) if query.get("timeout")
                   else mc.stop_timeout(m.config))
        if query.get("force_stop", "").lower() in ("1", "true"):
            sig = parse_signal("SIGKILL")
        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            lifecycle.check(Action.RESTART, m.state)
            self.ops.host_for(m, "restart")
            m = await self.ops.enter(m, RESTART)
        self.ops.spawn(self.ops.restart(m, RESTART, sig, timeout))
        return {"ok": True}

    async def signal(self, app: str, machine_id: str, body: Any, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        if not isinstance(body, dict) or "signal" not in body:
            raise bad_request("body must be {\"signal\": \"SIGTERM\"} (a signal name or number)")
        sig = parse_signal(body["signal"])
        lifecycle.check(Action.SIGNAL, m.state)
        host = self.ops.host_for(m, "signal")
        await self.ops.agents.call(host.agent_url, "POST", f"/v1/machines/{m.id}/signal", {"signal": sig})
        await self.ops.write(m.id, event=self.ops.event("signal", signal_name(sig), "user"))
        return {"ok": True}

    async def exec(self, app: str, machine_id: str, body: Any) -> dict[str, Any]:
        """Fly's exec: run a command in a started machine, through its host's agent."""
        m = self.get(app, machine_id)
        command, stdin, timeout = exec_request(body)
        if m.state is not State.STARTED:
            raise precondition(f"machine {m.id} is {m.state}: commands run only in a started machine")
        host = self.ops.host_for(m, "exec")
        result: dict[str, Any] = await self.ops.agents.call(
            host.agent_url, "POST", f"/v1/machines/{m.id}/exec",
            {"command": command, "stdin": stdin.decode(), "timeout": timeout}, timeout=timeout + 10)
        return result

    def console_target(self, app: str, machine_id: str) -> tuple[str, Machine]:
        """The agent URL that opens a console in the machine (a started one)."""
        m = self.get(app, machine_id)
        if m.state is not State.STARTED:
            raise precondition(f"machine {m.id} is {m.state}: a console opens only in a started machine")
        return self.ops.host_for(m, "open a console in").agent_url, m

    async def processes(self, app: str, machine_id: str, sort_by: str, order: str) -> list[dict[str, Any]]:
        """Fly's ps: the machine's processes, sorted by `sort_by` (pid, cpu, rss, rtime, stime, command)."""
        m = self.get(app, machine_id)
        if sort_by not in ("", "pid", "cpu", "rss", "rtime", "stime", "command"):
            raise bad_request(f"sort_by: {sort_by!r} is not one of pid, cpu, rss, rtime, stime, command")
        if order not in ("", "asc", "desc"):
            raise bad_request(f"order: {order!r} is not asc or desc")
        if m.state is not State.STARTED:
            raise precondition(f"machine {m.id} is {m.state}: only a started machine has processes")
        host = self.ops.host_for(m, "ps")
        found: list[dict[str, Any]] = await self.ops.agents.call(host.agent_url, "GET", f"/v1/machines/{m.id}/ps")
        key = sort_by or "pid"
        return sorted(found, key=lambda p: (p.get(key) is None, p.get(key) or 0), reverse=order == "desc")

    async def memory(self, app: str, machine_id: str) -> dict[str, Any]:
        """Fly's memory view: the limit the machine runs under now and how much of it is free (MB). A machine
        that is not running has its configured memory, all of it free."""
        m = self.get(app, machine_id)
        if m.state is not State.STARTED:
            configured = mc.guest(m.config).memory_mb
            return {"limit_mb": configured, "available_mb": configured}
        host = self.ops.host_for(m, "memory")
        found: dict[str, Any] = await self.ops.agents.call(host.agent_url, "GET", f"/v1/machines/{m.id}/memory")
        return found

    async def set_memory(self, app: str, machine_id: str, body: Any) -> dict[str, Any]:
        """Change a running machine's memory limit live, up to its configured memory (guest.memory_mb): for
        more, update the machine (or `roost scale memory`). The change lasts until the machine next starts."""
        m = self.get(app, machine_id)
        limit = body.get("limit_mb") if isinstance(body, dict) else None
        configured = mc.guest(m.config).memory_mb
        if not isinstance(limit, int) or isinstance(limit, bool) or not MIN_LIVE_MEMORY_MB <= limit <= configured:
            raise bad_request(f"limit_mb: expected a whole number of MB from {MIN_LIVE_MEMORY_MB} to the machine's "
                              f"guest.memory_mb ({configured}); for more, update the machine's guest.memory_mb")
        if m.state is not State.STARTED:
            raise precondition(f"machine {m.id} is {m.state}: only a running machine's memory changes live; "
                               "update its guest.memory_mb instead")
        host = self.ops.host_for(m, "memory")
        found: dict[str, Any] = await self.ops.agents.call(host.agent_url, "PUT", f"/v1/machines/{m.id}/memory",
                                                           {"limit_mb": limit})
        return found

    async def cordon(self, app: str, machine_id: str, cordoned: bool, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        lifecycle.check(Action.CORDON, m.state)
        # Uncordon also puts a machine created with skip_service_registration into service (bluegreen).
        if m.cordoned != cordoned or (not cordoned and m.skip_service_registration):
            await self.ops.write(m.id, cordoned=cordoned, skip_service_registration=False if not cordoned
                                 else m.skip_service_registration,
                                 event=self.ops.event("cordon" if cordoned else "uncordon", "ok", "user"))
        return {"ok": True}

    # ---- update ----

    async def update(self, app: str, machine_id: str, body: Any, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object with {\"config\": {...}}")
        config = mc.normalize(body.get("config"))
        if body.get("lease_ttl") is not None:
            lease_seconds(body["lease_ttl"], "lease_ttl")
        if body.get("region") not in (None, "", m.region):
            raise bad_request(f"region: a machine cannot move (it is in {m.region!r}); create a new one instead")
        if body.get("name") not in (None, "", m.name):
            raise bad_request("name: a machine's name cannot be changed")
        current_version = body.get("current_version")
        if current_version and current_version != m.instance_id:
            raise precondition(f"current_version {current_version!r} does not match the machine's version "
                               f"{m.instance_id!r}; fetch the machine and retry")
        skip_launch = body.get("skip_launch")
        if skip_launch is not None:
            skip_launch = _bool(skip_launch, "skip_launch")
        image = await self.specs.choose(config["image"])
        self._check_standbys(app, config, m.id)

        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            lifecycle.check(Action.UPDATE, m.state)
            # Only newly watched machines: an existing pair is not re-judged on every deploy.
            added = [sid for sid in mc.standbys(config) if sid not in mc.standbys(m.config)]
            shared = self._watched_hosts(app, {"standbys": added}) & {m.host_id}
            if shared:
                raise precondition(f"machine {m.id} runs on host {m.host_id}, like a machine it would stand by for: "
                                   "a standby must be on another host to survive it; make a new one with "
                                   f"'roost machine clone {mc.standbys(config)[0]} --standby-for source'")
            old_mount, new_mount = mc.volume_mount(m.config), mc.volume_mount(config)
            if (old_mount[0] if old_mount else None) != (new_mount[0] if new_mount else None):
                raise bad_request("config.mounts: a machine's volume cannot be changed by an update; "
                                  "destroy the machine and create a new one with the volume")
            was_running = m.state is State.STARTED
            is_standby = bool(mc.standbys(config))
            if skip_launch is True or (is_standby and not was_running):
                run_after = False  # a standby starts only when it takes over (one that did runs on)
            elif skip_launch is False:
                run_after = True
            else:
                run_after = was_running
            if was_running or run_after:
                self.ops.host_for(m, "update")
            async with self.state.lock:
                current = self.state.machines[m.id]
                updated = current.copy()
                updated.versions.insert(0, {"version": current.instance_id, "user_config": current.config})
                del updated.versions[10:]
                updated.config = config
                updated.image_ref = image.image_ref
                updated.image_source = image.source
                updated.instance_id = new_ulid()
                updated.checks = {}  # the new version reports its own
                if self.state.hosts[m.host_id].machine_net:
                    updated.ports = {str(p): p for p in mc.internal_ports(config)}
                else:
                    updated.ports = allocate_ports(mc.internal_ports(config), self.state.used_ports(m.host_id, m.id),
                                                   existing=current.ports)
                if "skip_service_registration" in body:
                    updated.skip_service_registration = _bool(body["skip_service_registration"],
                                                              "skip_service_registration")
                if was_running:
                    updated.state = State.REPLACING
                elif current.state is State.SUSPENDED:
                    updated.state = State.STOPPED  # the snapshot belongs to the old version
                updated.add_event(self.ops.event("update", "replacing" if was_running else "updated", "user"))
                updated.updated_at = self.clock.time()
                if body.get("lease_ttl"):
                    updated.lease = Lease(new_nonce(), self.clock.time() + body["lease_ttl"], "update", "",
                                          updated.instance_id)
                await self.state.save(updated)
            m = updated
            if was_running and run_after:
                self.ops.spawn(self.ops.restart(m, REPLACE, mc.stop_signal(current.config),
                                                mc.stop_timeout(current.config)))
            elif was_running:
                self.ops.spawn(self.ops.stop(m, mc.stop_signal(current.config), mc.stop_timeout(current.config)))
            elif run_after:
                if current.state is State.SUSPENDED:
                    await self._discard_snapshot(m, stage=False)
                with contextlib.suppress(RoostError):
                    await self.ops.start(m)
                m = self.state.machines[m.id]
            elif current.state is State.SUSPENDED:
                self.ops.spawn(self._discard_snapshot(m))
            else:
                self.ops.spawn(self._stage(m))
        result = self.state.machine_api(m)
        if m.lease and body.get("lease_ttl"):
            result["nonce"] = m.lease.nonce
        return result

    # ---- destroy ----

    async def destroy(self, app: str, machine_id: str, force: bool, nonce: str | None) -> dict[str, Any]:
        m = self._checked(app, machine_id, nonce)
        async with self.ops.lock(machine_id):
            m = self.get(app, machine_id)
            if not lifecycle.check(Action.FORCE_DESTROY if force else Action.DESTROY, m.state):
                return {"ok": True}
            m = await self.ops.write(m.id, state=State.DESTROYING,
                                     event=self.ops.event("destroy", "destroying", "user"))
            host = self.ops.live_host(m)
            if host is not None:
                try:
                    await self.ops.agents.call(host.agent_url, "DELETE", f"/v1/machines/{m.id}", timeout=30)
                except RoostError as exc:
                    # Marked destroyed all the same: the agent removes machines the server no longer
                    # knows at its next full heartbeat.
                    log.warning("destroy %s on %s: %s", m.id, m.host_id, exc.message)
            await self._finish_destroy(m.id)
        self.ops.forget(machine_id)
        return {"ok": True}

    async def _finish_destroy(self, machine_id: str) -> None:
        async with self.state.lock:
            m = self.state.machines[machine_id].copy()
            m.state = State.DESTROYED
            m.lease = None
            m.updated_at = self.clock.time()
            m.add_event(self.ops.event("destroy", "destroyed", "flyd"))
            to_save: list[Any] = [m]
            for volume in self.state.volumes.values():
                if volume.attached_machine_id == m.id:
                    detached = _copy(volume)
                    detached.attached_machine_id = ""
                    detached.attached_alloc_id = ""
                    to_save.append(detached)
            await self.state.save(*to_save)

    # ---- wait, events, versions ----

    async def wait(self, app: str, machine_id: str, states: list[str], timeout: float) -> dict[str, Any]:
        for s in states:
            if s not in WAITABLE_STATES:
                raise bad_request(f"state: cannot wait for {s!r}; use one of {', '.join(sorted(WAITABLE_STATES))}")
        wanted = set(states or ["started"])
        timeout = min(max(timeout, 0.0), WAIT_MAX_SECONDS)
        deadline = self.clock.monotonic() + timeout
        while True:
            m = self.get(app, machine_id)
            if str(m.state) in wanted:
                return {"ok": True, "state": str(m.state), "version": m.instance_id,
                        "event_id": m.events[0]["id"] if m.events else ""}
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise RoostError(408, f"deadline_exceeded: machine {m.id} did not reach state "
                                      f"{' or '.join(sorted(wanted))} within {timeout:g}s (it is {m.state})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.machine_changed(machine_id).wait(), remaining)

    # ---- metadata ----

    async def set_metadata(self, app: str, machine_id: str, values: dict[str, str], nonce: str | None,
                           replace_all: bool = False, remove: str | None = None) -> None:
        m = self._checked(app, machine_id, nonce)
        lifecycle.check(Action.METADATA, m.state)
        for key, value in values.items():
            if not key or not isinstance(value, str):
                raise bad_request(f"metadata {key!r}: keys must be non-empty and values strings")
        async with self.state.lock:
            current = self.state.machines[machine_id]
            updated = current.copy()
            metadata = {} if replace_all else dict(current.config.get("metadata") or {})
            metadata.update(values)
            if remove is not None:
                if remove not in metadata:
                    raise not_found(f"metadata key {remove!r} not found on machine {machine_id}")
                del metadata[remove]
            updated.config = {**current.config, "metadata": metadata}
            updated.updated_at = self.clock.time()
            await self.state.save(updated)

    # ---- list ----

    def list_json(self, app: str, *, region: str | None, include_deleted: bool, metadata: dict[str, str],
                  summary: bool, states: set[str] | None) -> bytes:
        """The list endpoint's body, built from each machine's cached JSON."""
        self.app_or_404(app)
        parts = []
        variant = "summary" if summary else "full"
        for m in self.state.app_machines.get(app, {}).values():
            if m.state is State.DESTROYED and not include_deleted:
                continue
            if region and m.region != region:
                continue
            if states and str(m.state) not in states:
                continue
            if metadata:
                md = m.config.get("metadata") or {}
                if any(md.get(k) != v for k, v in metadata.items()):
                    continue
            parts.append(self.state.machine_json(m, variant))
        return b"[" + b",".join(parts) + b"]"


MIN_LIVE_MEMORY_MB = 16  # below this a machine cannot even hold its init


def _bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise bad_request(f"{field}: expected true or false")


def _copy(obj: Any) -> Any:
    import copy

    return copy.copy(obj)


def _fresh_name(taken: set[str], tries: int = 64) -> str:
    """A made-up machine name no machine of the app holds: drawn again, then made unique by a number."""
    for _ in range(tries):
        name = new_machine_name()
        if name not in taken:
            return name
    base = new_machine_name()
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)
