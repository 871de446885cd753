"""Reading OCI and Docker image manifests and indexes (what `skopeo inspect --raw` returns): which manifest of an
index is the one for this platform, and what a manifest says about an image's config and size. Pure (issue 16)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
PLATFORM = ("linux", "amd64")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class Manifest:
    digest: str
    config_digest: str
    layers: tuple[tuple[str, int], ...]  # (digest, compressed size)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.layers)


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _load(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"the registry's manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("the registry's manifest is not a JSON object")
    return doc


def media_type(doc: dict[str, Any]) -> str:
    kind = doc.get("mediaType")
    if isinstance(kind, str) and kind:
        return kind
    # OCI allows the media type to be left out: an index has "manifests", an image manifest has "config".
    return "application/vnd.oci.image.index.v1+json" if "manifests" in doc else \
        "application/vnd.oci.image.manifest.v1+json"


def is_index(raw: bytes) -> bool:
    return media_type(_load(raw)) in INDEX_TYPES


def platform_digest(raw: bytes, platform: tuple[str, str] = PLATFORM) -> str:
    """The digest of the index's manifest for `platform`; ManifestError naming what the image offers if none."""
    doc = _load(raw)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError("the image index lists no manifests")
    offered = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        p = entry.get("platform") or {}
        os_, arch = p.get("os", ""), p.get("architecture", "")
        offered.append(f"{os_}/{arch}" + (f"/{p['variant']}" if p.get("variant") else ""))
        if (os_, arch) == platform and isinstance(entry.get("digest"), str):
            return str(entry["digest"])
    raise ManifestError(f"the image has no {platform[0]}/{platform[1]} variant (it has: "
                        f"{', '.join(o for o in offered if o != '/') or 'none'})")


def manifest(raw: bytes) -> Manifest:
    doc = _load(raw)
    kind = media_type(doc)
    if kind not in MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest type {kind!r} (OCI or Docker v2 schema 2 images only)")
    config = doc.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ManifestError("the manifest has no config")
    layers = []
    for layer in doc.get("layers") or []:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise ManifestError("the manifest has a malformed layer")
        size = layer.get("size", 0)
        layers.append((str(layer["digest"]), size if isinstance(size, int) and size >= 0 else 0))
    return Manifest(digest_of(raw), str(config["digest"]), tuple(layers))


def check_platform(config_raw: bytes, platform: tuple[str, str] = PLATFORM) -> dict[str, Any]:
    """The image config's `config` object (Entrypoint, Cmd, Env...), once its platform is checked."""
    doc = _load(config_raw)
    os_, arch = doc.get("os", ""), doc.get("architecture", "")
    if (os_ or arch) and (os_, arch) != platform:
        raise ManifestError(f"the image is for {os_}/{arch}; this fleet runs {platform[0]}/{platform[1]}")
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ManifestError("the image config's 'config' is not an object")
    return config
