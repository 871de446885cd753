"""The host's cache of OCI images: pulled with `skopeo` into one OCI layout (so layers are stored once, by
digest, and shared between images and machines), unpacked with `umoci` (whiteouts, hard links, owners and
modes as the image says) into one read-only root per image digest. The second start of an image pulls
nothing; an image no machine of this host uses is removed.

A pull or unpack that fails leaves nothing half-done behind: unpacking goes to a staging directory that is
renamed into place only when complete."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost import registry
from roost.agent.images import Held
from roost.core import oci_manifest
from roost.core.image_ref import ImageRefError, parse
from roost.core.oci_manifest import ManifestError
from roost.registry import RegistryAccess, RegistryError

UNPACK_TIMEOUT = 600.0
KEEP_FREE_BYTES = 1024 ** 3
EXPANSION = 3  # room an image's compressed layers are assumed to need once unpacked


def oci_tools_available() -> bool:
    return shutil.which("skopeo") is not None and shutil.which("umoci") is not None


class OciImageError(Exception):
    pass


@dataclass(frozen=True)
class OciImage:
    digest: str
    rootfs: Path  # read-only: machines mount it under their own writable layer
    config: dict[str, Any]  # the image config's `config` (Entrypoint, Cmd, Env, WorkingDir, User)


class OciImages:
    def __init__(self, root: Path, access: RegistryAccess = RegistryAccess(), keep_free: int = KEEP_FREE_BYTES) -> None:
        self.root = root
        self.layout = root / "layout"
        self.unpacked = root / "unpacked"
        self.unpacked.mkdir(parents=True, exist_ok=True)
        self.access = access
        self.keep_free = keep_free
        self._lock = asyncio.Lock()  # skopeo and umoci both rewrite the layout's index: one at a time
        self._held = Held()
        self.pulls = 0  # images pulled from a registry since start (the second start of one pulls nothing)

    @staticmethod
    def _name(digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise OciImageError(f"invalid image digest {digest!r}")
        return hexdigest

    def path(self, digest: str) -> Path:
        return self.unpacked / self._name(digest)

    def present(self, digest: str) -> bool:
        return (self.path(digest) / "rootfs").is_dir()

    async def ensure(self, reference: str, digest: str) -> OciImage:
        """The unpacked image `reference` pinned at `digest`: pulled and unpacked on first use."""
        target = self.path(digest)
        if not (target / "rootfs").is_dir():
            async with self._lock:
                if not (target / "rootfs").is_dir():
                    await self._pull_and_unpack(reference, digest, target)
        try:
            config = json.loads((target / "image.json").read_text())
        except (OSError, ValueError) as exc:
            raise OciImageError(f"image {digest}: its cached config is unreadable ({exc})") from exc
        return OciImage(digest, target / "rootfs", config if isinstance(config, dict) else {})

    async def _pull_and_unpack(self, reference: str, digest: str, target: Path) -> None:
        name = self._name(digest)
        try:
            ref = parse(reference).pinned(digest)
        except ImageRefError as exc:
            raise OciImageError(str(exc)) from exc
        source = f"docker://{ref.registry}/{ref.repository}@{digest}"
        tag = f"{self.layout}:{name}"
        try:
            if not self._tagged(name):
                self.layout.mkdir(parents=True, exist_ok=True)
                await registry.copy(source, f"oci:{tag}", *self.access.flags(ref, "src"),
                                    "--override-os", "linux", "--override-arch", "amd64")
                self.pulls += 1
            manifest_raw = self._blob(self._tagged(name) or "")
            found = oci_manifest.manifest(manifest_raw)
            config = oci_manifest.check_platform(self._blob(found.config_digest))
        except (RegistryError, ManifestError) as exc:
            await asyncio.to_thread(self._forget, name)
            raise OciImageError(f"pulling image {reference}: {exc}") from exc
        free = shutil.disk_usage(self.unpacked).free
        if free - EXPANSION * found.size < self.keep_free:
            await asyncio.to_thread(self._forget, name)
            raise OciImageError(f"image {reference} ({found.size} bytes compressed) does not fit on this host's disk "
                                f"({free} bytes free, {self.keep_free} kept free)")
        await asyncio.to_thread(self._unpack, name, config, target)

    def _tagged(self, name: str) -> str | None:
        """The manifest digest the layout holds under tag `name`, if it holds one."""
        try:
            index = json.loads((self.layout / "index.json").read_text())
        except (OSError, ValueError):
            return None
        for entry in index.get("manifests") or []:
            if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name:
                return str(entry.get("digest", ""))
        return None

    def _blob(self, digest: str) -> bytes:
        algorithm, _, hexdigest = digest.partition(":")
        path = self.layout / "blobs" / algorithm / hexdigest
        if "/" in hexdigest or not hexdigest or not path.is_file():
            raise ManifestError(f"blob {digest} is missing from the image cache")
        if path.stat().st_size > registry.MAX_OUTPUT:
            raise ManifestError(f"blob {digest} is too large to be a manifest or config")
        return path.read_bytes()

    def _unpack(self, name: str, config: dict[str, Any], target: Path) -> None:
        staging = Path(tempfile.mkdtemp(dir=self.unpacked, prefix=".unpack-"))
        bundle = staging / "bundle"
        try:
            done = subprocess.run(["umoci", "unpack", "--image", f"{self.layout}:{name}", str(bundle)],
                                  capture_output=True, text=True, timeout=UNPACK_TIMEOUT, check=False)
            if done.returncode != 0:
                raise OciImageError(f"unpacking image sha256:{name}: {done.stderr.strip()[-500:]}")
            (bundle / "image.json").write_text(json.dumps(config))
            for leftover in ("config.json", "umoci.json"):
                (bundle / leftover).unlink(missing_ok=True)
            for mtree in bundle.glob("*.mtree"):
                mtree.unlink()
            bundle.rename(target)
        except subprocess.TimeoutExpired as exc:
            raise OciImageError(f"unpacking image sha256:{name} took over {UNPACK_TIMEOUT:.0f} s") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _forget(self, name: str) -> None:
        """Drop a tag from the layout and the blobs nothing else uses (a failed or unused pull)."""
        if not (self.layout / "index.json").exists():
            return
        for argv in (["umoci", "rm", "--image", f"{self.layout}:{name}"],
                     ["umoci", "gc", "--layout", str(self.layout)]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, capture_output=True, timeout=UNPACK_TIMEOUT, check=False)

    def hold(self, digest: str) -> contextlib.AbstractContextManager[None]:
        """Keep `digest` from being collected while a start uses it."""
        return self._held.hold(digest)

    def collect(self, in_use: set[str]) -> list[str]:
        """Remove the images no machine of this host uses; returns their digests."""
        removed = []
        for entry in self.unpacked.iterdir():
            digest = f"sha256:{entry.name}"
            if entry.name.startswith("."):
                continue
            if digest not in in_use and digest not in self._held:
                shutil.rmtree(entry, ignore_errors=True)
                self._forget(entry.name)
                removed.append(digest)
        return removed
