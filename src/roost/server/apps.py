"""Apps: create, list, get, delete (which destroys the app's machines and volumes)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from roost.core.errors import RoostError, bad_request, not_found
from roost.core.ids import APP_NAME_RE
from roost.core.lifecycle import State
from roost.core.model import App, rfc3339
from roost.core.regions import is_known
from roost.server.machines import MachineService
from roost.server.state import ClusterState
from roost.server.volumes import VolumeService


class AppService:
    def __init__(self, state: ClusterState, machines: MachineService, volumes: VolumeService | None = None) -> None:
        self.state = state
        self.machines = machines
        self.volumes = volumes

    def get(self, name: str) -> App:
        app = self.state.apps.get(name)
        if app is None:
            raise not_found(f"app {name!r} not found")
        return app

    async def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("request body must be {\"app_name\": \"...\", \"org_slug\": \"...\"}")
        name = body.get("app_name", body.get("name"))
        if not isinstance(name, str) or not APP_NAME_RE.match(name):
            raise bad_request(
                f"app_name: invalid app name {name!r}: use 1-63 lowercase letters, digits and dashes, "
                "starting and ending with a letter or digit"
            )
        org = body.get("org_slug") or "personal"
        network = body.get("network") or "default"
        primary = body.get("primary_region") or ""
        if not isinstance(org, str) or not isinstance(network, str) or not isinstance(primary, str):
            raise bad_request("org_slug, network and primary_region must be strings")
        if primary and not is_known(primary) and primary not in {h.region for h in self.state.hosts.values()}:
            raise bad_request(f"primary_region: unknown region {primary!r}")
        async with self.state.lock:
            if name in self.state.apps:
                raise RoostError(422, f"app name {name!r} is already taken", "name_taken")
            app = App(name=name, id=name, org_slug=org, created_at=time.time(), network=network,
                      primary_region=primary, internal_numeric_id=secrets.randbelow(10**9),
                      ip_index=self._next_ip_index())
            await self.state.save(app)
        return self.state.app_api(app)

    async def set_primary_region(self, name: str, region: str) -> dict[str, Any]:
        async with self.state.lock:
            app = self.get(name)
            if region and not is_known(region) and region not in {h.region for h in self.state.hosts.values()}:
                raise bad_request(f"primary_region: unknown region {region!r}")
            updated = App(**{**app.__dict__, "primary_region": region})
            await self.state.save(updated)
        return self.state.app_api(updated)

    # ---- addresses: an app's dedicated address for its TCP services, one per edge (the same slot on each) ----

    def ip_assignments(self, name: str) -> dict[str, Any]:
        app = self.get(name)
        if not app.ip_index:
            return {"ips": []}
        return {"ips": [{"ip": p.app_address(app.ip_index), "region": p.region, "service_name": "roost-edge",
                         "shared": False, "created_at": rfc3339(app.created_at)}
                        for p in sorted(self.state.proxies.values(), key=lambda p: (p.region, p.id))]}

    async def assign_ip(self, name: str, body: Any) -> dict[str, Any]:
        """Fly's assign: the app gets a dedicated address on every edge (a new one if it had released its
        own); the answer is the address in the asked region (or the first edge's)."""
        if body is not None and not isinstance(body, dict):
            raise bad_request('body must be {"type": "v4", "region": "ams"} or empty')
        body = body or {}
        kind = body.get("type") or "v4"
        if kind not in ("v4", "dedicated_v4"):
            raise bad_request(f"type: {kind!r} is not offered by Roost's edges: each app gets a dedicated v4 "
                              "address per edge (type \"v4\")")
        region = body.get("region")
        if region is not None and not isinstance(region, str):
            raise bad_request("region: expected a region code")
        async with self.state.lock:
            app = self.get(name)
            if not app.ip_index:
                app = App(**{**app.__dict__, "ip_index": self._next_ip_index()})
                await self.state.save(app)
        ips = self.ip_assignments(name)["ips"]
        if not ips:
            raise RoostError(409, "the fleet has no edge to hold the address yet: start a `roost proxy`")
        chosen = [i for i in ips if i["region"] == region] if region else ips
        if not chosen:
            raise bad_request(f"region: no edge in {region!r}; edges are in: {', '.join(i['region'] for i in ips)}")
        return dict(chosen[0])

    async def release_ip(self, name: str, ip: str) -> None:
        """Release the app's address: an app's TCP services stop being served on every edge (its one address
        is the same slot on each edge, so they go together)."""
        async with self.state.lock:
            app = self.get(name)
            if ip not in {i["ip"] for i in self.ip_assignments(name)["ips"]}:
                raise not_found(f"address {ip!r} is not assigned to app {name!r}")
            await self.state.save(App(**{**app.__dict__, "ip_index": 0}))

    def _next_ip_index(self) -> int:
        """A slot in each edge's block of addresses no app holds or held last (the caller holds the lock)."""
        return 1 + max((a.ip_index for a in self.state.apps.values()), default=0)

    def list(self, org_slug: str | None, only: str | None = None) -> dict[str, Any]:
        """The apps (of `org_slug`), or only app `only` (what a deploy token sees)."""
        apps = [self.state.app_api(a) for a in sorted(self.state.apps.values(), key=lambda a: a.created_at)
                if (not org_slug or a.org_slug == org_slug) and (only is None or a.name == only)]
        return {"total_apps": len(apps), "apps": apps}

    async def delete(self, name: str) -> None:
        self.get(name)
        machine_ids = [m.id for m in self.state.app_machines.get(name, {}).values() if m.state is not State.DESTROYED]
        results = await asyncio.gather(
            *(self.machines.destroy(name, mid, True, _lease_nonce(self.state, mid)) for mid in machine_ids),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, RoostError):
                raise result
        async with self.state.lock:
            app = self.state.apps.get(name)
            if app is None:
                return
            gone: list[Any] = [app]
            volumes = [v for v in self.state.volumes.values() if v.app == name]
            gone += volumes
            gone += list(self.state.app_machines.get(name, {}).values())
            await self.state.save(deleted=gone)
        if self.volumes is not None:
            await self.volumes.remove_data(volumes)


def _lease_nonce(state: ClusterState, machine_id: str) -> str | None:
    # Deleting an app overrides leases on its machines.
    m = state.machines.get(machine_id)
    return m.lease.nonce if m and m.lease else None
