"""The agent's image cache: pull a bundle by digest on first use, verify it, unpack it once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import httpx

from roost.keyed_locks import KeyedLocks

DOWNLOAD_TIMEOUT = 120.0


class ImageError(Exception):
    pass


class ImageCache:
    def __init__(self, root: Path, server_url: str, token: str, local_address: str | None = None) -> None:
        self.local_address = local_address
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.server_url = server_url.rstrip("/")
        self.token = token
        self._locks = KeyedLocks()  # one download per digest

    def path(self, digest: str) -> Path:
        return self.root / digest.replace(":", "-")

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
                await asyncio.to_thread(self._unpack, Path(tmp_name), target)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
        return target

    async def _download(self, digest: str, dest: Path) -> None:
        hasher = hashlib.sha256()
        url = f"{self.server_url}/v1/images/blobs/{digest}"
        try:
            transport = httpx.AsyncHTTPTransport(local_address=self.local_address) if self.local_address else None
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

    @staticmethod
    def _unpack(bundle: Path, target: Path) -> None:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix="unpack-"))
        try:
            with tarfile.open(bundle, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            os.replace(staging, target)
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise ImageError(f"unpacking image: {exc}") from exc
