"""A host's volume snapshots: a gzip'd tar of a volume's directory, kept in the agent's data directory, sent
to another host's agent (through the control plane) and restored into a new volume.

Restores go through tarfile's `tar` filter (no absolute paths, nothing written outside the volume, no set-uid
bits; links are kept, as the app made them) and skip device files and fifos; a snapshot from elsewhere is
checked against its digest before it is kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from roost.agent.volumes import VolumeStore
from roost.core.errors import RoostError
from roost.filestream import write_hashed

SNAPSHOT_ID = re.compile(r"^vs_[0-9a-f]{16}$")
FILESYSTEM_OWN = {"lost+found"}  # made by mkfs.ext4 at a volume's root: not the app's files
CHUNK = 1024 * 1024


def checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise RoostError(400, f"invalid {what} {value!r}")
    return value


class SnapshotStore:
    def __init__(self, volumes: VolumeStore, snapshots_dir: Path) -> None:
        self.volumes = volumes
        self.dir = snapshots_dir

    def path(self, snapshot_id: str) -> Path:
        return self.dir / f"{checked(snapshot_id, SNAPSHOT_ID, 'snapshot id')}.tar.gz"

    def take(self, volume_id: str, snapshot_id: str) -> dict[str, int | str]:
        """Snapshot the volume's files now (an empty volume makes an empty snapshot); its size and digest."""
        source = self.volumes.open(volume_id)
        target = self.path(snapshot_id)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_suffix(".partial")
        with open(partial, "wb") as raw:
            os.fchmod(raw.fileno(), 0o600)
            hashed = _HashingWriter(raw)
            with tarfile.open(fileobj=hashed, mode="w:gz", compresslevel=1) as tar:  # type: ignore[call-overload]
                if source.is_dir():
                    for entry in _app_files(source):
                        tar.add(entry, arcname=entry.name)  # symbolic links are stored as links, not followed
        os.replace(partial, target)
        return {"size": hashed.size, "digest": hashed.hasher.hexdigest()}

    async def receive(self, snapshot_id: str, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Keep a snapshot sent from another host, if it is what its digest says; its size."""
        target = self.path(snapshot_id)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_suffix(".partial")
        try:
            with open(partial, "wb") as out:
                os.chmod(partial, 0o600)
                arrived, size = await write_hashed(chunks, out, limit,
                                                   f"snapshot {snapshot_id} is larger than {limit} bytes")
            if arrived != digest:
                raise RoostError(400, f"snapshot {snapshot_id} does not match its digest: not kept")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return size

    def restore(self, snapshot_id: str, volume_id: str, digest: str = "") -> None:
        """Unpack a snapshot into a volume that has no files yet, if it is still what its digest says."""
        source = self.path(snapshot_id)
        if not source.exists():
            raise RoostError(404, f"snapshot {snapshot_id} is not on this host")
        if digest and _digest(source) != digest:
            raise RoostError(409, f"snapshot {snapshot_id} on this host does not match its digest (damaged): "
                                  f"not restored")
        target = self.volumes.open(volume_id)
        if target.exists() and _app_files(target):
            raise RoostError(409, f"volume {volume_id} already has files: a snapshot restores into a new volume")
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(source, "r:gz") as tar:
                tar.extractall(target, filter=_safe)
        except (tarfile.TarError, OSError) as exc:
            for entry in _app_files(target):  # the volume may be a mount point: emptied, not removed
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            raise RoostError(409, f"snapshot {snapshot_id} could not be restored: {exc}") from None

    def delete(self, snapshot_id: str) -> bool:
        path = self.path(snapshot_id)
        if not path.exists():
            return False
        path.unlink()
        return True


def _app_files(volume: Path) -> list[Path]:
    return sorted(entry for entry in volume.iterdir() if entry.name not in FILESYSTEM_OWN)


def _safe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    kept = tarfile.tar_filter(member, dest)
    return None if kept.isdev() else kept  # a device node in a volume would open the host's devices


class _HashingWriter:
    """A file's writes, hashed as they go: a snapshot's digest without reading it back."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.hasher, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
