"""What a machine's host agent is told: the typed spec (image, environment with secrets and Fly's
variables, ports, volume, stop signal) built from the machine's record. One builder, used by every verb
that starts a machine and by staging."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roost import registry
from roost.core import machine_config as mc
from roost.core.agent_spec import AgentSpec, ImageSpec, VolumeSpec
from roost.core.errors import unprocessable
from roost.core.image_ref import ImageRefError, parse
from roost.core.model import Image, Machine, canonical_image_ref
from roost.registry import RegistryAccess, RegistryError
from roost.server.state import ClusterState


@dataclass(frozen=True)
class ChosenImage:
    """What a machine's `config.image` names, resolved when the machine is created or updated."""

    source: str  # "" (a bundle pushed to the control plane) or "registry"
    image_ref: dict[str, Any] = field(default_factory=dict)  # Fly's image_ref, with the digest that runs


class SpecBuilder:
    def __init__(self, state: ClusterState, secrets: Callable[[str], dict[str, str]] = lambda _app: {},
                 access: RegistryAccess | None = None, allowed_registries: tuple[str, ...] = ()) -> None:
        self.state = state
        self.secrets = secrets
        self.access = access  # None: pushed bundles only, no registry is ever asked (the cores' tests)
        self.allowed_registries = allowed_registries  # fnmatch patterns of registries machines may pull from

    async def choose(self, name: str) -> ChosenImage:
        """A bundle pushed under `name`, else the registry image `name` names, pinned to its digest now."""
        pushed = self.state.images.get(canonical_image_ref(name))
        if pushed is not None:  # a bundle, or a name given to a registry image at its digest
            return ChosenImage(pushed.source, pushed.image_ref())
        if self.access is None:
            raise unprocessable(f"image {name!r} not found: push it first with 'roost image push DIR --name {name}' "
                                "(see 'roost image list')")
        try:
            ref = parse(name)
        except ImageRefError as exc:
            raise unprocessable(f"image {name!r} not found: {exc}") from None
        if self.allowed_registries and not any(fnmatch.fnmatch(ref.registry, p) for p in self.allowed_registries):
            raise unprocessable(
                f"image {name!r} not found: it is not a pushed image, and this fleet pulls only from "
                f"{', '.join(self.allowed_registries)}; push it with 'roost image push DIR --name {name}'")
        pinned = (await self.resolve(name)).ref
        return ChosenImage("registry", {"registry": pinned.registry, "repository": pinned.repository,
                                        "tag": pinned.tag, "digest": pinned.digest, "labels": {}})

    def image_for(self, name: str) -> Image:
        image = self.state.images.get(canonical_image_ref(name))
        if image is None:
            raise unprocessable(
                f"image {name!r} not found: push it first with 'roost image push DIR --name {name}' "
                "(see 'roost image list')"
            )
        return image

    async def resolve(self, name: str) -> registry.Resolved:
        """A registry image, pinned to the digest that runs (a 422 that says why when it cannot be)."""
        if self.access is None:
            raise unprocessable(f"image {name!r}: this server does not use registries")
        try:
            ref = parse(name)
        except ImageRefError as exc:
            raise unprocessable(f"image {name!r}: {exc}") from None
        if self.allowed_registries and not any(fnmatch.fnmatch(ref.registry, p) for p in self.allowed_registries):
            raise unprocessable(f"image {name!r}: this fleet pulls only from {', '.join(self.allowed_registries)}")
        try:
            return await registry.resolve(name, self.access)
        except RegistryError as exc:
            raise unprocessable(f"image {name!r}: {exc}") from None

    def image_spec(self, m: Machine) -> ImageSpec:
        if m.image_source == "registry":
            ref = m.image_ref
            name = f"{ref['registry']}/{ref['repository']}" + (f":{ref['tag']}" if ref.get("tag") else "")
            return ImageSpec(name, str(ref["digest"]), (), "registry")
        # A bundle is found by its name at each start (a push under the same name replaces it).
        image = self.image_for(m.config["image"])
        return ImageSpec(image.ref, image.digest, tuple(image.cmd))

    def machine_env(self, m: Machine, image: ImageSpec) -> dict[str, str]:
        app = self.state.apps.get(m.app)
        config_env = dict(m.config.get("env") or {})
        primary = (app.primary_region if app else "") or config_env.get("PRIMARY_REGION") or m.region
        env = {**config_env, **self.secrets(m.app)}  # secrets win over [env]
        env.update({
            "FLY_APP_NAME": m.app,
            "FLY_MACHINE_ID": m.id,
            "FLY_ALLOC_ID": m.id,
            "FLY_REGION": m.region,
            "FLY_PROCESS_GROUP": mc.process_group(m.config) or "app",
            "FLY_IMAGE_REF": f"{image.ref}@{image.digest}",
            "FLY_MACHINE_VERSION": m.instance_id,
            "FLY_PRIVATE_IP": m.private_ip,
            "FLY_VM_MEMORY_MB": str(mc.guest(m.config).memory_mb),
            "PRIMARY_REGION": primary,
            # Fencing: apps reject writes from a holder with an older token than one they have seen.
            "ROOST_FENCING_TOKEN": str(m.fencing.get("token", 1)),
        })
        for guest_port, host_port in m.ports.items():
            env[f"ROOST_PORT_{guest_port}"] = str(host_port)
        first = next(iter(mc.internal_ports(m.config)), None)
        if first is not None and str(first) in m.ports:
            env["PORT"] = str(m.ports[str(first)])
        return env

    def agent_spec(self, m: Machine) -> AgentSpec:
        image = self.image_spec(m)
        mount = mc.volume_mount(m.config)
        volume = self.state.volumes.get(mount[0]) if mount else None
        return AgentSpec(
            id=m.id, app=m.app, instance_id=m.instance_id, region=m.region, private_ip=m.private_ip,
            ports=dict(m.ports), config=m.config, image=image,
            env=self.machine_env(m, image),
            volume=VolumeSpec(mount[0], mount[1], volume.size_gb if volume else 0) if mount else None,
            stop_signal=mc.stop_signal(m.config), stop_timeout=mc.stop_timeout(m.config),
        )
