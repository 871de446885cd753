"""fly.toml: parse, normalise legacy shapes the way flyctl does, check types and keys.

The result is a plain, normalised document (`AppConfig.doc`) plus the warnings a user should see: keys
nobody knows (likely typos) and keys Fly knows that Roost does not act on. Errors carry the key path.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from roost.core.errors import RoostError
from roost.core.machine_config import parse_autostop
from roost.core.units import format_go_duration, parse_go_duration, parse_signal

JSON = dict[str, Any]


class ConfigError(RoostError):
    """What is wrong with a fly.toml. Validation goes on past a problem, so one error can carry them all
    (`problems`, each starting with its key path); its message names the first and counts the rest."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        more = len(self.problems) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''}: 'roost config validate' lists them)"
        super().__init__(400, message)


@contextmanager
def collecting(problems: list[str]) -> Iterator[None]:
    """Run a check; a problem it finds is noted and the next check runs."""
    try:
        yield
    except ConfigError as exc:
        problems.extend(exc.problems)


# Keys flyctl knows, per section (from its Config types); anything else is reported by name.
TOP_KEYS = {
    "app", "primary_region", "kill_signal", "kill_timeout", "swap_size_mb", "console_command", "experimental",
    "build", "deploy", "env", "processes", "mounts", "http_service", "services", "checks", "files",
    "host_dedication_id", "machine_checks", "restart", "vm", "statics", "metrics", "machine_config", "container",
}
SECTION_KEYS: dict[str, set[str]] = {
    "build": {"builder", "args", "buildpacks", "image", "settings", "builtin", "dockerfile", "ignorefile",
              "build-target", "compose", "compression", "compression_level", "dockerignore"},
    "deploy": {"strategy", "max_unavailable", "wait_timeout", "release_command", "release_command_timeout",
               "release_command_vm", "seed_command"},
    "experimental": {"cmd", "entrypoint", "exec", "auto_rollback", "enable_consul", "enable_etcd",
                     "lazy_load_images", "attached", "machine_config", "use_zstd", "allowed_public_ports",
                     "private_network", "kill_timeout", "metrics_port", "metrics_path"},
    "http_service": {"internal_port", "force_https", "auto_stop_machines", "auto_start_machines",
                     "min_machines_running", "processes", "concurrency", "tls_options", "http_options", "checks",
                     "machine_checks"},
    "services": {"protocol", "internal_port", "auto_stop_machines", "auto_start_machines", "min_machines_running",
                 "ports", "concurrency", "tcp_checks", "http_checks", "machine_checks", "processes",
                 "script_checks"},
    "mounts": {"source", "destination", "initial_size", "snapshot_retention", "scheduled_snapshots",
               "auto_extend_size_threshold", "auto_extend_size_increment", "auto_extend_size_limit", "processes"},
    "vm": {"size", "memory", "cpu_kind", "cpus", "memory_mb", "gpus", "gpu_kind", "kernel_args",
           "host_dedication_id", "persist_rootfs", "processes"},
    "checks": {"port", "type", "interval", "timeout", "grace_period", "method", "path", "protocol",
               "tls_skip_verify", "tls_server_name", "headers", "processes"},
    "restart": {"policy", "retries", "processes"},
    "metrics": {"port", "path", "https", "processes"},
    "statics": {"guest_path", "url_prefix", "tigris_bucket", "index_document"},
    "files": {"guest_path", "local_path", "secret_name", "raw_value", "processes"},
}
CHECK_KEYS = {"interval", "timeout", "grace_period", "method", "path", "protocol", "tls_skip_verify",
              "tls_server_name", "headers", "restart_limit"}
PORT_KEYS = {"port", "start_port", "end_port", "handlers", "force_https", "http_options", "tls_options",
             "proxy_proto_options"}

# What Fly does that Roost does not (yet): accepted, kept where flyctl keeps them, and named in a warning.
UNSUPPORTED = {
    "build.builder": "image builders (Roost builds a Dockerfile with buildah, or deploys a directory or [build].image)",
    "build.buildpacks": "buildpacks", "build.builtin": "builtins", "build.settings": "builder settings",
    "build.compose": "compose builds",
    "statics": "static file serving by the proxy", "machine_checks": "test machines",
    "http_service.machine_checks": "test machines", "services.machine_checks": "test machines",
    "http_service.tls_options": "TLS termination", "http_service.http_options": "HTTP options",
    "http_service.force_https": "HTTPS redirects (the edge speaks plain HTTP)",
    "experimental.enable_consul": "Consul", "experimental.enable_etcd": "etcd",
    "experimental.lazy_load_images": "lazy image loading", "experimental.attached": "attached secrets",
    "host_dedication_id": "dedicated hosts", "swap_size_mb": "swap", "vm.gpus": "GPUs", "vm.gpu_kind": "GPUs",
    "vm.kernel_args": "kernel arguments", "deploy.seed_command": "seed commands", "container": "containers",
    "machine_config": "raw machine configs",
    "mounts.auto_extend_size_threshold": "volume auto-extension", "metrics": "metrics scraping",
}


@dataclass
class AppConfig:
    doc: JSON  # normalised fly.toml
    warnings: list[str] = field(default_factory=list)
    path: str = "fly.toml"

    @property
    def app(self) -> str:
        return str(self.doc.get("app") or "")

    @property
    def primary_region(self) -> str:
        return str(self.doc.get("primary_region") or "")

    @property
    def processes(self) -> dict[str, str]:
        return dict(self.doc.get("processes") or {})

    @property
    def deploy(self) -> JSON:
        return dict(self.doc.get("deploy") or {})

    @property
    def build(self) -> JSON:
        return dict(self.doc.get("build") or {})


def load_text(text: str, path: str = "fly.toml", regions: Collection[str] | None = None) -> AppConfig:
    """Parse and check a fly.toml; `regions`, when given, are the region codes primary_region may name."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return load_dict(raw, path, regions)


def load_dict(raw: JSON, path: str = "fly.toml", regions: Collection[str] | None = None) -> AppConfig:
    doc = patch(copy.deepcopy(raw))
    cfg = AppConfig(doc=doc, path=path)
    _check_keys(cfg)
    _validate(cfg, regions)
    return cfg


# ---- flyctl's patches (internal/appconfig/patches.go), in its order ----


def patch(cfg: JSON) -> JSON:
    for fn in (_patch_env, _patch_services, _patch_processes, _patch_experimental, _patch_top_checks,
               _patch_compute, _patch_mounts, _patch_metrics, _patch_top_fields, _patch_build):
        cfg = fn(cfg)
    return cfg


def _env_map(raw: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    if isinstance(raw, list):
        for item in raw:
            env.update(_env_map(item))
    elif isinstance(raw, dict):
        for key, value in raw.items():
            env[str(key)] = value if isinstance(value, str) else _go_string(value)
    else:
        raise ConfigError(f"env: expected a table of NAME = \"value\", got {type(raw).__name__}")
    return env


def _go_string(value: Any) -> str:
    """fmt.Sprintf("%v") of a TOML value, as flyctl turns non-string env values into strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _patch_env(cfg: JSON) -> JSON:
    if "env" in cfg:
        cfg["env"] = _env_map(cfg["env"])
    return cfg


def _array_of_tables(raw: Any, where: str) -> list[JSON]:
    if isinstance(raw, dict):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, dict) for x in raw):
        return list(raw)
    raise ConfigError(f"{where}: expected a table or an array of tables")


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: can not convert {value!r} to an integer") from None
    raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")


def _cast_duration(value: Any, unit_seconds: float, where: str) -> str | None:
    """flyctl's _castDuration: strings pass, numbers are counts of `unit`; returns Go's canonical form."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like \"10s\", got {value!r}")
    if isinstance(value, int | float):
        return format_go_duration(value * unit_seconds)
    if isinstance(value, str):
        try:
            return format_go_duration(parse_go_duration(value))
        except ValueError:
            raise ConfigError(f"{where}: invalid duration {value!r} (use forms like \"10s\", \"1m30s\")") from None
    raise ConfigError(f"{where}: expected a duration, got {type(value).__name__}")


def _patch_check(check: JSON, where: str) -> JSON:
    for attr in ("interval", "timeout", "grace_period"):
        if attr in check:
            value = _cast_duration(check[attr], 0.001, f"{where}.{attr}")
            if value is None:
                del check[attr]
            else:
                check[attr] = value
    if "headers" in check:
        raw = check["headers"]
        headers: dict[str, str] = {}
        if isinstance(raw, list):
            for item in raw:
                if not isinstance(item, dict) or "name" not in item:
                    raise ConfigError(f"{where}.headers: expected [{{name = ..., value = ...}}] or a table")
                headers[_go_string(item["name"])] = _go_string(item.get("value", ""))
        elif isinstance(raw, dict):
            headers = {str(k): _go_string(v) for k, v in raw.items()}
        else:
            raise ConfigError(f"{where}.headers: expected a table of header = value")
        if headers:
            check["headers"] = headers
        else:
            del check["headers"]
    return check


def _patch_services(cfg: JSON) -> JSON:
    if "services" not in cfg:
        return cfg
    out = []
    for i, service in enumerate(_array_of_tables(cfg["services"], "services")):
        where = f"services[{i}]"
        if "concurrency" in service and isinstance(service["concurrency"], str):
            left, sep, right = service["concurrency"].partition(",")
            if not sep:
                raise ConfigError(f"{where}.concurrency: unknown value {service['concurrency']!r} "
                                  "(use a table, or the old \"SOFT,HARD\" form)")
            service["concurrency"] = {"type": "requests", "hard_limit": _to_int(right, f"{where}.concurrency"),
                                      "soft_limit": _to_int(left, f"{where}.concurrency")}
        if "ports" in service:
            ports = _array_of_tables(service["ports"], f"{where}.ports")
            for j, port in enumerate(ports):
                if "port" in port:
                    port["port"] = _to_int(port["port"], f"{where}.ports[{j}].port")
            service["ports"] = ports
        for kind in ("tcp_checks", "http_checks"):
            if kind in service:
                checks = [_patch_check(c, f"{where}.{kind}[{k}]")
                          for k, c in enumerate(_array_of_tables(service[kind], f"{where}.{kind}"))]
                if checks:
                    service[kind] = checks
                else:
                    del service[kind]
        if "internal_port" in service:
            service["internal_port"] = _to_int(service["internal_port"], f"{where}.internal_port")
        if service:
            out.append(service)
    cfg["services"] = out
    return cfg


def _patch_processes(cfg: JSON) -> JSON:
    raw = cfg.get("processes")
    if raw is None:
        return cfg
    if isinstance(raw, list):
        processes: dict[str, str] = {}
        for item in raw:
            if isinstance(item, dict) and "name" in item:
                processes[_go_string(item["name"])] = _go_string(item.get("command", ""))
        if processes:
            cfg["processes"] = processes
        else:
            del cfg["processes"]
    elif isinstance(raw, dict):
        cfg["processes"] = {str(k): v if isinstance(v, str) else _go_string(v) for k, v in raw.items()}
    else:
        raise ConfigError(f"processes: expected a table of group = \"command\", got {type(raw).__name__}")
    return cfg


def _str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: expected a string or an array of strings")


def _patch_experimental(cfg: JSON) -> JSON:
    raw = cfg.get("experimental")
    if raw is None:
        return cfg
    if not isinstance(raw, dict):
        raise ConfigError("experimental: expected a table")
    metrics: JSON = {}
    for key, value in list(raw.items()):
        if key in ("cmd", "entrypoint", "exec"):
            raw[key] = _str_list(value, f"experimental.{key}")
        elif key == "kill_timeout" and "kill_timeout" not in cfg:
            cfg["kill_timeout"] = _cast_duration(value, 1.0, "experimental.kill_timeout")
        elif key in ("metrics_port", "metrics_path"):
            metrics[key[len("metrics_"):]] = value
    if raw:
        cfg["experimental"] = raw
    else:
        del cfg["experimental"]
    if "metrics" not in cfg and metrics:
        cfg["metrics"] = metrics
    return cfg


def _patch_top_checks(cfg: JSON) -> JSON:
    raw = cfg.get("checks")
    if raw is None:
        return cfg
    checks: JSON = {}
    if isinstance(raw, dict):
        for name, check in raw.items():
            if not isinstance(check, dict):
                raise ConfigError(f"checks.{name}: expected a table")
            checks[name] = _patch_check(check, f"checks.{name}")
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ConfigError(f"checks[{i}]: a check in a list needs a name")
            check = {k: v for k, v in item.items() if k != "name"}
            checks[item["name"]] = _patch_check(check, f"checks.{item['name']}")
    else:
        raise ConfigError("checks: expected a table of named checks")
    if checks:
        cfg["checks"] = checks
    else:
        del cfg["checks"]
    return cfg


def _patch_compute(cfg: JSON) -> JSON:
    compute: list[JSON] = []
    for key in ("compute", "computes", "vm"):
        if key in cfg:
            compute += _array_of_tables(cfg.pop(key), key)
    for item in compute:
        if "memory" in item:
            item["memory"] = _go_string(item["memory"])
    cfg["vm"] = compute
    return cfg


def _patch_mounts(cfg: JSON) -> JSON:
    mounts: list[JSON] = []
    for key in ("mount", "mounts"):
        if key in cfg:
            mounts += _array_of_tables(cfg.pop(key), key)
    for item in mounts:
        if "initial_size" in item:
            item["initial_size"] = _go_string(item["initial_size"])
    cfg["mounts"] = mounts
    return cfg


def _patch_metrics(cfg: JSON) -> JSON:
    metrics: list[JSON] = []
    for key in ("metric", "metrics"):
        if key in cfg:
            metrics += _array_of_tables(cfg.pop(key), key)
    cfg["metrics"] = metrics
    return cfg


def _patch_top_fields(cfg: JSON) -> JSON:
    if "kill_timeout" in cfg:
        value = _cast_duration(cfg["kill_timeout"], 1.0, "kill_timeout")
        if value is None:
            del cfg["kill_timeout"]
        else:
            cfg["kill_timeout"] = value
    return cfg


def _patch_build(cfg: JSON) -> JSON:
    raw = cfg.get("build")
    if raw is None:
        return cfg
    if not isinstance(raw, dict):
        raise ConfigError("build: expected a table")
    if "build_target" in raw:
        raw["build-target"] = raw.pop("build_target")
    if raw:
        cfg["build"] = raw
    else:
        del cfg["build"]
    return cfg


# ---- keys: unknown (typos) and unsupported (Fly features Roost does not act on) ----


def _check_keys(cfg: AppConfig) -> None:
    doc = cfg.doc
    warn = cfg.warnings
    for key in doc:
        if key not in TOP_KEYS:
            warn.append(f"unknown key '{key}' at the top level (ignored)")
    for section in ("build", "deploy", "experimental", "http_service"):
        value = doc.get(section)
        if isinstance(value, dict):
            for key in value:
                if key not in SECTION_KEYS[section]:
                    warn.append(f"unknown key '{key}' in [{section}] (ignored)")
    for section in ("services", "mounts", "vm", "restart", "metrics", "statics", "files"):
        for i, item in enumerate(doc.get(section) or []):
            if isinstance(item, dict):
                for key in item:
                    if key not in SECTION_KEYS[section]:
                        warn.append(f"unknown key '{key}' in [[{section}]] #{i + 1} (ignored)")
    for i, service in enumerate(doc.get("services") or []):
        for j, port in enumerate(service.get("ports") or []):
            for key in port:
                if key not in PORT_KEYS:
                    warn.append(f"unknown key '{key}' in services[{i}].ports[{j}] (ignored)")
        for kind in ("tcp_checks", "http_checks"):
            for check in service.get(kind) or []:
                for key in check:
                    if key not in CHECK_KEYS:
                        warn.append(f"unknown key '{key}' in services[{i}].{kind} (ignored)")
    for name, check in (doc.get("checks") or {}).items():
        for key in check:
            if key not in SECTION_KEYS["checks"]:
                warn.append(f"unknown key '{key}' in [checks.{name}] (ignored)")
    seen: set[str] = set()
    for dotted, what in UNSUPPORTED.items():
        if _present(doc, dotted) and what not in seen:
            seen.add(what)
            warn.append(f"'{dotted}' is not supported by Roost: {what} (ignored)")


def _present(doc: JSON, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    value = doc.get(head)
    if not rest:
        return value not in (None, [], {}, "")
    if isinstance(value, dict):
        return value.get(rest) not in (None, [], {}, "", False)
    if isinstance(value, list):
        return any(isinstance(v, dict) and v.get(rest) not in (None, [], {}, "", False) for v in value)
    return False


# ---- semantic checks, with the key path ----


def _validate(cfg: AppConfig, regions: Collection[str] | None = None) -> None:
    doc = cfg.doc
    problems: list[str] = []
    primary = doc.get("primary_region")
    if regions is not None and primary and primary not in regions:
        problems.append(f"primary_region: unknown region {primary!r} (a region code such as "
                        f"{', '.join(sorted(regions)[:6])}; 'roost platform regions' lists them)")
    if doc.get("kill_signal") is not None:
        with collecting(problems):
            try:
                parse_signal(doc["kill_signal"], field="kill_signal")
            except RoostError as exc:
                raise ConfigError(exc.message) from None
    processes = doc.get("processes") or {}
    for name in processes:
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            problems.append(f"processes: invalid group name {name!r} (letters, digits, '-' and '_')")
    groups = set(processes) or {"app"}

    def check_groups(where: str, value: Any) -> None:
        if value is None:
            return
        names = _str_list(value, f"{where}.processes")
        unknown = [n for n in names if n not in groups and processes]
        if unknown:
            # flyctl drops such items when it flattens a group; say so rather than fail the whole file.
            cfg.warnings.append(f"{where}.processes names {unknown[0]!r}, which [processes] does not define "
                                f"({', '.join(sorted(groups))}): it applies to no such group")

    http = doc.get("http_service")
    if http is not None:
        with collecting(problems):
            if not isinstance(http, dict):
                raise ConfigError("http_service: expected a table")
            with collecting(problems):
                port = http.get("internal_port", 8080)
                http["internal_port"] = _to_int(port, "http_service.internal_port")
                if not 1 <= http["internal_port"] <= 65535:
                    raise ConfigError("http_service.internal_port: must be between 1 and 65535")
            with collecting(problems):
                _validate_autoscale(http, "http_service")
            with collecting(problems):
                check_groups("http_service", http.get("processes"))
            with collecting(problems):
                checks = http.get("checks")
                if checks is not None:
                    http["checks"] = [_patch_check(c, f"http_service.checks[{i}]")
                                      for i, c in enumerate(_array_of_tables(checks, "http_service.checks"))]
            with collecting(problems):
                _validate_concurrency(http.get("concurrency"), "http_service.concurrency")
    for i, service in enumerate(doc.get("services") or []):
        where = f"services[{i}]"
        with collecting(problems):
            if "internal_port" not in service:
                raise ConfigError(f"{where}.internal_port: required")
            if not 1 <= service["internal_port"] <= 65535:
                raise ConfigError(f"{where}.internal_port: must be between 1 and 65535")
        with collecting(problems):
            protocol = service.get("protocol", "tcp")
            if protocol not in ("tcp", "udp"):
                raise ConfigError(f"{where}.protocol: must be tcp or udp, not {protocol!r}")
        with collecting(problems):
            _validate_autoscale(service, where)
        with collecting(problems):
            check_groups(where, service.get("processes"))
        with collecting(problems):
            _validate_concurrency(service.get("concurrency"), f"{where}.concurrency")
    for name, check in (doc.get("checks") or {}).items():
        with collecting(problems):
            if check.get("type") not in ("http", "tcp"):
                raise ConfigError(f"checks.{name}.type: missing or invalid check type, must be 'http' or 'tcp'")
        with collecting(problems):
            if "port" in check:
                check["port"] = _to_int(check["port"], f"checks.{name}.port")
            check_groups(f"checks.{name}", check.get("processes"))
    for i, mount in enumerate(doc.get("mounts") or []):
        where = f"mounts[{i}]"
        with collecting(problems):
            if not isinstance(mount.get("source"), str) or not mount["source"]:
                raise ConfigError(f"{where}.source: required (the volume name)")
        with collecting(problems):
            dest = mount.get("destination")
            if not isinstance(dest, str) or not dest.startswith("/") or dest.rstrip("/") == "":
                raise ConfigError(f"{where}.destination: must be an absolute path other than /")
            check_groups(where, mount.get("processes"))
    for i, vm in enumerate(doc.get("vm") or []):
        with collecting(problems):
            check_groups(f"vm[{i}]", vm.get("processes"))
            if vm.get("memory"):
                parse_memory_mb(vm["memory"], f"vm[{i}].memory")
    for i, restart in enumerate(doc.get("restart") or []):
        with collecting(problems):
            if restart.get("policy", "on-failure") not in ("always", "never", "on-failure"):
                raise ConfigError(f"restart[{i}].policy: must be always, never or on-failure")
            check_groups(f"restart[{i}]", restart.get("processes"))
    deploy = doc.get("deploy") or {}
    strategy = deploy.get("strategy")
    if strategy and strategy not in ("rolling", "immediate", "canary", "bluegreen"):
        cfg.warnings.append(f"deploy.strategy {strategy!r} is not a strategy; rolling is used")
    if deploy.get("max_unavailable") is not None:
        value = deploy["max_unavailable"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append("deploy.max_unavailable: a fraction (0 < x < 1) or a number of machines (>= 1)")
    if problems:
        raise ConfigError(problems[0], problems)


def _validate_autoscale(block: JSON, where: str) -> None:
    if "auto_stop_machines" in block:
        try:
            parse_autostop(block["auto_stop_machines"], f"{where}.auto_stop_machines")
        except RoostError as exc:
            raise ConfigError(exc.message) from None
    if "auto_start_machines" in block and not isinstance(block["auto_start_machines"], bool):
        raise ConfigError(f"{where}.auto_start_machines: expected true or false")
    if "min_machines_running" in block:
        block["min_machines_running"] = _to_int(block["min_machines_running"], f"{where}.min_machines_running")


def _validate_concurrency(conc: Any, where: str) -> None:
    if conc is None:
        return
    if not isinstance(conc, dict):
        raise ConfigError(f"{where}: expected a table with type, soft_limit, hard_limit")
    for key in ("soft_limit", "hard_limit"):
        if key in conc:
            conc[key] = _to_int(conc[key], f"{where}.{key}")
    if conc.get("balancing", "latency") not in ("latency", "random"):
        raise ConfigError(f"{where}.balancing: expected \"latency\" (Roost's default: fewer requests to slow "
                          f"machines) or \"random\" (Fly's rule), got {conc['balancing']!r}")


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "ki": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
               "mi": 1024**2, "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gi": 1024**3, "gib": 1024**3,
               "t": 1024**4, "tb": 1024**4}


def parse_memory_mb(value: Any, where: str) -> int:
    """'1gb' -> 1024, '256mb' -> 256, '512' -> 512 (a bare number is MB), as flyctl's ParseSize."""
    return _parse_size(value, where, 1024**2)


def parse_size_gb(value: Any, where: str) -> int:
    """'30gb' -> 30, '10' -> 10 (a bare number is GB); decimal units as flyctl's FromHumanSize."""
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text)
    number = text.rstrip("bgkmt ")
    unit = text[len(number):].strip()
    scale = {"gb": 1, "g": 1, "tb": 1000, "t": 1000, "mb": 0.001, "m": 0.001}.get(unit)
    try:
        if scale is None:
            raise ValueError
        return max(1, round(float(number) * scale))
    except ValueError:
        raise ConfigError(f"{where}: invalid size {value!r} (use forms like \"10gb\")") from None


def _parse_size(value: Any, where: str, unit: int) -> int:
    text = str(value).strip().lower().replace(" ", "")
    if text.isdigit():
        return int(text)
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = text[len(number):]
    if suffix not in _SIZE_UNITS or not number:
        raise ConfigError(f"{where}: invalid size {value!r} (use forms like \"512mb\" or \"1gb\")")
    try:
        size = int(float(number) * _SIZE_UNITS[suffix] // unit)
    except ValueError:
        raise ConfigError(f"{where}: invalid size {value!r}") from None
    if size <= 0:
        raise ConfigError(f"{where}: must be more than zero")
    return size
