"""What a host agent is told to run: one typed spec shared by the control plane (which builds it) and the
agent (which checks it again at its own door, since nothing on a host should trust a path, id or size it
did not check, and records it).

The machine config inside stays the normalized Machines API dict (read through `core.machine_config`);
everything the agent acts on directly (ids, image, environment, volume, ports, signals) is a typed field.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from roost.core.errors import RoostError, bad_request
from roost.core.oci_spec import command

# Ids the agent turns into file and cgroup names: no dots (so never ".."), no slashes, bounded.
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
ENV_KEY_RE = re.compile(r"^[^=\x00]+$")
MAX_ENV = 1000
MAX_ENV_BYTES = 1 << 20
MAX_STOP_TIMEOUT = 24 * 3600.0


IMAGE_SOURCES = ("bundle", "registry")


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    digest: str
    cmd: tuple[str, ...] = ()
    source: str = "bundle"  # "bundle": pushed to the control plane; "registry": an OCI image the host pulls


@dataclass(frozen=True)
class VolumeSpec:
    id: str
    path: str  # where the machine sees it, absolute and normalized
    size_gb: int = 0  # its filesystem's size; 0: a plain directory (a server from before sizes were enforced)


@dataclass(frozen=True)
class AgentSpec:
    id: str
    app: str
    instance_id: str
    image: ImageSpec
    config: dict[str, Any] = field(default_factory=dict)  # the normalized machine config
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # guest port -> host port
    region: str = ""
    private_ip: str = ""
    volume: VolumeSpec | None = None
    stop_signal: int = 2
    stop_timeout: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "app": self.app, "instance_id": self.instance_id, "region": self.region,
            "private_ip": self.private_ip, "ports": dict(self.ports), "config": self.config,
            "image": {"ref": self.image.ref, "digest": self.image.digest, "cmd": list(self.image.cmd),
                      "source": self.image.source},
            "env": dict(self.env),
            "volume": {"id": self.volume.id, "path": self.volume.path, "size_gb": self.volume.size_gb}
            if self.volume else None,
            "stop_signal": self.stop_signal, "stop_timeout": self.stop_timeout,
        }

    @classmethod
    def from_json(cls, obj: Any) -> AgentSpec:
        """Parse and check a spec; a bad one raises a 400 naming the field."""
        if not isinstance(obj, dict):
            raise bad_request("spec: expected a JSON object")
        image = obj.get("image")
        if not isinstance(image, dict):
            raise bad_request("spec.image: expected {\"ref\", \"digest\", \"cmd\"}")
        digest = _text(image.get("digest"), "spec.image.digest")
        if not DIGEST_RE.match(digest):
            raise bad_request(f"spec.image.digest: {digest!r} is not a sha256 digest")
        cmd = image.get("cmd")
        cmd = [] if cmd is None else cmd
        if not isinstance(cmd, list) or not all(isinstance(c, str) and "\x00" not in c for c in cmd):
            raise bad_request("spec.image.cmd: expected a list of strings")
        source = image.get("source", "bundle")
        if source not in IMAGE_SOURCES:
            raise bad_request(f"spec.image.source: expected one of {', '.join(IMAGE_SOURCES)}")
        config = obj.get("config")
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise bad_request("spec.config: expected an object")
        return cls(
            id=safe_id(obj.get("id"), "spec.id"),
            app=_text(obj.get("app"), "spec.app"),
            instance_id=_text(obj.get("instance_id"), "spec.instance_id"),
            image=ImageSpec(_text(image.get("ref"), "spec.image.ref", empty=source == "bundle"), digest, tuple(cmd),
                            source),
            config=config,
            env=_env(obj.get("env")),
            ports=_ports(obj.get("ports")),
            region=_text(obj.get("region"), "spec.region", empty=True),
            private_ip=_text(obj.get("private_ip"), "spec.private_ip", empty=True),
            volume=_volume(obj.get("volume")),
            stop_signal=_int(obj.get("stop_signal", 2), "spec.stop_signal", 1, 64),
            stop_timeout=_number(obj.get("stop_timeout", 5.0), "spec.stop_timeout", 0.0, MAX_STOP_TIMEOUT),
        )

    def argv(self, image_config: dict[str, Any] | None = None) -> list[str]:
        """What the machine runs: init.exec, else init.entrypoint (or the image's) + init.cmd (or the image's)."""
        init = self.config.get("init") or {}
        image = image_config if image_config is not None else {"Cmd": list(self.image.cmd)}
        return command(image, init.get("exec") or (), init.get("entrypoint") or (), init.get("cmd") or ())


def safe_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not SAFE_ID_RE.match(value):
        raise RoostError(400, f"{where}: invalid id {value!r} (letters, digits, '-' and '_', at most 64)")
    return value


def _text(value: Any, where: str, empty: bool = False) -> str:
    if value is None and empty:
        return ""
    if not isinstance(value, str) or (not value and not empty) or "\x00" in value:
        raise bad_request(f"{where}: expected a string")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{where}: expected a whole number from {low} to {high}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad_request(f"{where}: expected a number from {low:g} to {high:g}")
    return float(value)


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise bad_request(f"spec.env: expected an object of at most {MAX_ENV} strings")
    size = 0
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise bad_request(f"spec.env: invalid name {key!r} (no '=' or NUL)")
        if not isinstance(item, str) or "\x00" in item:
            raise bad_request(f"spec.env.{key}: expected a string without NUL")
        size += len(key) + len(item)
    if size > MAX_ENV_BYTES:
        raise bad_request(f"spec.env: {size} bytes, more than {MAX_ENV_BYTES}")
    return dict(value)


def _ports(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("spec.ports: expected {guest port: host port}")
    out = {}
    for guest, host in value.items():
        if not (isinstance(guest, str) and guest.isdigit() and 0 < int(guest) < 65536):
            raise bad_request(f"spec.ports: invalid guest port {guest!r}")
        out[guest] = _int(host, f"spec.ports.{guest}", 1, 65535)
    return out


def _volume(value: Any) -> VolumeSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("spec.volume: expected {\"id\", \"path\"}")
    path = _text(value.get("path"), "spec.volume.path")
    if not path.startswith("/") or posixpath.normpath(path) != path.rstrip("/") or ".." in path.split("/") \
            or path == "/":
        raise bad_request(f"spec.volume.path: {path!r} must be an absolute path without '..' (not '/')")
    size = value.get("size_gb") or 0
    return VolumeSpec(safe_id(value.get("id"), "spec.volume.id"), path, _int(size, "spec.volume.size_gb", 0, 500))
