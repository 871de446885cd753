"""The proxy's routing table: apps, machines and hosts as the watch feed last described them.

It is built from the control plane's watch feed and kept when the control plane is gone (static
stability): running machines keep getting traffic. It is also saved to disk now and then, so that a
proxy restarted while the server is down still knows where to send traffic. Local overrides cover what
the proxy itself just did (it started a machine; a machine refused a connection) until the feed
confirms or the override expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roost.balancer.services import ServiceSpec, http_service, services_of
from roost.clock import SYSTEM, Clock
from roost.core import machine_config as mc
from roost.core.lifecycle import State

log = logging.getLogger("roost.proxy.table")

PENALTY_SECONDS = 2.0  # a machine that refused a connection sits out this long (unless nothing else can serve)
OVERRIDE_SECONDS = 10.0  # how long a locally known state change waits for the feed to confirm it


@dataclass
class MachineRoute:
    id: str
    app: str
    region: str
    host_id: str
    state: State
    instance_id: str
    address: str
    ports: dict[int, int]  # guest port -> host port
    services: list[ServiceSpec]
    cordoned: bool
    standby: bool
    checks: dict[str, str]
    stop_signal: int
    stop_timeout: float
    updated_at: float
    env_primary_region: str = ""

    def host_port(self, internal_port: int) -> int | None:
        return self.ports.get(internal_port)


@dataclass
class HostRoute:
    id: str
    region: str
    agent_url: str
    status: str


@dataclass
class AppRoute:
    name: str
    primary_region: str
    ip_index: int


@dataclass
class RoutingTable:
    apps: dict[str, AppRoute] = field(default_factory=dict)
    machines: dict[str, MachineRoute] = field(default_factory=dict)
    by_app: dict[str, dict[str, MachineRoute]] = field(default_factory=dict)
    hosts: dict[str, HostRoute] = field(default_factory=dict)
    revision: int = 0
    state_overrides: dict[str, tuple[State, float]] = field(default_factory=dict)  # id -> (state, until)
    penalties: dict[str, float] = field(default_factory=dict)  # id -> until
    last_update: float = 0.0
    generation: int = 0  # bumped on every change a routing decision depends on (for caches of decisions)
    _changed: asyncio.Event | None = None
    # Called with a host's machine addresses when the control plane declares that host unreachable.
    on_host_lost: Callable[[set[str]], None] | None = None
    # ... and when it starts to suspect it (silent, not yet confirmed dead).
    on_host_suspect: Callable[[set[str]], None] | None = None
    clock: Clock = SYSTEM
    avoid_suspect_hosts: bool = True
    _body_limits: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    # ---- feeding ----

    def reset(self, objects: list[dict[str, Any]], revision: int) -> None:
        self.apps.clear()
        self.machines.clear()
        self.by_app.clear()
        self.hosts.clear()
        for obj in objects:
            self._put(obj["kind"], obj["key"], obj["object"])
        self.revision = revision
        self._touch()

    def apply(self, event: dict[str, Any]) -> None:
        if event["op"] == "delete" or event.get("object") is None:
            self._delete(event["kind"], event["key"])
        else:
            self._put(event["kind"], event["key"], event["object"])
        self.revision = max(self.revision, int(event["rev"]))
        self._touch()

    def _put(self, kind: str, key: str, obj: dict[str, Any]) -> None:
        if kind == "machine":
            route = _machine_route(obj)
            if route.state is State.DESTROYED:
                self._delete("machine", key)
                return
            old = self.machines.get(key)
            if old is not None and old.app != route.app:
                self.by_app.get(old.app, {}).pop(key, None)
            self.machines[key] = route
            self.by_app.setdefault(route.app, {})[key] = route
            override = self.state_overrides.get(key)
            if override and _feed_settles(override[0], None if old is None else old.state, route.state):
                del self.state_overrides[key]
        elif kind == "host":
            old_host = self.hosts.get(key)
            host = self.hosts[key] = HostRoute(obj["id"], obj["region"], obj.get("agent_url", ""),
                                               obj.get("status", "ok"))
            if host.status == "unreachable" and old_host is not None and old_host.status != "unreachable" \
                    and self.on_host_lost is not None:
                self.on_host_lost({m.address for m in self.machines.values() if m.host_id == key})
            elif host.status == "unknown" and old_host is not None and old_host.status == "ok" \
                    and self.avoid_suspect_hosts and self.on_host_suspect is not None:
                self.on_host_suspect({m.address for m in self.machines.values() if m.host_id == key})
        elif kind == "app":
            self.apps[key] = AppRoute(obj["name"], obj.get("primary_region") or "", int(obj.get("ip_index") or 0))

    def _delete(self, kind: str, key: str) -> None:
        if kind == "machine":
            old = self.machines.pop(key, None)
            if old is not None:
                self.by_app.get(old.app, {}).pop(key, None)
        elif kind == "host":
            self.hosts.pop(key, None)
        elif kind == "app":
            self.apps.pop(key, None)
            for mid in list(self.by_app.pop(key, {})):
                self.machines.pop(mid, None)

    def _touch(self) -> None:
        self.last_update = self.clock.monotonic()
        self.generation += 1
        self.notify()

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_change(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # ---- local knowledge ----

    def override_state(self, machine_id: str, state: State, seconds: float = OVERRIDE_SECONDS) -> None:
        self.state_overrides[machine_id] = (state, self.clock.monotonic() + seconds)
        self.generation += 1
        self.notify()

    def clear_override(self, machine_id: str) -> None:
        if self.state_overrides.pop(machine_id, None) is not None:
            self.generation += 1
            self.notify()

    def penalize(self, machine_id: str, seconds: float = PENALTY_SECONDS) -> None:
        until = self.clock.monotonic() + seconds
        if self.penalties.get(machine_id, 0.0) >= until:
            return
        self.penalties[machine_id] = until
        self.generation += 1

    def expire_local(self, now: float) -> None:
        """Forget penalties and state overrides whose time is up."""
        for mid in [k for k, until in self.penalties.items() if until <= now]:
            del self.penalties[mid]
            self.generation += 1
        for mid in [k for k, (_, until) in self.state_overrides.items() if until <= now]:
            del self.state_overrides[mid]
            self.generation += 1

    def state_of(self, m: MachineRoute, now: float) -> State:
        if not self.state_overrides:
            return m.state
        override = self.state_overrides.get(m.id)
        if override and override[1] > now:
            return override[0]
        return m.state

    def penalized(self, machine_id: str, now: float) -> bool:
        return self.penalties.get(machine_id, 0) > now

    def host_suspect(self, m: MachineRoute) -> bool:
        """Its host is silent to the control plane but not yet declared dead ("unknown"): its machines get
        traffic only if nothing else can serve (the router's rule)."""
        if not self.avoid_suspect_hosts:
            return False
        host = self.hosts.get(m.host_id)
        return host is not None and host.status == "unknown"

    def healthy(self, m: MachineRoute, now: float) -> bool:
        host = self.hosts.get(m.host_id)
        if host is None or host.status == "unreachable":
            return False
        return not any(name.startswith("servicecheck-") and status == "critical" for name, status in m.checks.items())

    # ---- lookups ----

    def http_targets(self, app: str) -> list[tuple[MachineRoute, ServiceSpec]]:
        out = []
        for m in self.by_app.get(app, {}).values():
            service = http_service(m.services)
            if service is not None and service.internal_port in m.ports:
                out.append((m, service))
        return out

    def body_limit(self, app: str) -> int | None:
        """The largest request body the app takes over HTTP (the smallest its machines declare), cached until
        the table changes."""
        cached = self._body_limits.get(app)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        limits = [sv.max_request_body for _, sv in self.http_targets(app) if sv.max_request_body is not None]
        limit = min(limits) if limits else None
        self._body_limits[app] = (self.generation, limit)
        return limit

    def tcp_targets(self, app: str, port: int) -> list[tuple[MachineRoute, ServiceSpec]]:
        out = []
        for m in self.by_app.get(app, {}).values():
            for service in m.services:
                if not service.http and port in service.ports and service.internal_port in m.ports:
                    out.append((m, service))
                    break
        return out

    def tcp_listeners(self) -> dict[tuple[str, int], str]:
        """(app, public port) for every TCP service some machine declares."""
        wanted: dict[tuple[str, int], str] = {}
        for app, machines in self.by_app.items():
            for m in machines.values():
                for service in m.services:
                    if not service.http and service.protocol == "tcp":
                        for port in service.ports:
                            wanted[(app, port)] = app
        return wanted

    def primary_region(self, app: str) -> str:
        route = self.apps.get(app)
        if route and route.primary_region:
            return route.primary_region
        for m in self.by_app.get(app, {}).values():
            if m.env_primary_region:
                return m.env_primary_region
        return ""



# The feed states on the way to each locally known state: while the feed walks this path it is only catching
# up with what the edge already knows.
_ON_THE_WAY = {
    State.STARTED: {State.STARTING, State.STARTED},
    State.STOPPED: {State.STOPPING, State.STOPPED},
    State.SUSPENDED: {State.SUSPENDING, State.SUSPENDED},
}


def _feed_settles(override: State, before: State | None, now: State) -> bool:
    """Whether the feed's news about a machine ends the edge's local override of its state: it confirms it,
    or it reports a change the override did not foresee (a suspend right after an autostart must not stay
    hidden behind the start's "started" and leave requests going to a frozen machine)."""
    if override is State.STARTING:  # a start's own, ended by the start itself
        return False
    if now is override:
        return True
    return now is not before and now not in _ON_THE_WAY.get(override, set())


def _machine_route(obj: dict[str, Any]) -> MachineRoute:
    config = obj.get("config") or {}
    roost = obj.get("roost") or {}
    ports = {int(k): int(v) for k, v in (roost.get("ports") or {}).items()}
    checks = {c["name"]: c.get("status", "") for c in obj.get("checks") or [] if isinstance(c, dict)}
    try:
        stop_signal, stop_timeout = mc.stop_signal(config), mc.stop_timeout(config)
    except Exception:
        stop_signal, stop_timeout = 2, 5.0
    return MachineRoute(
        id=obj["id"], app=obj.get("app", ""), region=obj.get("region", ""), host_id=roost.get("host_id") or
        obj.get("host_id", ""), state=_state(obj.get("state")), instance_id=obj.get("instance_id", ""),
        address=obj.get("private_ip") or roost.get("address", ""), ports=ports, services=services_of(config),
        cordoned=bool(obj.get("cordoned")) or bool(roost.get("skip_service_registration")),
        # Never autostarted: a standby, or a machine whose standby holds its work (only an operator's start
        # takes the work back, with a new fencing token).
        standby=bool(config.get("standbys")) or bool((roost.get("fencing") or {}).get("replaced_by")),
        checks=checks, stop_signal=stop_signal, stop_timeout=stop_timeout,
        updated_at=time.time(), env_primary_region=(config.get("env") or {}).get("PRIMARY_REGION", ""),
    )


def _state(value: Any) -> State:
    """A machine's state from the feed; anything unknown is never routed to nor started."""
    try:
        return State(value)
    except ValueError:
        return State.FAILED
