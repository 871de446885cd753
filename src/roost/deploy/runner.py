"""`roost deploy`: carry out a deploy through the Machines API, as flyctl does.

Order (flyctl's deployMachinesApp): image → release record → release_command in a one-off machine (its
failure stops the deploy, with its output) → destroy machines of groups gone from fly.toml → create
machines for groups that have none (first deploy, new group, after scaling to zero) → update existing
machines with the chosen strategy → release complete (or failed, saying why).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.client.api import Api
from roost.client.errors import UserError
from roost.client.images import Dockerfile, push
from roost.config.flytoml import AppConfig, parse_size_gb
from roost.config.machines import group_mounts, group_services, machine_config, process_groups, release_command_config
from roost.core import machine_config as mc
from roost.core.ids import new_ulid
from roost.core.units import parse_go_duration
from roost.plan import deploy as plan

RESERVED_GROUPS = {"fly_app_release_command", "fly_app_console", "fly_app_test_machine_command"}
Say = Callable[[str], None]


@dataclass
class DeployOptions:
    strategy: str | None = None
    ha: bool = True
    image: str | None = None
    wait_timeout: float = 300.0
    release_timeout: float = 300.0
    bluegreen_wait: float = 2.0
    standby_region: str | None = None  # new standbys go there (another region survives a region's loss)


@dataclass
class DeployResult:
    version: int
    image: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)


def managed_machines(api: Api, app: str) -> list[dict[str, Any]]:
    """The app's Fly-Launch machines (with a process group), oldest first, in API order."""
    out = []
    for m in api.get(f"/v1/apps/{app}/machines"):
        metadata = (m.get("config") or {}).get("metadata") or {}
        group = metadata.get("fly_process_group")
        if group and group not in RESERVED_GROUPS and not metadata.get("fly_canary"):
            out.append(m)
    return out


def group_of(m: dict[str, Any]) -> str:
    return str(((m.get("config") or {}).get("metadata") or {}).get("fly_process_group", ""))


class Deployer:
    def __init__(self, api: Api, cfg: AppConfig, app: str, directory: Path, options: DeployOptions, say: Say) -> None:
        self.api = api
        self.cfg = cfg
        self.app = app
        self.dir = directory
        self.opts = options
        self.say = say
        self.region = cfg.primary_region or str(api.get(f"/v1/apps/{app}").get("primary_region") or "")

    # ---- the deploy ----

    def run(self) -> DeployResult:
        image = self.resolve_image()
        first_deploy = not any(r["status"] == "complete" for r in self.api.get(f"/v1/apps/{self.app}/releases"))
        strategy = plan.strategy(self.opts.strategy, self.cfg.deploy.get("strategy"))
        release = self.api.post(f"/v1/apps/{self.app}/releases", json={"image": image, "strategy": strategy})
        version = int(release["version"])
        result = DeployResult(version, image)
        self.say(f"Release v{version}: image {image}, strategy {strategy}")
        try:
            self.release_command(image)
            machines = managed_machines(self.api, self.app)
            groups = process_groups(self.cfg)
            existing: dict[str, int] = {}
            for m in machines:
                existing[group_of(m)] = existing.get(group_of(m), 0) + 1
            for gone in plan.groups_to_remove(groups, existing):
                for m in [m for m in machines if group_of(m) == gone]:
                    self.say(f"Destroying {m['id']}: process group {gone!r} is no longer in fly.toml")
                    self.api.delete(f"/v1/apps/{self.app}/machines/{m['id']}", params={"kill": "true"})
                    result.destroyed.append(m["id"])
            for group in plan.groups_needing_machines(groups, existing):
                result.created += self.create_group(group, image, version, first_deploy)
            updates = [m for m in machines if group_of(m) in groups]
            if updates:
                if strategy == "canary" and not first_deploy:
                    self.canary(image, version, {group_of(m) for m in updates})
                if strategy == "bluegreen":
                    result.updated += self.bluegreen(updates, image, version)
                else:
                    result.updated += self.update(updates, image, version, rolling=strategy != "immediate")
        except UserError as exc:
            self.api.request("PATCH", f"/v1/apps/{self.app}/releases/{version}",
                             json={"status": "failed", "description": exc.message})
            raise
        self.api.request("PATCH", f"/v1/apps/{self.app}/releases/{version}", json={"status": "complete"})
        return result

    def resolve_image(self) -> str:
        if self.opts.image:
            return self.opts.image
        built = self.cfg.build.get("image")
        if built:  # a pushed name, or a registry image (the server resolves it when machines are made)
            return str(built)

        tag = f"deployment-{new_ulid().lower()}"
        name = f"{self.app}:{tag}"
        dockerfile = self.dockerfile()
        if dockerfile is not None:
            self.say(f"Building {dockerfile.path} (buildah) as {name}")
        else:
            self.say(f"Packing {self.dir} as {name}")
        pushed = push(self.api, self.dir, name, dockerfile=dockerfile)
        return str(pushed["ref"])

    def dockerfile(self) -> Dockerfile | None:
        """[build] dockerfile (relative to the app's directory), else a Dockerfile beside fly.toml, as flyctl."""
        build = self.cfg.build
        named = build.get("dockerfile")
        path = self.dir / str(named) if named else self.dir / "Dockerfile"
        if not path.is_file():
            if named:
                raise UserError(f"[build] dockerfile {named!r}: no such file in {self.dir}")
            return None
        args = build.get("args") or {}
        return Dockerfile(path, {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {},
                          str(build.get("build-target") or ""))

    # ---- pieces ----

    def config_for(self, group: str, image: str, version: int) -> dict[str, Any]:
        def read(path: str) -> bytes:
            full = (self.dir / path) if not Path(path).is_absolute() else Path(path)
            try:
                return full.read_bytes()
            except OSError as exc:
                raise UserError(f"[[files]] local_path {path!r}: {exc}") from None

        config = machine_config(self.cfg, group, image, read_local_file=read)
        config["metadata"].update({"fly_release_id": f"v{version}", "fly_release_version": str(version)})
        return config

    def release_command(self, image: str) -> None:
        config = release_command_config(self.cfg, image)
        if config is None:
            return
        config.pop("auto_destroy", None)  # we read its output and exit code first, then destroy it
        command = " ".join(config["init"]["cmd"])
        self.say(f"Running release command: {command}")
        body: dict[str, Any] = {"config": config}
        if self.region:
            body["region"] = self.region
        m = self.api.post(f"/v1/apps/{self.app}/machines", json=body)
        try:
            self.api.wait_state(self.app, m["id"], "stopped", self.opts.release_timeout)
            current = self.api.get(f"/v1/apps/{self.app}/machines/{m['id']}")
            exit_event = next((e for e in current.get("events", []) if e.get("type") == "exit"), None)
            code = ((exit_event or {}).get("request") or {}).get("exit_event", {}).get("exit_code")
            if code is None:
                failed = [e for e in current.get("events", []) if e.get("status") == "failed"]
                reason = ((failed[0].get("request") or {}).get("error") if failed else "") or "it did not run"
                raise UserError(f"release command failed: {reason}")
            if code != 0:
                output = self.api.get(f"/v1/apps/{self.app}/logs", params={"machine": m["id"], "lines": 50})
                text = "\n".join("  " + line["message"] for line in output)
                raise UserError(f"release command {command!r} failed with exit code {code}; deploy stopped. "
                               f"Its output:\n{text}")
            self.say("Release command finished")
        finally:
            self.api.request("DELETE", f"/v1/apps/{self.app}/machines/{m['id']}", params={"kill": "true"},
                             ok_codes=(404, 412))

    def volume_for(self, group: str, first_deploy: bool) -> str | None:
        mounts = group_mounts(self.cfg, group)
        if not mounts:
            return None
        mount = mounts[0]
        name = mount["source"]
        for v in self.api.get(f"/v1/apps/{self.app}/volumes"):
            if v["name"] == name and v.get("region") == self.region and not v.get("attached_machine_id") \
                    and v.get("host_status") == "ok":
                return str(v["id"])
        if not first_deploy:
            raise UserError(f"process group {group!r} needs an unattached volume named {name!r} in region "
                           f"{self.region!r}: create one with 'roost volumes create {name} -a {self.app} "
                           f"-r {self.region}'")
        size = parse_size_gb(mount["initial_size"], "mounts.initial_size") if mount.get("initial_size") else 1
        volume = self.api.post(f"/v1/apps/{self.app}/volumes",
                               json={"name": name, "region": self.region, "size_gb": size,
                                     "snapshot_retention": mount.get("snapshot_retention") or 5})
        self.say(f"Created volume {volume['id']} ({name}, {size} GB) in {self.region}")
        return str(volume["id"])

    def create_group(self, group: str, image: str, version: int, first_deploy: bool) -> list[str]:
        services = group_services(self.cfg, group)
        mounts = group_mounts(self.cfg, group)
        group_plan = plan.new_machines(group, bool(services), bool(mounts), self.opts.ha)
        self.say(f"Creating {group_plan.describe()}")
        created: list[str] = []
        first_id = ""
        for role in group_plan.roles:
            config = self.config_for(group, image, version)
            volume = self.volume_for(group, first_deploy) if role == "first" else None
            if volume:
                config["mounts"][0]["volume"] = volume
            body: dict[str, Any] = {"config": config}
            if self.region:
                body["region"] = self.region
            if role == "standby":
                body["config"] = mc.as_standby(config, [first_id])
                body["skip_launch"] = True
                if self.opts.standby_region:
                    body["region"] = self.opts.standby_region
            m = self.api.post(f"/v1/apps/{self.app}/machines", json=body)
            created.append(m["id"])
            if role == "first":
                first_id = m["id"]
            if role != "standby":
                self.wait_healthy(m["id"])
            self.say(f"  {m['id']} ({role}) in {m['region']} on {m.get('host_id')}")
        return created

    def updated_config(self, m: dict[str, Any], image: str, version: int) -> dict[str, Any]:
        """flyctl's launchInputForUpdate: the group's new config, keeping what belongs to this machine."""
        old = m.get("config") or {}
        group = group_of(m)
        config = self.config_for(group, image, version)
        if "guest" not in config and old.get("guest"):
            config["guest"] = copy.deepcopy(old["guest"])
        old_mount = (old.get("mounts") or [{}])[0]
        if config.get("mounts") and old_mount.get("volume"):
            config["mounts"][0]["volume"] = old_mount["volume"]
        elif old_mount.get("volume") and not config.get("mounts"):
            raise UserError(f"machine {m['id']} has volume {old_mount['volume']} mounted but fly.toml has no "
                           f"[[mounts]] for group {group!r}; add the mount back, or destroy the machine")
        if old.get("standbys") and not config.get("services"):
            config = mc.as_standby(config, list(old["standbys"]))
        config["metadata"] = {**(old.get("metadata") or {}), **config["metadata"]}
        return config

    def update(self, machines: list[dict[str, Any]], image: str, version: int, rolling: bool) -> list[str]:
        done: list[str] = []
        cold = [m for m in machines if plan.skip_launch(m["state"], bool(m["config"].get("standbys")))]
        warm = [m for m in machines if m not in cold]
        for m in cold:
            self.api.post(f"/v1/apps/{self.app}/machines/{m['id']}",
                          json={"config": self.updated_config(m, image, version), "skip_launch": True})
            done.append(m["id"])
            after = plan.state_after_update(m["state"], launched=False)
            how = f"stays {after}" if after == m["state"] else f"{m['state']} -> {after}: a new version starts cold"
            self.say(f"  updated {m['id']} ({group_of(m)}, {how})")
        max_unavailable = self.cfg.deploy.get("max_unavailable")
        size = plan.pool_size(max_unavailable, len(warm)) if rolling else len(warm) or 1
        by_id = {m["id"]: m for m in warm}
        for chunk in plan.chunks([m["id"] for m in warm], size):
            for mid in chunk:
                m = by_id[mid]
                self.api.post(f"/v1/apps/{self.app}/machines/{mid}",
                              json={"config": self.updated_config(m, image, version), "skip_launch": False})
            if rolling:
                for mid in chunk:
                    self.wait_healthy(mid)
            for mid in chunk:
                done.append(mid)
                self.say(f"  updated {mid} ({group_of(by_id[mid])})")
        return done

    def wait_healthy(self, machine_id: str) -> None:
        wait_healthy(self.api, self.app, machine_id, self.opts.wait_timeout)

    def canary(self, image: str, version: int, groups: set[str]) -> None:
        for group in sorted(groups):
            if group_mounts(self.cfg, group):
                raise UserError("the canary strategy is not allowed with volumes ([[mounts]])")
            config = self.config_for(group, image, version)
            config["metadata"]["fly_canary"] = "true"
            body: dict[str, Any] = {"config": config, "skip_service_registration": True}
            if self.region:
                body["region"] = self.region
            m = self.api.post(f"/v1/apps/{self.app}/machines", json=body)
            self.say(f"Canary {m['id']} for {group!r}")
            try:
                self.wait_healthy(m["id"])
            finally:
                self.api.delete(f"/v1/apps/{self.app}/machines/{m['id']}", params={"kill": "true"})
            self.say(f"Canary for {group!r} healthy")

    def bluegreen(self, machines: list[dict[str, Any]], image: str, version: int) -> list[str]:
        if any(group_mounts(self.cfg, group_of(m)) for m in machines):
            raise UserError("the bluegreen strategy is not allowed with volumes ([[mounts]])")
        blue = [m for m in machines if not plan.skip_launch(m["state"], bool(m["config"].get("standbys")))]
        cold = [m for m in machines if m not in blue]
        updated = self.update(cold, image, version, rolling=False) if cold else []
        green = []
        for m in blue:
            config = self.updated_config(m, image, version)
            g = self.api.post(f"/v1/apps/{self.app}/machines",
                              json={"config": config, "region": m["region"], "skip_service_registration": True})
            green.append(g["id"])
            self.say(f"  green {g['id']} for blue {m['id']}")
        for gid in green:
            self.wait_healthy(gid)
        for gid in green:
            self.api.post(f"/v1/apps/{self.app}/machines/{gid}/uncordon")
        time.sleep(self.opts.bluegreen_wait)
        for m in blue:
            self.api.post(f"/v1/apps/{self.app}/machines/{m['id']}/cordon")
            self.api.post(f"/v1/apps/{self.app}/machines/{m['id']}/stop")
        for m in blue:
            self.api.wait_state(self.app, m["id"], "stopped", 60)
            self.api.delete(f"/v1/apps/{self.app}/machines/{m['id']}")
            self.say(f"  destroyed blue {m['id']}")
        return updated + green


def wait_timeout_of(cfg: AppConfig, default: float = 300.0) -> float:
    raw = cfg.deploy.get("wait_timeout")
    if not raw:
        return default
    try:
        return parse_go_duration(str(raw))
    except ValueError:
        return default


def wait_healthy(api: Api, app: str, machine_id: str, timeout: float, what: str = "deploy") -> None:
    """Started, then every check passing (if it has checks), within `timeout`; else a UserError saying why
    (and that the `what` stopped)."""
    deadline = time.monotonic() + timeout
    try:
        api.wait_state(app, machine_id, "started", timeout)
    except UserError:
        current = api.get(f"/v1/apps/{app}/machines/{machine_id}")
        raise UserError(f"machine {machine_id} did not start (state {current['state']}); {what} stopped") from None
    while True:
        current = api.get(f"/v1/apps/{app}/machines/{machine_id}")
        checks = current.get("checks") or []
        config = current.get("config") or {}
        expected = len(config.get("checks") or {}) + sum(len(s.get("checks") or [])
                                                         for s in config.get("services") or [])
        if current["state"] != "started":
            raise UserError(f"machine {machine_id} stopped while starting (state {current['state']}); "
                            f"{what} stopped")
        if len(checks) >= expected and all(c["status"] == "passing" for c in checks):
            return
        failing = [c for c in checks if c["status"] == "critical"]
        if time.monotonic() > deadline:
            detail = "; ".join(f"{c['name']}: {c.get('output', '')}" for c in failing or checks)
            raise UserError(f"machine {machine_id} failed its health checks ({detail}); {what} stopped")
        time.sleep(0.2)
