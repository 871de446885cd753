"""What an app's machines cost (`GET /v1/apps/{app}/cost`): each machine's ledger priced with the fleet's price
table, summed per process group and for the app, beside what the same machines would have cost always on."""

from __future__ import annotations

from typing import Any

from roost.clock import SYSTEM, Clock
from roost.core import cost
from roost.core import machine_config as mc
from roost.core.model import rfc3339
from roost.server.state import ClusterState


class CostService:
    def __init__(self, state: ClusterState, prices: cost.Prices, clock: Clock = SYSTEM) -> None:
        self.state = state
        self.prices = prices
        self.clock = clock

    def report(self, app: str, since_seconds: float | None) -> dict[str, Any]:
        now = self.clock.time()
        since = None if since_seconds is None else now - since_seconds
        machines: list[dict[str, Any]] = []
        groups: dict[str, cost.Bill] = {}
        total = cost.Bill()
        for m in sorted(self.state.app_machines.get(app, {}).values(), key=lambda m: m.created_at):
            bill = cost.bill(m.ledger, self.prices, now, since)
            if not any(bill.seconds.values()):
                continue  # nothing in the window (destroyed before it)
            group = mc.process_group(m.config)
            machines.append({"id": m.id, "name": m.name, "region": m.region, "process_group": group,
                             "state": str(m.state), "size": (m.ledger or {}).get("size", {}), **bill.to_json()})
            groups.setdefault(group, cost.Bill()).add(bill)
            total.add(bill)
        p = self.prices
        return {
            "app": app, "currency": p.currency, "until": rfc3339(now),
            # the window starts at the beginning of the hour `since` falls in (the ledger keeps hourly buckets)
            "since": rfc3339(int(since) // cost.HOUR * cost.HOUR) if since is not None else None,
            "prices": {"shared_cpu": p.shared_cpu, "performance_cpu": p.performance_cpu, "memory_gb": p.memory_gb,
                       "rootfs_gb": p.rootfs_gb, "volume_gb": p.volume_gb, "per": "30-day month"},
            "machines": machines,
            "process_groups": {name: b.to_json() for name, b in sorted(groups.items())},
            "total": total.to_json(),
        }
