"""Hosts: agent registration, heartbeats, state reports, and the failure detector's loop.

Heartbeats are kept in memory (they are frequent); a host's record is written only when it registers
or its status changes. After a server restart every host gets a fresh grace period, so restarting the
control plane never makes a live host look dead.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from roost.clock import SYSTEM, Clock, sleep_unless
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.events import machine_event
from roost.core.ids import HOST_ID_RE
from roost.core.lifecycle import TRANSIENT, State
from roost.core.model import Host, Machine
from roost.core.regions import is_known
from roost.detector.membership import DetectorConfig, judge
from roost.privnet import mesh
from roost.server.machines import MachineService
from roost.server.metrics import ServerMetrics
from roost.server.state import ClusterState
from roost.server.takeover import StandbyController

log = logging.getLogger("roost.server.hosts")

# A machine in a transitional state this long without progress is settled from what its agent sees.
STUCK_AFTER = 30.0
# Reports carry news at once; the heartbeat's full list only repairs what reports missed, so it acts on a
# machine only when its record has been quiet this long (a snapshot may be older than the latest report).
RECONCILE_AFTER = 3.0
# A host's clock further off than this is refused at registration: its events, run records and logs carry its
# times, and drills and recovery compare them with the control plane's. (Leases are durations: not affected.)
MAX_CLOCK_SKEW = 5.0


class HostService:
    def __init__(self, state: ClusterState, machines: MachineService, detector: DetectorConfig,
                 takeover: StandbyController | None = None, clock: Clock = SYSTEM, https_only: bool = False,
                 probe: Callable[[str], Awaitable[str | None]] | None = None,
                 metrics: ServerMetrics | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.probe = probe  # agent URL -> why the control plane cannot reach it (None: it can)
        self.https_only = https_only  # a fleet that speaks TLS registers no agent it would call in clear text
        self.clock = clock
        self.machines = machines
        self.detector = detector
        self.takeover = takeover
        self.last_seen: dict[str, float] = {}
        self._mesh: tuple[int, list[mesh.Peer], str] = (-1, [], "")  # the WireGuard mesh (and digest) at a revision
        started = self.clock.time()
        for host_id in state.hosts:
            self.last_seen[host_id] = started

    def get(self, host_id: str) -> Host:
        host = self.state.hosts.get(host_id)
        if host is None:
            raise not_found(f"host {host_id!r} is not registered")
        return host

    async def register(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        host_id = body.get("id")
        region = body.get("region")
        address = body.get("address")
        agent_url = body.get("agent_url")
        if not isinstance(host_id, str) or not HOST_ID_RE.match(host_id):
            raise bad_request(f"id: invalid host id {host_id!r}")
        if not isinstance(region, str) or not is_known(region):
            raise bad_request(f"region: unknown region {region!r}; see 'roost platform regions'")
        if not isinstance(address, str) or not address:
            raise bad_request("address: required (the host's own IP address, e.g. 127.0.1.1)")
        if not isinstance(agent_url, str) or not agent_url.startswith("http"):
            raise bad_request("agent_url: required (http://ADDRESS:PORT of the agent's API)")
        if self.https_only and not agent_url.startswith("https://"):
            raise bad_request(f"agent_url {agent_url}: this fleet speaks TLS; start the agent with --tls-cert, "
                              "--tls-key and --ca (roost tls issue makes them)")
        cpus, memory = body.get("cpus"), body.get("memory_mb")
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise bad_request("cpus: expected a positive integer")
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 64:
            raise bad_request("memory_mb: expected an integer of at least 64")
        driver = body.get("driver", "")
        machine_net = body.get("machine_net", "")
        if not isinstance(driver, str) or not isinstance(machine_net, str):
            raise bad_request("driver, machine_net: expected strings")
        if machine_net:
            try:
                net = ipaddress.IPv4Network(machine_net)
            except ValueError as exc:
                raise bad_request(f"machine_net: {exc}") from None
            if net.prefixlen > 29:
                raise bad_request(f"machine_net {machine_net}: too small (at most /29)")
        wireguard_key, wireguard_port = _wireguard(body.get("wireguard"), machine_net)
        now = self.clock.time()
        their_time = body.get("time")
        if their_time is not None:
            if isinstance(their_time, bool) or not isinstance(their_time, int | float):
                raise bad_request("time: expected the host's clock as seconds since the epoch")
            skew = float(their_time) - now
            if abs(skew) > MAX_CLOCK_SKEW:
                raise RoostError(422, f"host {host_id}'s clock is {abs(skew):.1f} s "
                                      f"{'ahead of' if skew > 0 else 'behind'} the control plane's (at most "
                                      f"{MAX_CLOCK_SKEW:.0f} s): synchronise it (NTP, e.g. systemd-timesyncd) and "
                                      "start the agent again", "clock_skew")
        if self.probe is not None:
            why = await self.probe(agent_url)
            if why is not None:
                raise RoostError(422, f"the control plane cannot reach host {host_id} at {agent_url} ({why}): give "
                                      "the agent an address the control plane reaches (--listen, or --advertise "
                                      "when it listens on 0.0.0.0 or behind NAT) and open that port to the "
                                      "control plane", "unreachable")
        async with self.state.lock:
            existing = self.state.hosts.get(host_id)
            if existing and existing.region != region:
                raise bad_request(f"host {host_id} is registered in region {existing.region!r}; a host cannot "
                                  "change region (use a new --host-id)")
            if machine_net:
                for other in self.state.hosts.values():
                    if other.id != host_id and other.machine_net and \
                            ipaddress.IPv4Network(other.machine_net).overlaps(net):
                        raise RoostError(409, f"machine_net {machine_net} overlaps host {other.id}'s "
                                              f"{other.machine_net}: give each host a subnet of its own")
            if existing and existing.machine_net != machine_net and self.state.machines_on(host_id):
                was = existing.machine_net or "its own address"
                raise RoostError(409, f"host {host_id} has machines with addresses on {was}: its machine subnet "
                                      "cannot change while they exist")
            host = Host(id=host_id, region=region, address=address, agent_url=agent_url, cpus=cpus,
                        memory_mb=memory, registered_at=existing.registered_at if existing else now,
                        last_heartbeat=now, status="ok", cordoned=existing.cordoned if existing else False,
                        version=str(body.get("version", "")), boot_id=str(body.get("boot_id", "")),
                        driver=driver, machine_net=machine_net, wireguard_key=wireguard_key,
                        wireguard_port=wireguard_port)
            self.last_seen[host_id] = now
            await self.state.save(host, extra_feed=self.state.machines_on(host_id))
        if existing is not None and existing.status != "ok" and self.takeover is not None:
            self.takeover.host_back(host_id, self.last_seen)  # an agent that restarts registers again
        return self.state.host_api(host)

    async def heartbeat(self, host_id: str, body: Any) -> dict[str, Any]:
        self.get(host_id)
        now = self.clock.time()
        if self.metrics is not None:
            previous = self.last_seen.get(host_id)
            self.metrics.heartbeat(now - previous if previous is not None else None, self.detector.suspect_after)
        self.last_seen[host_id] = now
        if self.state.hosts[host_id].status != "ok":
            await self._set_status(host_id, "ok")
            if self.takeover:
                self.takeover.host_back(host_id, self.last_seen)
        reply: dict[str, Any] = {"ok": True, "server_time": now}
        if self.takeover and isinstance(body, dict) and isinstance(body.get("watched"), list):
            acknowledged = {str(x) for x in body["watched"]}
            self.takeover.acknowledged[host_id] = acknowledged
            if acknowledged != set(self.state.hosts[host_id].acknowledged):
                await self._set_acknowledged(host_id, acknowledged)
        if self.takeover:
            reply["peers"] = self.takeover.peers(host_id)
            reply["watched"] = self.takeover.watched(host_id)
            reply["lease"] = self.takeover.lease.lease
            reply["peer_probe_timeout"] = self.takeover.lease.probe_timeout
        if self.state.hosts[host_id].wireguard_key:
            # The WireGuard mesh, only when it differs from what the host says it applied.
            _, peers, digest = self._current_mesh()
            changed = mesh.reply_for(peers, body.get("mesh") if isinstance(body, dict) else None, digest)
            if changed is not None:
                reply["mesh"] = changed
        machines = body.get("machines") if isinstance(body, dict) else None
        if isinstance(machines, dict):
            reply["destroy"] = await self._reconcile(host_id, machines)
            # A machine replaced by its standby while its host was away must not run again.
            reply["stop"] = [mid for mid, info in machines.items() if isinstance(info, dict)
                             and info.get("state") in ("started", "suspended") and mid in self.state.machines
                             and self.state.machines[mid].fencing.get("replaced_by")]
        return reply

    def _current_mesh(self) -> tuple[int, list[mesh.Peer], str]:
        """The mesh from the host records and its digest, computed again only when the feed moved (a host record
        changed, or anything else): not on every heartbeat of every host."""
        revision = self.state.hub.revision
        if self._mesh[0] != revision:
            peers = mesh.peers_of(self.state.hosts.values())
            self._mesh = (revision, peers, mesh.digest(peers))
        return self._mesh

    async def _reconcile(self, host_id: str, seen: dict[str, Any]) -> list[str]:
        """Bring the record in line with what the agent runs; name the machines the agent should remove."""
        orphans = []
        for machine_id in seen:
            m = self.state.machines.get(machine_id)
            if m is None or m.host_id != host_id or m.state is State.DESTROYED:
                orphans.append(machine_id)
        now = self.clock.time()
        for m in self.state.machines_on(host_id):
            if self.machines.ops.is_busy(m.id):
                continue
            if now - m.updated_at < RECONCILE_AFTER:
                continue
            if m.state in TRANSIENT and now - m.updated_at < STUCK_AFTER:
                continue
            info = seen.get(m.id)
            if not isinstance(info, dict) or info.get("instance_id") != m.instance_id:
                actual = State.STOPPED if m.state in (State.STARTED, State.STARTING, State.STOPPING,
                                                      State.SUSPENDED, State.SUSPENDING, State.REPLACING) else None
                note = "the host no longer runs this machine"
            else:
                try:
                    actual = State(str(info.get("state")))
                except ValueError:
                    continue
                note = ""
            if actual is None or actual == m.state:
                continue
            if m.state is State.DESTROYING:
                continue
            log.info("reconcile %s on %s: %s -> %s", m.id, host_id, m.state, actual)
            desired = m.state
            await self.state.write_machine(m.id, now=self.clock.time(), state=actual, note=note or m.note,
                                           event=machine_event("reconcile", str(actual), "flyd"))
            if isinstance(info, dict) and info.get("recover") and self.takeover is not None:
                self.takeover.machine_lost(m.id, desired)  # its report went missing: the same rule
        return orphans

    async def report(self, host_id: str, body: Any) -> dict[str, Any]:
        """Apply events the agent saw on its own: exits, restarts by policy, check results."""
        self.get(host_id)
        self.last_seen[host_id] = self.clock.time()
        reports = body.get("reports") if isinstance(body, dict) else None
        if not isinstance(reports, list):
            raise bad_request("body must be {\"reports\": [...]}")
        unknown = []
        for r in reports:
            if not isinstance(r, dict):
                continue
            m = self.state.machines.get(str(r.get("id")))
            if m is None or m.host_id != host_id:
                unknown.append(r.get("id"))
                continue
            await self._apply_report(m, r)
        return {"ok": True, "unknown": unknown}

    async def _apply_report(self, m: Machine, r: dict[str, Any]) -> None:
        if r.get("instance_id") != m.instance_id:
            return  # an older version's news
        if r.get("recover") and isinstance(r.get("event"), dict) and \
                m.updated_at * 1000 > float(r["event"].get("timestamp") or 0):
            return  # lost with its host, but the record moved on since (a takeover, or the heartbeat's repair)
        changes: dict[str, Any] = {}
        if isinstance(r.get("checks"), dict):
            changes["checks"] = {**m.checks, **r["checks"]}
        if "exit_code" in r:
            changes["exit_code"] = r["exit_code"]
        event = r.get("event") if isinstance(r.get("event"), dict) else None
        new_state = None
        if r.get("state"):
            try:
                reported = State(r["state"])
            except ValueError:
                reported = None
            # A user's stop/suspend/update/destroy in flight settles through its own operation.
            if reported is not None and m.state not in (State.STOPPING, State.SUSPENDING, State.REPLACING,
                                                        State.DESTROYING, State.DESTROYED):
                new_state = reported
        if new_state is not None and new_state == m.state and event is None:
            new_state = None  # already recorded (the server's own operation settled it)
        elif new_state is not None and event is None:
            event = machine_event(str(r.get("cause") or "update"), str(new_state), "flyd")
        if new_state is None and event is None and (not changes or changes == {"checks": m.checks}):
            return
        desired = m.state
        await self.state.write_machine(m.id, now=self.clock.time(), state=new_state, event=event, **changes)
        if r.get("recover") and self.takeover is not None:
            # Down because of its host (power cut, or fenced while cut off): run it again unless a standby
            # took over its work (detector/recovery.py).
            self.takeover.machine_lost(m.id, desired)
        if new_state is State.STOPPED and m.config.get("auto_destroy") and "exit_code" in r:
            # An auto_destroy machine is gone once it exits on its own (Fly: one-off machines).
            self.machines.ops.spawn(self._auto_destroy(m.app, m.id))

    async def _auto_destroy(self, app: str, machine_id: str) -> None:
        try:
            await self.machines.destroy(app, machine_id, True, None)
        except Exception:
            log.exception("auto_destroy of %s failed", machine_id)

    async def set_cordon(self, host_id: str, cordoned: bool) -> dict[str, Any]:
        async with self.state.lock:
            host = copy.copy(self.get(host_id))
            host.cordoned = cordoned
            await self.state.save(host)
        return self.state.host_api(host)

    async def _set_status(self, host_id: str, status: str) -> None:
        async with self.state.lock:
            current = self.state.hosts.get(host_id)
            if current is None or current.status == status:
                return
            host = copy.copy(current)
            host.status = status
            host.last_heartbeat = self.last_seen.get(host_id, host.last_heartbeat)
            log.info("host %s: %s -> %s", host_id, current.status, status)
            if self.metrics is not None:
                self.metrics.verdicts.labels(status).inc()
            await self.state.save(host, extra_feed=self.state.machines_on(host_id))

    async def _set_acknowledged(self, host_id: str, acknowledged: set[str]) -> None:
        """Keep what the host's agent would fence in the store (a write only when it changes): a replica that
        takes the lead must know it to take over the host's machines."""
        async with self.state.lock:
            current = self.state.hosts.get(host_id)
            if current is None or set(current.acknowledged) == acknowledged:
                return
            host = copy.copy(current)
            host.acknowledged = sorted(acknowledged)
            await self.state.save(host)

    def list(self) -> list[dict[str, Any]]:
        out = []
        for host in sorted(self.state.hosts.values(), key=lambda h: (h.region, h.id)):
            view = self.state.host_api(host)
            seen = self.last_seen.get(host.id, host.last_heartbeat)
            view["last_heartbeat_unix"] = seen
            view["last_heartbeat_age_s"] = round(max(0.0, self.clock.time() - seen), 3)
            out.append(view)
        return out

    async def run_detector(self, stop: asyncio.Event) -> None:
        """Judge every host a few times per heartbeat interval until `stop` is set."""
        tick = max(0.02, self.detector.heartbeat_interval / 4)
        # A fresh grace period for every host: a server that just began to lead (after a restart, or taking
        # over from another replica) heard no heartbeat yet, and silence it never listened to proves nothing.
        started = self.clock.time()
        for host_id in list(self.state.hosts):
            self.last_seen[host_id] = max(self.last_seen.get(host_id, started), started)
        previous = started
        while not stop.is_set():
            now = self.clock.time()
            stalled = now - previous - tick
            if stalled > self.detector.heartbeat_interval:
                # This server did not run for that long (a long request on its event loop, a pause of its VM):
                # it could not hear heartbeats meanwhile, and silence it did not listen to proves nothing. A
                # 20,000-machine app's lists stalled it enough to call its only host "unknown".
                log.warning("detector: this server stalled %.2f s; hosts are not judged on that time", stalled)
                for host_id in list(self.last_seen):
                    self.last_seen[host_id] += stalled
            previous = now
            for host_id, host in list(self.state.hosts.items()):
                last = self.last_seen.get(host_id, host.last_heartbeat)
                status = judge(last, now, self.detector)
                if status != "ok" and self.takeover is not None:
                    # Suspect: ask other hosts at once, so that the answer is in by the time it would be dead.
                    confirmed = self.takeover.confirmed_dead(host_id, last)
                    if status == "unreachable" and confirmed is not True:
                        status = "unknown"  # silent to us only, or not yet confirmed
                if status != host.status:
                    try:
                        await self._set_status(host_id, status)
                        if status == "unreachable" and self.takeover is not None:
                            self.takeover.host_dead(host_id, last)
                    except Exception:  # keep judging the others; the next tick retries
                        log.exception("detector: updating %s failed", host_id)
            await sleep_unless(self.clock, stop, tick)


def _wireguard(value: Any, machine_net: str) -> tuple[str, int]:
    """The host's WireGuard public key and port from its registration (none: not in the mesh)."""
    if value is None:
        return "", 0
    if not isinstance(value, dict):
        raise bad_request("wireguard: expected {\"public_key\": ..., \"port\": ...}")
    key, port = value.get("public_key"), value.get("port")
    why = mesh.key_error(key)
    if why is not None:
        raise bad_request(f"wireguard.public_key: {why}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise bad_request("wireguard.port: expected a UDP port (1-65535)")
    if not machine_net:
        raise bad_request("wireguard: a host joins the mesh with its machine subnet (--machine-net, container "
                          "driver)")
    return str(key), port
