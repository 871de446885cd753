"""From a loaded fly.toml to the machine config each process group gets, as flyctl maps it.

Mirrors flyctl's `Flatten` (what belongs to a group: an item without `processes` belongs only to the
default group; a [[vm]] without `processes` to every group) and `updateMachineConfig` (init from the
group's command or [experimental], services from [http_service] then [[services]], top-level checks with
their port defaulting to the http_service's, env + FLY_PROCESS_GROUP + PRIMARY_REGION, mounts, stop
config, guest from [[vm]], restart policy, metrics, statics, files).
"""

from __future__ import annotations

import base64
import copy
import json
import shlex
from collections.abc import Callable
from typing import Any

from roost import __version__
from roost.config.flytoml import AppConfig, ConfigError, parse_memory_mb, parse_size_gb
from roost.core.machine_config import GUEST_PRESETS, parse_autostop

JSON = dict[str, Any]

APP_GROUP = "app"
PRESETS: dict[str, JSON] = {
    **{name: {"cpu_kind": kind, "cpus": cpus, "memory_mb": memory}
       for name, (kind, cpus, memory) in GUEST_PRESETS.items()},
    "a10": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": "a10", "gpus": 1},
    "a100-40gb": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": "a100-pcie-40gb", "gpus": 1},
    "a100-80gb": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": "a100-sxm4-80gb", "gpus": 1},
    "l40s": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": "l40s", "gpus": 1},
}
GUEST_FIELDS = ("cpu_kind", "cpus", "memory_mb", "gpus", "gpu_kind", "kernel_args", "host_dedication_id",
                "persist_rootfs")
RESTART_POLICY = {"always": "always", "never": "no", "on-failure": "on-failure"}


def process_groups(cfg: AppConfig) -> list[str]:
    """flyctl's ProcessNames: the [processes] keys sorted, or ['app']."""
    names = list(cfg.processes)
    return sorted(names) if names else [APP_GROUP]


def default_group(cfg: AppConfig) -> str:
    groups = process_groups(cfg)
    return APP_GROUP if APP_GROUP in groups else groups[0]


def _belongs(cfg: AppConfig, group: str, processes: Any) -> bool:
    """An item with no `processes` belongs to the default group only (flyctl's flattenGroupsMatch)."""
    names = [processes] if isinstance(processes, str) else list(processes or [])
    if not names:
        return group == default_group(cfg)
    return group in names


def compute_for(cfg: AppConfig, group: str) -> JSON | None:
    """The most specific [[vm]] for the group: one naming it, else one with no `processes`."""
    matching: list[JSON] = [vm for vm in cfg.doc.get("vm") or []
                            if not vm.get("processes") or _belongs(cfg, group, vm["processes"])]
    named = [vm for vm in matching if group in (vm.get("processes") or [])]
    if named:
        return named[0]
    return matching[0] if matching else None


def group_services(cfg: AppConfig, group: str) -> list[JSON]:
    """Every service of the group in flyctl's order: the expanded http_service first, then [[services]]."""
    out = []
    http = cfg.doc.get("http_service")
    if isinstance(http, dict) and _belongs(cfg, group, http.get("processes")):
        out.append(_http_service(http))
    for service in cfg.doc.get("services") or []:
        if _belongs(cfg, group, service.get("processes")):
            out.append(_machine_service(service))
    return out


def group_mounts(cfg: AppConfig, group: str) -> list[JSON]:
    return [m for m in cfg.doc.get("mounts") or [] if _belongs(cfg, group, m.get("processes"))]


def machine_config(cfg: AppConfig, group: str, image: str = "",
                   read_local_file: Callable[[str], bytes] | None = None) -> JSON:
    """The machine config for `group` (flyctl's ToMachineConfig with no previous machine config)."""
    if group not in process_groups(cfg):
        raise ConfigError(f"unknown process group {group!r}; fly.toml defines {', '.join(process_groups(cfg))}")
    doc = cfg.doc
    out = _base_config(cfg)
    for managed in ("metrics", "init", "services", "checks", "statics", "mounts", "stop_config", "files",
                    "restart"):
        out.pop(managed, None)  # fly.toml owns these (flyctl nulls them before filling them in)
    if image:
        out["image"] = image
    metrics = [m for m in doc.get("metrics") or [] if _belongs(cfg, group, m.get("processes"))]
    if metrics:
        out["metrics"] = {k: v for k, v in metrics[0].items() if k in ("port", "path", "https")}

    init: JSON = {}
    cmd = _init_cmd(cfg, group)
    experimental = doc.get("experimental") or {}
    if cmd is None and experimental.get("cmd"):
        cmd = list(experimental["cmd"])
    if cmd:
        init["cmd"] = cmd
    if experimental.get("entrypoint"):
        init["entrypoint"] = list(experimental["entrypoint"])
    if experimental.get("exec"):
        init["exec"] = list(experimental["exec"])
    if doc.get("swap_size_mb"):
        init["swap_size_mb"] = doc["swap_size_mb"]
    if init:
        out["init"] = init

    out["metadata"] = {**(out.get("metadata") or {}), "fly_flyctl_version": f"roost-{__version__}",
                       "fly_platform_version": "v2", "fly_process_group": group}

    services = group_services(cfg, group)
    if services:
        out["services"] = services

    checks: JSON = {}
    http = doc.get("http_service") if _belongs(cfg, group, (doc.get("http_service") or {}).get("processes")) else None
    for name, check in sorted((doc.get("checks") or {}).items()):
        if not _belongs(cfg, group, check.get("processes")):
            continue
        machine_check = _top_check(check)
        if "port" not in machine_check:
            if not http:
                raise ConfigError(f"check '{name}' for process group '{group}' has no port set and the group "
                                  "has no http_service to take it from")
            machine_check["port"] = http["internal_port"]
        checks[name] = machine_check
    if checks:
        out["checks"] = checks

    env = dict(doc.get("env") or {})
    env["FLY_PROCESS_GROUP"] = group
    if cfg.primary_region:
        env["PRIMARY_REGION"] = cfg.primary_region
    out["env"] = env

    statics = [{k: s[k] for k in ("guest_path", "url_prefix", "tigris_bucket", "index_document") if s.get(k)}
               for s in doc.get("statics") or []]
    if statics:
        out["statics"] = statics

    mounts = []
    for m in group_mounts(cfg, group):
        mount: JSON = {"path": m["destination"], "name": m["source"]}
        if m.get("auto_extend_size_threshold"):
            mount["extend_threshold_percent"] = int(m["auto_extend_size_threshold"])
        if m.get("auto_extend_size_increment"):
            mount["add_size_gb"] = parse_size_gb(m["auto_extend_size_increment"], "mounts.auto_extend_size_increment")
        if m.get("auto_extend_size_limit"):
            mount["size_gb_limit"] = parse_size_gb(m["auto_extend_size_limit"], "mounts.auto_extend_size_limit")
        mounts.append(mount)
    if mounts:
        out["mounts"] = mounts

    if doc.get("kill_signal") is not None or doc.get("kill_timeout") is not None:
        stop: JSON = {}
        if doc.get("kill_timeout") is not None:
            stop["timeout"] = doc["kill_timeout"]
        if doc.get("kill_signal") is not None:
            stop["signal"] = doc["kill_signal"]
        out["stop_config"] = stop

    files = []
    for f in doc.get("files") or []:
        if not _belongs(cfg, group, f.get("processes")):
            continue
        entry: JSON = {"guest_path": f.get("guest_path", "")}
        if f.get("local_path"):
            if read_local_file is None:
                entry["raw_value"] = f"<contents of {f['local_path']}>"
            else:
                entry["raw_value"] = base64.b64encode(read_local_file(f["local_path"])).decode()
        elif f.get("secret_name"):
            entry["secret_name"] = f["secret_name"]
        elif f.get("raw_value"):
            entry["raw_value"] = base64.b64encode(str(f["raw_value"]).encode()).decode()
        files.append(entry)
    if files:
        out["files"] = files

    guest = _guest(cfg, group)
    if guest is not None:
        out["guest"] = guest

    for restart in doc.get("restart") or []:
        if _belongs(cfg, group, restart.get("processes")):
            policy = RESTART_POLICY[restart.get("policy", "on-failure")]
            out["restart"] = {"policy": policy}
            if restart.get("retries"):
                out["restart"]["max_retries"] = int(restart["retries"])
    return out


def release_command_config(cfg: AppConfig, image: str) -> JSON | None:
    """The one-off machine that runs [deploy].release_command (flyctl's ToReleaseMachineConfig)."""
    command = (cfg.doc.get("deploy") or {}).get("release_command")
    if not command:
        return None
    env = dict(cfg.doc.get("env") or {})
    env.update({"RELEASE_COMMAND": "1", "FLY_PROCESS_GROUP": "fly_app_release_command"})
    if cfg.primary_region:
        env["PRIMARY_REGION"] = cfg.primary_region
    out: JSON = {"image": image, "init": {"cmd": shlex.split(command)}, "restart": {"policy": "no"},
                 "auto_destroy": True, "dns": {"skip_registration": True}, "env": env,
                 "metadata": {"fly_flyctl_version": f"roost-{__version__}", "fly_platform_version": "v2",
                              "fly_process_group": "fly_app_release_command"}}
    entrypoint = (cfg.doc.get("experimental") or {}).get("entrypoint")
    if entrypoint:
        out["init"]["entrypoint"] = list(entrypoint)
    stop: JSON = {}
    if cfg.doc.get("kill_timeout"):
        stop["timeout"] = cfg.doc["kill_timeout"]
    if cfg.doc.get("kill_signal"):
        stop["signal"] = cfg.doc["kill_signal"]
    if stop:
        out["stop_config"] = stop
    return out


# ---- pieces ----


def _base_config(cfg: AppConfig) -> JSON:
    """[experimental] machine_config: a machine config (inline JSON) that fly.toml's settings go on top of."""
    raw = (cfg.doc.get("experimental") or {}).get("machine_config")
    if not raw:
        return {}
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            base = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"experimental.machine_config: not valid JSON: {exc}") from None
        if isinstance(base, dict):
            return base
    raise ConfigError("experimental.machine_config: only an inline JSON machine config is supported, "
                      "not a file path")


def _init_cmd(cfg: AppConfig, group: str) -> list[str] | None:
    command = cfg.processes.get(group)
    if not command:
        return None
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"processes.{group}: could not parse the command: {exc}") from None


def _autostop_wire(value: Any) -> Any:
    return {"off": False, "stop": True}.get(parse_autostop(value), "suspend")


def _http_service(http: JSON) -> JSON:
    port80: JSON = {"port": 80, "handlers": ["http"]}
    if http.get("force_https"):
        port80["force_https"] = True
    port443: JSON = {"port": 443, "handlers": ["http", "tls"]}
    if http.get("http_options"):
        port80["http_options"] = copy.deepcopy(http["http_options"])
        port443["http_options"] = copy.deepcopy(http["http_options"])
    if http.get("tls_options"):
        port443["tls_options"] = copy.deepcopy(http["tls_options"])
    service: JSON = {"protocol": "tcp", "internal_port": http["internal_port"], "ports": [port80, port443]}
    _autoscale(http, service)
    if http.get("concurrency"):
        service["concurrency"] = copy.deepcopy(http["concurrency"])
    checks = [_http_check(c) for c in http.get("checks") or []]
    if checks:
        service["checks"] = checks
    return service


def _machine_service(s: JSON) -> JSON:
    service: JSON = {"protocol": s.get("protocol") or "tcp", "internal_port": s["internal_port"]}
    if s.get("ports"):
        service["ports"] = copy.deepcopy(s["ports"])
    _autoscale(s, service)
    if s.get("concurrency"):
        service["concurrency"] = copy.deepcopy(s["concurrency"])
    checks = [_tcp_check(c) for c in s.get("tcp_checks") or []] + [_http_check(c) for c in s.get("http_checks") or []]
    if checks:
        service["checks"] = checks
    return service


def _autoscale(src: JSON, service: JSON) -> None:
    if "auto_stop_machines" in src:
        service["autostop"] = _autostop_wire(src["auto_stop_machines"])
    if "auto_start_machines" in src:
        service["autostart"] = bool(src["auto_start_machines"])
    if "min_machines_running" in src:
        service["min_machines_running"] = int(src["min_machines_running"])


def _durations(src: JSON, out: JSON) -> None:
    for key in ("interval", "timeout", "grace_period"):
        if src.get(key):
            out[key] = src[key]


def _tcp_check(c: JSON) -> JSON:
    out: JSON = {"type": "tcp"}
    _durations(c, out)
    return out


def _http_check(c: JSON) -> JSON:
    out: JSON = {"type": "http"}
    _durations(c, out)
    for key in ("method", "path", "protocol", "tls_skip_verify", "tls_server_name"):
        if c.get(key) is not None:
            out[key] = c[key]
    if c.get("headers"):
        out["headers"] = [{"name": k, "values": [v]} for k, v in sorted(c["headers"].items())]
    return out


def _top_check(c: JSON) -> JSON:
    out: JSON = {"type": c["type"]}
    if c.get("port") is not None:
        out["port"] = int(c["port"])
    _durations(c, out)
    for key in ("path", "protocol", "tls_skip_verify", "tls_server_name"):
        if c.get(key) is not None:
            out[key] = c[key]
    if c.get("method") is not None:
        out["method"] = str(c["method"]).upper()
    if c.get("headers"):
        out["headers"] = [{"name": k, "values": [v]} for k, v in sorted(c["headers"].items())]
    return out


def _guest(cfg: AppConfig, group: str) -> JSON | None:
    """Only when fly.toml says so: without [[vm]], a deploy leaves a machine's size alone."""
    vm = compute_for(cfg, group)
    if vm is None:
        return None
    size = vm.get("size") or ("performance-8x" if vm.get("gpu_kind") else "shared-cpu-1x")
    if size not in PRESETS:
        raise ConfigError(f"vm.size: unknown size {size!r}; expected one of {', '.join(PRESETS)}")
    guest = dict(PRESETS[size])
    dedication = vm.get("host_dedication_id") or cfg.doc.get("host_dedication_id")
    if dedication:
        guest["host_dedication_id"] = dedication
    if vm.get("memory"):
        guest["memory_mb"] = parse_memory_mb(vm["memory"], "vm.memory")
    for key in GUEST_FIELDS:
        value = vm.get(key)
        if value not in (None, "", 0, [], False):
            guest[key] = value
    return guest
