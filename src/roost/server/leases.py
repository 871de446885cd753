"""Machine leases (Fly's `/lease`): a nonce that makes other callers' changes to a machine wait for its
owner, until it expires. The check itself is `MachineService.check_lease`, made by every verb."""

from __future__ import annotations

from typing import Any

from roost.clock import Clock
from roost.core import lifecycle
from roost.core.errors import bad_request, conflict, not_found
from roost.core.ids import new_nonce
from roost.core.lifecycle import Action
from roost.core.model import Lease, rfc3339
from roost.core.units import lease_seconds
from roost.server.machines import MachineService


class LeaseService:
    def __init__(self, machines: MachineService) -> None:
        self.machines = machines
        self.state = machines.state

    @property
    def clock(self) -> Clock:
        return self.machines.clock

    def envelope(self, lease: Lease) -> dict[str, Any]:
        data = lease.to_api()
        return {"status": "success", "data": data, **data}

    async def acquire(self, app: str, machine_id: str, ttl: Any, description: str, nonce: str | None,
                      owner: str) -> tuple[int, dict[str, Any]]:
        m = self.machines.get(app, machine_id)
        lifecycle.check(Action.LEASE, m.state)
        if ttl is None:
            ttl = 30
        if isinstance(ttl, str) and ttl.isdigit():
            ttl = int(ttl)
        ttl = lease_seconds(ttl, "ttl")
        now = self.clock.time()
        async with self.state.lock:
            m = self.state.machines[machine_id]
            held = m.lease if m.lease and m.lease.expires_at > now else None
            if held and held.nonce != nonce:
                raise conflict(f"machine {m.id} is already leased by {held.owner} until "
                               f"{rfc3339(held.expires_at)}")
            updated = m.copy()
            if held:
                updated.lease = Lease(held.nonce, now + ttl, held.owner, description or held.description,
                                      m.instance_id)
            else:
                updated.lease = Lease(new_nonce(), now + ttl, owner, description, m.instance_id)
            await self.state.save(updated)
        assert updated.lease is not None
        return (200 if held else 201), self.envelope(updated.lease)

    def get(self, app: str, machine_id: str) -> dict[str, Any]:
        m = self.machines.get(app, machine_id)
        if m.lease is None or m.lease.expires_at <= self.clock.time():
            raise not_found(f"machine {m.id} has no active lease")
        return self.envelope(m.lease)

    async def release(self, app: str, machine_id: str, nonce: str | None) -> dict[str, Any]:
        m = self.machines.get(app, machine_id)
        if not nonce:
            raise bad_request("releasing a lease needs its nonce in the fly-machine-lease-nonce header")
        if m.lease is None or m.lease.expires_at <= self.clock.time():
            return {"status": "success", "data": {"ok": True}}
        if m.lease.nonce != nonce:
            raise conflict(f"the nonce does not match machine {m.id}'s lease")
        await self.machines.ops.write(m.id, lease=None)
        return {"status": "success", "data": {"ok": True}}
