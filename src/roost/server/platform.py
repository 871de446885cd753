"""Fly's `POST /v1/platform/placements`: where machines of a given size would go, from the scheduler's own
feasibility rules over the hosts as they are now (nothing is reserved)."""

from __future__ import annotations

from typing import Any

from roost.core import machine_config as mc
from roost.core.errors import bad_request
from roost.core.regions import is_known
from roost.placement.scheduler import capacity
from roost.server.state import ClusterState

DEFAULT_COMPUTE = {"cpu_kind": "performance", "cpus": 1, "memory_mb": 2048}  # Fly's default: performance-1x


class PlatformService:
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def placements(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request('body must be {"org_slug": "personal", "region": "ams,any", "count": N, '
                              '"compute": {"cpus": 1, "memory_mb": 256}}')
        org = body.get("org_slug")
        if not isinstance(org, str) or not org:
            raise bad_request("org_slug: required (the organization the machines would belong to)")
        count = body.get("count", 0)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 10000:
            raise bad_request("count: expected a whole number from 0 (how many fit) to 10000")
        compute = body.get("compute") or DEFAULT_COMPUTE
        if not isinstance(compute, dict):
            raise bad_request('compute: expected a guest like {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}')
        # the same checks as a machine's guest (kinds, ranges)
        guest = mc.guest(mc.normalize({"image": "placement", "guest": {**DEFAULT_COMPUTE, **compute}}))
        hosts = self.state.host_views()
        regions = self._regions(body.get("region"), sorted({h.region for h in hosts}))
        rows = []
        for region in regions:
            fit, spread = capacity(region, hosts, guest.cpu_kind, guest.cpus, guest.memory_mb)
            if fit == 0 or fit < count:
                continue
            rows.append({"region": region, "count": count or fit, "concurrency": spread})
        return {"regions": rows}

    @staticmethod
    def _regions(expression: Any, fleet: list[str]) -> list[str]:
        """A comma list of region codes and `any` (every region with hosts), in the order given."""
        if expression in (None, ""):
            return fleet
        if not isinstance(expression, str):
            raise bad_request('region: expected a comma list of region codes, e.g. "ams,any"')
        chosen: list[str] = []
        for part in (p.strip() for p in expression.split(",")):
            names = fleet if part == "any" else [part]
            for name in names:
                if not is_known(name) and name not in fleet:
                    raise bad_request(f"region: {name!r} is not a region code (or `any`); this fleet has hosts in: "
                                      f"{', '.join(fleet) or 'none'}")
                if name not in chosen:
                    chosen.append(name)
        return chosen
