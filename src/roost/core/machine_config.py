"""The machine config (`config` in the Machines API): validation, Fly's normalisations, typed accessors.

Config keys Roost does not know are kept and returned unchanged (clients send extra keys); the keys it
does know are checked so that a bad value is a 400 naming the key, never a crash later on a host.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from roost.core.errors import bad_request
from roost.core.units import duration_seconds, parse_signal, size_bytes

# A Roost extension of a port's http_options: the largest request body the edge passes on (413 past it).
MAX_BODY_KEY = "max_request_body_size"

JSON = dict[str, Any]

GUEST_PRESETS: dict[str, tuple[str, int, int]] = {
    "shared-cpu-1x": ("shared", 1, 256),
    "shared-cpu-2x": ("shared", 2, 512),
    "shared-cpu-4x": ("shared", 4, 1024),
    "shared-cpu-8x": ("shared", 8, 2048),
    "performance-1x": ("performance", 1, 2048),
    "performance-2x": ("performance", 2, 4096),
    "performance-4x": ("performance", 4, 8192),
    "performance-8x": ("performance", 8, 16384),
    "performance-16x": ("performance", 16, 32768),
}
RESTART_POLICIES = ("no", "always", "on-failure", "spot-price")
AUTOSTOP_VALUES = ("off", "stop", "suspend")
DEFAULT_KILL_SIGNAL = "SIGINT"
DEFAULT_KILL_TIMEOUT = 5.0
MAX_KILL_TIMEOUT = 300.0
DEFAULT_ON_FAILURE_RETRIES = 10


def _require_dict(value: object, field: str) -> JSON:
    if not isinstance(value, dict):
        raise bad_request(f"{field}: expected an object, got {type(value).__name__}")
    return value


def _require_list(value: object, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_request(f"{field}: expected an array, got {type(value).__name__}")
    return value


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{field}: expected a string, got {type(value).__name__}")
    return value


def _require_int(value: object, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad_request(f"{field}: expected an integer, got {value!r}")
    if lo is not None and value < lo:
        raise bad_request(f"{field}: must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise bad_request(f"{field}: must be at most {hi}, got {value}")
    return value


# What one machine config may carry: values that reach a host's process table and environment are bounded
# and free of NUL (which ends a C string: the rest would be silently lost, or break every start).
MAX_ARGS = 1024  # entries of init.exec / entrypoint / cmd
MAX_ARG_BYTES = 64 * 1024  # one argument, one env value, one metadata value
MAX_ENV = 1024  # env variables (and metadata entries)
MAX_NAME_BYTES = 256  # an env or metadata name
ENV_NAME = re.compile(r"^[^=\x00]+$")
SYSTEM_PATHS = frozenset({"/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin",
                          "/sys", "/usr", "/var"})


def text_value(value: object, field: str, limit: int = MAX_ARG_BYTES) -> str:
    """A string bound for a host's process table or environment: valid Unicode, no NUL, at most `limit` bytes."""
    text = _require_str(value, field)
    if "\x00" in text:
        raise bad_request(f"{field}: must not contain NUL characters")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise bad_request(f"{field}: not valid Unicode (a lone surrogate escape)") from None
    if size > limit:
        raise bad_request(f"{field}: longer than {limit} bytes")
    return text


def _str_list(value: object, field: str) -> list[str]:
    items = _require_list(value, field)
    if len(items) > MAX_ARGS:
        raise bad_request(f"{field}: more than {MAX_ARGS} entries")
    for i, item in enumerate(items):
        text_value(item, f"{field}[{i}]")
    return items


def _str_map(value: object, field: str) -> dict[str, str]:
    mapping = _require_dict(value, field)
    if len(mapping) > MAX_ENV:
        raise bad_request(f"{field}: more than {MAX_ENV} entries")
    for key, item in mapping.items():
        if not ENV_NAME.match(key) or len(text_value(key, f"{field} name", MAX_NAME_BYTES)) == 0:
            raise bad_request(f"{field}: invalid name {key!r} (1 to {MAX_NAME_BYTES} bytes, no '=' or NUL)")
        if not isinstance(item, str):
            raise bad_request(f"{field}.{key}: expected a string value, got {type(item).__name__}")
        text_value(item, f"{field}.{key}")
    return mapping


def mount_path(value: object, field: str) -> str:
    """A volume's mount point: absolute, normalised (no '..', '.', '//'), and not over a system directory."""
    path = text_value(value, field, 4096)
    parts = path.split("/")
    if not path.startswith("/") or path.rstrip("/") == "" or any(p in (".", "..") for p in parts):
        raise bad_request(f"{field}: must be an absolute path other than / without '.' or '..' (got {path!r})")
    normal = "/" + "/".join(p for p in parts if p)
    if normal in SYSTEM_PATHS or normal.startswith(("/proc/", "/sys/", "/dev/")):
        raise bad_request(f"{field}: {normal} is a system directory; mount volumes elsewhere (e.g. /data)")
    return normal


def parse_autostop(value: object, field: str = "autostop") -> str:
    """Fly accepts "off"|"stop"|"suspend"|true|false; returns the canonical string."""
    if value is True:
        return "stop"
    if value is False or value is None:
        return "off"
    if isinstance(value, str) and value in AUTOSTOP_VALUES:
        return value
    raise bad_request(f"{field}: expected one of \"off\", \"stop\", \"suspend\", true, false; got {value!r}")


def emit_autostop(canonical: str) -> bool | str:
    """Fly's wire form: booleans for off/stop, the string for suspend (fly-go MachineAutostop.MarshalJSON)."""
    return {"off": False, "stop": True}.get(canonical, canonical)


def _check_duration(block: JSON, key: str, field: str) -> None:
    if key in block and block[key] is not None:
        duration_seconds(block[key], field=f"{field}.{key}")


def _validate_check(check: JSON, field: str, *, port_required: bool) -> None:
    kind = check.get("type", "tcp" if "path" not in check else "http")
    if kind not in ("tcp", "http"):
        raise bad_request(f"{field}.type: expected \"tcp\" or \"http\", got {kind!r}")
    if "port" in check and check["port"] is not None:
        _require_int(check["port"], f"{field}.port", 1, 65535)
    elif port_required:
        raise bad_request(f"{field}.port: a check needs a port")
    for key in ("interval", "timeout", "grace_period"):
        _check_duration(check, key, field)
    if "path" in check and check["path"] is not None:
        _require_str(check["path"], f"{field}.path")
    if "method" in check and check["method"] is not None:
        _require_str(check["method"], f"{field}.method")


def _validate_service(service: JSON, field: str) -> None:
    protocol = service.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        raise bad_request(f"{field}.protocol: expected \"tcp\" or \"udp\", got {protocol!r}")
    if "internal_port" not in service:
        raise bad_request(f"{field}.internal_port: required")
    _require_int(service["internal_port"], f"{field}.internal_port", 1, 65535)
    for i, port in enumerate(_require_list(service.get("ports") or [], f"{field}.ports")):
        pf = f"{field}.ports[{i}]"
        _require_dict(port, pf)
        for key in ("port", "start_port", "end_port"):
            if key in port and port[key] is not None:
                _require_int(port[key], f"{pf}.{key}", 0, 65535)
        if "handlers" in port and port["handlers"] is not None:
            _str_list(port["handlers"], f"{pf}.handlers")
        if port.get("start_port") is not None and port.get("end_port") is not None \
                and port["start_port"] > port["end_port"]:
            raise bad_request(f"{pf}: start_port must not be above end_port")
        options = port.get("http_options")
        if options is not None and _require_dict(options, f"{pf}.http_options").get(MAX_BODY_KEY) is not None:
            options[MAX_BODY_KEY] = size_bytes(options[MAX_BODY_KEY], field=f"{pf}.http_options.{MAX_BODY_KEY}")
    if "autostop" in service:
        service["autostop"] = emit_autostop(parse_autostop(service["autostop"], f"{field}.autostop"))
    if "autostart" in service and service["autostart"] is not None and not isinstance(service["autostart"], bool):
        raise bad_request(f"{field}.autostart: expected true or false")
    if service.get("min_machines_running") is not None:
        _require_int(service["min_machines_running"], f"{field}.min_machines_running", 0)
    if service.get("concurrency") is not None:
        conc = _require_dict(service["concurrency"], f"{field}.concurrency")
        kind = conc.get("type", "connections")
        if kind not in ("connections", "requests"):
            raise bad_request(f"{field}.concurrency.type: expected \"connections\" or \"requests\", got {kind!r}")
        for key in ("soft_limit", "hard_limit"):
            if conc.get(key) is not None:
                _require_int(conc[key], f"{field}.concurrency.{key}", 0)
        balancing = conc.get("balancing")
        if balancing is not None and balancing not in ("latency", "random"):
            raise bad_request(f"{field}.concurrency.balancing: expected \"latency\" (Roost's default) or "
                              f"\"random\" (Fly's rule), got {balancing!r}")
        soft, hard = conc.get("soft_limit"), conc.get("hard_limit")
        if soft and hard and soft > hard:
            raise bad_request(f"{field}.concurrency: soft_limit ({soft}) must not be above hard_limit ({hard})")
    for i, check in enumerate(_require_list(service.get("checks") or [], f"{field}.checks")):
        _validate_check(_require_dict(check, f"{field}.checks[{i}]"), f"{field}.checks[{i}]", port_required=False)


def normalize(raw: object) -> JSON:
    """Validate a machine config and return Fly's normalised copy (guest filled in, autostop in wire form)."""
    config = copy.deepcopy(_require_dict(raw, "config"))
    image = config.get("image")
    if not isinstance(image, str) or not text_value(image, "config.image", 1024).strip():
        raise bad_request("config.image: required (the name of an image pushed with 'roost image push')")
    config["image"] = image.strip()

    if config.get("env") is not None:
        _str_map(config["env"], "config.env")
    if config.get("metadata") is not None:
        _str_map(config["metadata"], "config.metadata")

    guest = config.get("guest")
    size = config.get("size")
    if size is not None and (not isinstance(size, str) or size not in GUEST_PRESETS):
        raise bad_request(f"config.size: unknown size {size!r}; known: {', '.join(GUEST_PRESETS)}")
    if guest is None:
        kind, cpus, mem = GUEST_PRESETS[size or "shared-cpu-1x"]
        config["guest"] = {"cpu_kind": kind, "cpus": cpus, "memory_mb": mem}
    else:
        guest = _require_dict(guest, "config.guest")
        kind = guest.get("cpu_kind") or "shared"
        if kind not in ("shared", "performance"):
            raise bad_request(f"config.guest.cpu_kind: expected \"shared\" or \"performance\", got {kind!r}")
        guest["cpu_kind"] = kind
        guest["cpus"] = _require_int(guest.get("cpus", 1), "config.guest.cpus", 1, 64)
        guest["memory_mb"] = _require_int(guest.get("memory_mb", 256), "config.guest.memory_mb", 64, 262144)

    if config.get("init") is not None:
        init = _require_dict(config["init"], "config.init")
        for key in ("exec", "entrypoint", "cmd"):
            if init.get(key) is not None:
                _str_list(init[key], f"config.init.{key}")

    if config.get("services") is not None:
        for i, service in enumerate(_require_list(config["services"], "config.services")):
            _validate_service(_require_dict(service, f"config.services[{i}]"), f"config.services[{i}]")

    if config.get("checks") is not None:
        for name, check in _require_dict(config["checks"], "config.checks").items():
            _validate_check(_require_dict(check, f"config.checks.{name}"), f"config.checks.{name}",
                            port_required=True)

    if config.get("restart") is not None:
        restart = _require_dict(config["restart"], "config.restart")
        policy = restart.get("policy", "on-failure")
        if policy not in RESTART_POLICIES:
            raise bad_request(f"config.restart.policy: expected one of {', '.join(RESTART_POLICIES)}; got {policy!r}")
        if restart.get("max_retries") is not None:
            _require_int(restart["max_retries"], "config.restart.max_retries", 0)

    if config.get("stop_config") is not None:
        stop = _require_dict(config["stop_config"], "config.stop_config")
        if stop.get("signal") is not None:
            parse_signal(stop["signal"], field="config.stop_config.signal")
        if stop.get("timeout") is not None:
            seconds = duration_seconds(stop["timeout"], field="config.stop_config.timeout")
            if seconds > MAX_KILL_TIMEOUT:
                raise bad_request(f"config.stop_config.timeout: at most {MAX_KILL_TIMEOUT:g}s")

    if config.get("mounts") is not None:
        mounts = _require_list(config["mounts"], "config.mounts")
        if len(mounts) > 1:
            raise bad_request("config.mounts: a machine can mount at most one volume")
        for i, mount in enumerate(mounts):
            mf = f"config.mounts[{i}]"
            _require_dict(mount, mf)
            mount["path"] = mount_path(mount.get("path"), f"{mf}.path")
            if mount.get("volume") is not None:
                _require_str(mount["volume"], f"{mf}.volume")

    if config.get("standbys") is not None:
        for i, sid in enumerate(_str_list(config["standbys"], "config.standbys")):
            if not sid:
                raise bad_request(f"config.standbys[{i}]: empty machine id")
        if not config["standbys"]:
            del config["standbys"]
    _sync_standby_env(config)
    if config.get("auto_destroy") is not None and not isinstance(config["auto_destroy"], bool):
        raise bad_request("config.auto_destroy: expected true or false")
    if config.get("processes") is not None:
        _require_list(config["processes"], "config.processes")
    return config


# ---- typed accessors over a normalised config (used by the agent, the proxy and the scheduler) ----


@dataclass(frozen=True)
class Guest:
    cpu_kind: str
    cpus: int
    memory_mb: int


def guest(config: JSON) -> Guest:
    g = config.get("guest") or {}
    return Guest(g.get("cpu_kind", "shared"), int(g.get("cpus", 1)), int(g.get("memory_mb", 256)))


def stop_signal(config: JSON) -> int:
    stop = config.get("stop_config") or {}
    return parse_signal(stop.get("signal") or DEFAULT_KILL_SIGNAL)


def stop_timeout(config: JSON) -> float:
    stop = config.get("stop_config") or {}
    if stop.get("timeout") is None:
        return DEFAULT_KILL_TIMEOUT
    return min(duration_seconds(stop["timeout"], field="stop_config.timeout"), MAX_KILL_TIMEOUT)


@dataclass(frozen=True)
class RestartPolicy:
    policy: str
    max_retries: int


def restart_policy(config: JSON) -> RestartPolicy:
    restart = config.get("restart") or {}
    policy = restart.get("policy") or "on-failure"
    retries = restart.get("max_retries")
    return RestartPolicy(policy, DEFAULT_ON_FAILURE_RETRIES if retries is None else int(retries))


def process_group(config: JSON) -> str:
    return str((config.get("metadata") or {}).get("fly_process_group", ""))


def standbys(config: JSON) -> list[str]:
    return list(config.get("standbys") or [])


STANDBY_ENV = "FLY_STANDBY_FOR"


def _sync_standby_env(config: JSON) -> None:
    """A standby's env names what it stands by for (flyctl sets FLY_STANDBY_FOR wherever it sets standbys),
    however the standby was made; a machine that is no longer a standby loses it."""
    watched = standbys(config)
    env = config.get("env")
    if watched:
        config["env"] = {**(env or {}), STANDBY_ENV: ",".join(watched)}
    elif env and STANDBY_ENV in env:
        config["env"] = {k: v for k, v in env.items() if k != STANDBY_ENV}


def as_standby(config: JSON, watched: list[str]) -> JSON:
    """A copy of `config` made a standby for `watched` (an empty list makes it an ordinary machine again).

    A standby is never routed to, so it carries no services, even when the machine it watches has them
    (Fly: "you can create a standby Machine for any Machine, including one with services")."""
    out = copy.deepcopy(config)
    if watched:
        out["standbys"] = list(watched)
        out.pop("services", None)
    else:
        out.pop("standbys", None)
    _sync_standby_env(out)
    return out


def internal_ports(config: JSON) -> list[int]:
    """Every guest port the host must map: service internal ports, check ports and the metrics port, in order,
    unique."""
    ports: list[int] = []
    for service in config.get("services") or []:
        port = service.get("internal_port")
        if isinstance(port, int) and port not in ports:
            ports.append(port)
    for check in (config.get("checks") or {}).values():
        port = check.get("port")
        if isinstance(port, int) and port not in ports:
            ports.append(port)
    metrics = config.get("metrics")
    port = metrics.get("port") if isinstance(metrics, dict) else None
    if isinstance(port, int) and port not in ports:
        ports.append(port)  # the agent scrapes it (fly.toml's [metrics])
    return ports


def volume_mount(config: JSON) -> tuple[str, str] | None:
    """(volume id, guest path) of the machine's one mount, if any."""
    for mount in config.get("mounts") or []:
        if mount.get("volume"):
            return str(mount["volume"]), str(mount["path"])
    return None
