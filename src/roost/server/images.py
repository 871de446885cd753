"""The image store: content-addressed bundles (gzip'd tarballs of a directory) that agents pull.

A push streams the bundle to a temporary file while hashing it, then renames it to its digest, so a
crash never leaves a half-written blob under a real name. Names (repository:tag, any registry-style
name) point at digests in the store; pushing the same name again moves the tag.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from roost.core.errors import bad_request
from roost.filestream import write_hashed

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs" / "sha256"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise bad_request(f"invalid digest {digest!r}")
        return self.root / digest.split(":", 1)[1]

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        """Store a bundle from a stream; returns (digest, size). Rejects anything that is not a tar.gz."""
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="push-")
        try:
            with os.fdopen(fd, "wb") as out:
                hexdigest, size = await write_hashed(
                    chunks, out, MAX_BUNDLE_BYTES, f"image bundle larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MB")
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise bad_request("empty image bundle: send a gzip'd tar of the image directory")
            _check_bundle(Path(tmp_name))
            digest = "sha256:" + hexdigest
            os.replace(tmp_name, self.path(digest))
            return digest, size
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()


def _check_bundle(path: Path) -> None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name
                if name.startswith("/") or ".." in Path(name).parts:
                    raise bad_request(f"image bundle has an unsafe path: {name!r}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise bad_request(f"image bundle is not a gzip'd tar: {exc}") from None
