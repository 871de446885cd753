"""`roost scale count`: plan with flyctl's convergence, then create and destroy machines through the API.

New machines clone the group's first machine's config with standbys cleared (flyctl: "no point on having
more than one"); a group with no machines takes fly.toml's config and the image of the latest complete
release. Volumes are reused when an unattached one of the same name is in the region, else created.
Removals take the first machines of a region in API order, destroyed with kill=true.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from roost.client.api import Api
from roost.client.errors import UserError
from roost.config.flytoml import AppConfig
from roost.config.machines import machine_config
from roost.core import machine_config as mc
from roost.deploy.runner import group_of, managed_machines
from roost.plan.scale import RegionChange, converge


@dataclass
class GroupScale:
    group: str
    changes: list[RegionChange]
    template: dict[str, Any]
    machines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def adds(self) -> int:
        return sum(max(0, c.delta) for c in self.changes)

    @property
    def removes(self) -> int:
        return sum(max(0, -c.delta) for c in self.changes)


def plan_scale(api: Api, app: str, counts: dict[str, str], regions: list[str] | None, max_per_region: int,
               cfg: AppConfig | None) -> list[GroupScale]:
    from roost.plan.scale import parse_count

    machines = managed_machines(api, app)
    primary = (cfg.primary_region if cfg else "") or str(api.get(f"/v1/apps/{app}").get("primary_region") or "")
    regions_given = bool(regions)
    if not regions:
        # flyctl: the regions the app's machines are in; new machines go round-robin from the first, which
        # is the primary region (a group's machines start there), never to a far region first.
        regions = list(dict.fromkeys(m["region"] for m in machines))
        if primary:
            regions = [primary] + [r for r in regions if r != primary]
    if not regions:
        raise UserError("no machines and no primary region to scale in: pass --region")
    plans = []
    for group, count in counts.items():
        in_group = [m for m in machines if group_of(m) == group]
        listed = [m for m in in_group if m["region"] in regions]
        total = parse_count(count, len(listed))
        current: dict[str, int] = {}
        for m in listed:
            current[m["region"]] = current.get(m["region"], 0) + 1
        changes = converge(total, regions, current, max_per_region, fill_emptiest=regions_given)
        plans.append(GroupScale(group, changes, template_for(api, app, group, in_group, cfg), in_group))
    return plans


def template_for(api: Api, app: str, group: str, machines: list[dict[str, Any]], cfg: AppConfig | None
                 ) -> dict[str, Any]:
    if machines:
        # flyctl: "Nullify standbys, no point on having more than one".
        return mc.as_standby(machines[0]["config"], [])
    if cfg is None:
        raise UserError(f"process group {group!r} has no machines to clone: run from the app's directory "
                       "(with its fly.toml) or 'roost deploy' first")
    releases = [r for r in api.get(f"/v1/apps/{app}/releases") if r["status"] == "complete"]
    if not releases:
        raise UserError("this app has no complete releases: run 'roost deploy' first")
    if group not in cfg.processes and not (group == "app" and not cfg.processes):
        raise UserError(f"unknown process group {group!r} in fly.toml")
    return machine_config(cfg, group, releases[0]["image"])


def execute(api: Api, app: str, plans: list[GroupScale], say: Any) -> tuple[list[str], list[str]]:
    created: list[str] = []
    destroyed: list[str] = []
    for gp in plans:
        for change in gp.changes:
            if change.delta < 0:
                in_region = [m for m in gp.machines if m["region"] == change.region]
                for m in in_region[: -change.delta]:
                    api.delete(f"/v1/apps/{app}/machines/{m['id']}", params={"kill": "true"})
                    destroyed.append(m["id"])
                    say(f"  destroyed {m['id']} ({gp.group}) in {change.region}")
        for change in gp.changes:
            for _ in range(max(0, change.delta)):
                config = copy.deepcopy(gp.template)
                for mount in config.get("mounts") or []:
                    mount["volume"] = volume_for(api, app, mount, change.region, change.target > 1)
                m = api.post(f"/v1/apps/{app}/machines", json={"config": config, "region": change.region})
                created.append(m["id"])
                say(f"  created {m['id']} ({gp.group}) in {change.region} on {m.get('host_id')}")
    for mid in created:
        api.wait_state(app, mid, "started", 120)
    return created, destroyed


def volume_for(api: Api, app: str, mount: dict[str, Any], region: str, unique: bool) -> str:
    name = mount.get("name") or "data"
    volumes = [v for v in api.get(f"/v1/apps/{app}/volumes") if v["name"] == name]
    for v in volumes:
        if v["region"] == region and not v.get("attached_machine_id") and v.get("host_status") == "ok":
            return str(v["id"])
    size = max([v["size_gb"] for v in volumes] or [1])
    created = api.post(f"/v1/apps/{app}/volumes", json={"name": name, "region": region, "size_gb": size,
                                                        "require_unique_zone": unique})
    return str(created["id"])
