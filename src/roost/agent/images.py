"""The agent's image cache: pull a bundle by digest on first use, verify it, unpack it once; images no machine
uses any more are removed. What an image may unpack to is bounded (a small bundle can expand a thousandfold)
and must leave the host's disk some room."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from roost.keyed_locks import KeyedLocks
from roost.tls import Trust

DOWNLOAD_TIMEOUT = 120.0
MAX_UNPACKED_BYTES = 4 * 1024 ** 3  # what one image may unpack to
MAX_ENTRIES = 200_000  # files, directories and links in one image
KEEP_FREE_BYTES = 1024 ** 3  # the disk room an unpacked image must leave


class ImageError(Exception):
    pass


class Held:
    """Digests in use by starts that have not recorded them yet: an image cache collects none of them."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}

    def __contains__(self, digest: object) -> bool:
        return digest in self._count

    @contextlib.contextmanager
    def hold(self, digest: str) -> Iterator[None]:
        self._count[digest] = self._count.get(digest, 0) + 1
        try:
            yield
        finally:
            self._count[digest] -= 1
            if not self._count[digest]:
                del self._count[digest]


class ImageCache:
    def __init__(self, root: Path, server_url: str, token: str, local_address: str | None = None,
                 max_unpacked: int = MAX_UNPACKED_BYTES, trust: Trust | None = None) -> None:
        self.local_address = local_address
        self.trust = trust or Trust()
        self.max_unpacked = max_unpacked
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.server_url = server_url.rstrip("/")
        self.token = token
        self._locks = KeyedLocks()  # one download per digest
        self._held = Held()  # digests starts are using

    def path(self, digest: str) -> Path:
        return self.root / digest.replace(":", "-")

    def present(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    async def ensure(self, digest: str) -> Path:
        target = self.path(digest)
        if target.is_dir():
            return target
        async with self._locks(digest):
            if target.is_dir():
                return target
            fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix="pull-")
            os.close(fd)
            try:
                await self._download(digest, Path(tmp_name))
                await asyncio.to_thread(self._unpack, Path(tmp_name), target, self.max_unpacked)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
        return target

    async def _download(self, digest: str, dest: Path) -> None:
        hasher = hashlib.sha256()
        url = f"{self.server_url}/v1/images/blobs/{digest}"
        try:
            transport = self.trust.async_transport(self.local_address)
            async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, trust_env=False, transport=transport) as client, \
                    client.stream("GET", url, headers={"Authorization": f"Bearer {self.token}"}) as response:
                if response.status_code != 200:
                    raise ImageError(f"pulling image {digest}: server answered {response.status_code}")
                with open(dest, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        hasher.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise ImageError(f"pulling image {digest}: {exc}") from exc
        if "sha256:" + hasher.hexdigest() != digest:
            raise ImageError(f"image {digest} failed verification: the downloaded bundle has another digest")

    def hold(self, digest: str) -> contextlib.AbstractContextManager[None]:
        """Keep `digest` from being collected while a start uses it (its record may not exist yet)."""
        return self._held.hold(digest)

    def collect(self, in_use: set[str]) -> list[str]:
        """Remove the unpacked images no machine of this host uses (by digest); returns their digests."""
        removed = []
        for entry in self.root.iterdir():
            digest = entry.name.replace("-", ":", 1)
            if entry.is_dir() and entry.name.startswith("sha256-") and digest not in in_use \
                    and digest not in self._held:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(digest)
        return removed

    @staticmethod
    def _unpack(bundle: Path, target: Path, limit: int = MAX_UNPACKED_BYTES) -> None:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix="unpack-"))
        try:
            with tarfile.open(bundle, "r:gz") as tar:
                members = tar.getmembers()  # reads the index only: nothing is written yet
                size = sum(m.size for m in members if m.isfile())
                if len(members) > MAX_ENTRIES:
                    raise ImageError(f"unpacking image: {len(members)} entries, over the limit of {MAX_ENTRIES}")
                if size > limit:
                    raise ImageError(f"unpacking image: it would take {size} bytes, over this host's limit of "
                                     f"{limit} bytes per image")
                free = shutil.disk_usage(target.parent).free
                if free - size < KEEP_FREE_BYTES:
                    raise ImageError(f"unpacking image: {size} bytes would leave less than {KEEP_FREE_BYTES} bytes "
                                     f"free on this host's disk ({free} free)")
                tar.extractall(staging, members=members, filter="data")
            os.replace(staging, target)
        except ImageError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise ImageError(f"unpacking image: {exc}") from exc
