"""OCI image references, read as every container tool reads them (the distribution project's reference
grammar): `nginx:alpine` is `docker.io/library/nginx:alpine`, a first component with a `.` or a `:` (or
`localhost`) names a registry, a reference without tag or digest means `:latest`, and a digest pins the
image whatever its tag says. Pure: no registry is asked anything here (issue 16)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
                     r"(?::[0-9]{1,5})?|\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
MAX_NAME = 255


class ImageRefError(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "docker.io", "127.0.0.1:5000", "ghcr.io"
    repository: str  # "library/nginx", "team/app"
    tag: str = ""  # "" with a digest only
    digest: str = ""  # "sha256:..." when pinned

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        """As people write it: Docker Hub's `library/` and `docker.io/` left out."""
        hub = self.registry == DOCKER_HUB
        name = self.repository.removeprefix("library/") if hub else f"{self.registry}/{self.repository}"
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def pinned(self, digest: str) -> ImageRef:
        """The same image at `digest` (what a machine runs once its reference is resolved)."""
        if not _DIGEST.fullmatch(digest):
            raise ImageRefError(f"not an image digest: {digest!r} (sha256:<64 hex>)")
        return replace(self, digest=digest)

    @property
    def transport(self) -> str:
        """For skopeo: `docker://REGISTRY/REPO[:TAG][@DIGEST]`."""
        return f"docker://{self}"


def parse(reference: str) -> ImageRef:
    """An image reference, normalised; ImageRefError says what is wrong with a bad one."""
    if not isinstance(reference, str) or not reference or reference != reference.strip():
        raise ImageRefError(f"invalid image reference {reference!r}: empty or surrounded by spaces")
    rest, digest = reference, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ImageRefError(f"invalid image reference {reference!r}: the digest must be sha256:<64 hex>")
    tag = ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise ImageRefError(f"invalid image reference {reference!r}: bad tag {tag!r} "
                                "(letters, digits, '_', '.', '-'; at most 128)")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise ImageRefError(f"invalid image reference {reference!r}: bad registry {first!r}")
        registry, path = first.lower() if first.lower() in _HUB_ALIASES else first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    components = path.split("/")
    if not path or not all(_COMPONENT.fullmatch(c) for c in components):
        raise ImageRefError(f"invalid image reference {reference!r}: repository names are lowercase letters, "
                            "digits and single separators ('.', '_', '__', '-'), joined by '/'")
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise ImageRefError(f"invalid image reference {reference!r}: the name is longer than {MAX_NAME} characters")
    if not tag and not digest:
        tag = "latest"
    return ImageRef(registry, path, tag, digest)
