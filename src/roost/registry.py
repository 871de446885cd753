"""Talking to OCI registries, through `skopeo` (the ecosystem's tool, not a client of our own): resolve a
reference to the digest that will run (the linux/amd64 manifest of an index), read its config, copy images.

Registries on loopback are reached over plain HTTP, as Docker does for `localhost`; any other registry over
HTTPS unless the operator lists it as insecure. Credentials come from an auth file in the usual
`~/.docker/config.json` format (`auths`)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.core import oci_manifest
from roost.core.image_ref import ImageRef, ImageRefError, parse
from roost.core.oci_manifest import ManifestError

INSPECT_TIMEOUT = 60.0
COPY_TIMEOUT = 900.0
MAX_OUTPUT = 4 * 1024 * 1024  # a manifest or config larger than this is refused


class RegistryError(Exception):
    """The registry could not give us the image; the message says which of the usual reasons it is."""


@dataclass(frozen=True)
class RegistryAccess:
    authfile: Path | None = None
    insecure: frozenset[str] = frozenset()  # registries (host:port) reached over plain HTTP

    def plain_http(self, registry: str) -> bool:
        host = registry.rsplit(":", 1)[0].strip("[]") if not registry.startswith("[") else \
            registry[1:registry.index("]")]
        if host == "localhost" or registry in self.insecure:
            return True
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host).is_loopback
        return False

    def flags(self, ref: ImageRef, side: str = "") -> list[str]:
        """skopeo's options for reaching `ref`'s registry (`side`: "src" or "dest" for copy, "" for inspect)."""
        prefix = f"--{side}-" if side else "--"
        out = [f"{prefix}tls-verify=false"] if self.plain_http(ref.registry) else []
        if self.authfile is not None:
            out.append(f"{prefix}authfile={self.authfile}")
        return out


@dataclass(frozen=True)
class Resolved:
    ref: ImageRef  # pinned to the digest that runs
    config: dict[str, Any] = field(default_factory=dict)  # the image config's `config` (Entrypoint, Cmd, ...)
    size: int = 0  # compressed bytes of its layers

    @property
    def digest(self) -> str:
        return self.ref.digest


def available() -> bool:
    return shutil.which("skopeo") is not None


async def skopeo(*args: str, timeout: float = INSPECT_TIMEOUT) -> bytes:
    """Run skopeo; its output, or a RegistryError with the reason in user terms."""
    if not available():
        raise RegistryError("skopeo is not installed on this host (Debian package skopeo; ./scripts/setup installs it)")
    proc = await asyncio.create_subprocess_exec("skopeo", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RegistryError(f"the registry did not answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RegistryError(explain(err.decode(errors="replace")))
    if len(out) > MAX_OUTPUT and args[0] == "inspect":
        raise RegistryError("the registry's answer is too large to be a manifest")
    return out


def explain(stderr: str) -> str:
    """skopeo's error, reduced to what happened."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "skopeo failed"
    low = text.lower()
    text = text.removeprefix('time="').split('msg="', 1)[-1].rstrip('"').replace('\\"', '"')
    if text.startswith("Error parsing image name") and '": ' in text:
        text = text.split('": ', 1)[1]
    if "manifest unknown" in low or ("not found" in low and "manifest" in low):
        return f"no such image or tag in the registry ({text})"
    if "name unknown" in low or "repository name not known" in low:
        return f"no such repository in the registry ({text})"
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return f"the registry refused access: give credentials in the registry auth file ({text})"
    if "connection refused" in low or "no such host" in low or "i/o timeout" in low or "network is unreachable" in low:
        return f"the registry is unreachable ({text})"
    if "http response to https client" in low:
        return f"the registry speaks plain HTTP: list it as an insecure registry ({text})"
    if "digest" in low and ("mismatch" in low or "did not match" in low):
        return f"an image layer is corrupt: its content does not match its digest ({text})"
    return text


async def resolve(reference: str, access: RegistryAccess = RegistryAccess()) -> Resolved:
    """The image `reference` names, pinned to the linux/amd64 manifest's digest, with its config."""
    try:
        ref = parse(reference)
    except ImageRefError as exc:
        raise RegistryError(str(exc)) from None
    raw = await skopeo("inspect", "--raw", *access.flags(ref), _by_digest(ref) if ref.digest else ref.transport)
    try:
        if oci_manifest.is_index(raw):
            ref = ref.pinned(oci_manifest.platform_digest(raw))
            raw = await skopeo("inspect", "--raw", *access.flags(ref), _by_digest(ref))
        found = oci_manifest.manifest(raw)
        if ref.digest and ref.digest != found.digest:
            raise RegistryError(f"the registry answered {found.digest} for {ref}")
        ref = ref.pinned(found.digest)
        config = oci_manifest.check_platform(
            await skopeo("inspect", "--config", "--raw", *access.flags(ref), _by_digest(ref)))
    except (ManifestError, ImageRefError) as exc:
        raise RegistryError(f"image {reference}: {exc}") from None
    return Resolved(ref, config, found.size)


def _by_digest(ref: ImageRef) -> str:
    return f"docker://{ref.registry}/{ref.repository}@{ref.digest}"


async def copy(source: str, destination: str, *flags: str, timeout: float = COPY_TIMEOUT) -> None:
    await skopeo("copy", "--quiet", *flags, source, destination, timeout=timeout)
