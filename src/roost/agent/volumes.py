"""A host's volumes: each a fixed-size ext4 filesystem in an image file, loop-mounted at `volumes/<id>`, so a
machine that writes past its volume's `size_gb` gets ENOSPC and nothing else on the host fills up.

Images are sparse (thin-provisioned, as LVM thin pools): a new 10 GB volume takes a few hundred KB of the host's
disk until it is written to; a volume is refused if the host's disk could not hold it even when empty.
Growing (`volumes extend`) enlarges the image and then the filesystem, live where the kernel lets us
(CAP_SYS_RESOURCE), else while no machine uses it: at its next start.

Mounts outlive the agent, as the machines do: a restarted agent finds them mounted (or the image still on a
loop device, when its mount namespace was another's) and mounts the same device, never a second one: ext4
mounted from two devices at once corrupts. `roost dev down` unmounts them (`unmount_under`).

Where the host cannot mount (not root, no loop devices, no mkfs.ext4), volumes are plain directories with no
size limit, and the agent says so once at start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from roost.core.errors import RoostError

log = logging.getLogger("roost.agent.volumes")

VOLUME_ID = re.compile(r"^vol_[0-9a-z]{1,32}$")
GIB = 1024**3
MAX_SIZE_GB = 500
TOOL_TIMEOUT = 120  # mkfs, e2fsck and resize2fs of a large sparse image; bounded all the same
MOUNT_OPTIONS = "nodev,nosuid"  # a volume never opens host devices or lends root to a set-uid file


def checked_volume_id(value: str) -> str:
    if not VOLUME_ID.match(value):
        raise RoostError(400, f"invalid volume id {value!r}")
    return value


class VolumeStore:
    def __init__(self, volumes_dir: Path, images_dir: Path, enforce: bool | None = None) -> None:
        self.dir = volumes_dir
        self.images = images_dir
        self.enforce = can_mount() if enforce is None else enforce
        # One change at a time (calls come from worker threads): two mounts of one image at once would put it
        # on two loop devices.
        self._lock = threading.RLock()
        if not self.enforce:
            log.warning("volume sizes are not enforced on this host: fixed-size volumes need root, loop "
                        "devices and mkfs.ext4 (e2fsprogs); volumes are plain directories")

    def path(self, volume_id: str) -> Path:
        return self.dir / checked_volume_id(volume_id)

    def _image(self, volume_id: str) -> Path:
        return self.images / f"{checked_volume_id(volume_id)}.img"

    def _size_file(self, volume_id: str) -> Path:
        return self.images / f"{volume_id}.size"  # the filesystem's size in GB, once made or grown

    def size_gb(self, volume_id: str) -> int:
        """The filesystem's size now (0 when it is a plain directory or not made yet)."""
        try:
            return int(self._size_file(volume_id).read_text())
        except (OSError, ValueError):
            return 0

    def ensure(self, volume_id: str, size_gb: int, busy: bool = False) -> bool:
        """Make the volume ready to use at `size_gb` (made, mounted, grown); False while a grow waits for the
        volume to be free (`busy`: a machine runs on it). Idempotent, called before every start."""
        with self._lock:
            return self._ensure(volume_id, size_gb, busy)

    def _ensure(self, volume_id: str, size_gb: int, busy: bool) -> bool:
        if not 1 <= size_gb <= MAX_SIZE_GB:
            raise RoostError(400, f"size_gb: expected a whole number of GB from 1 to {MAX_SIZE_GB}")
        target = self.path(volume_id)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.enforce:
            target.mkdir(exist_ok=True)
            return True
        image = self._image(volume_id)
        if not image.exists():
            if target.exists() and not os.path.ismount(target) and any(target.iterdir()):
                log.warning("volume %s is a directory from before fixed sizes: kept as it is, unlimited", volume_id)
                return True
            self._make(volume_id, size_gb)
        self._mount(volume_id)
        if self.size_gb(volume_id) < size_gb:
            return self._grow(volume_id, size_gb, busy)
        return True

    def open(self, volume_id: str) -> Path:
        """The volume's files, mounted if it has an image (after a host restart nothing is)."""
        with self._lock:
            if self.enforce and self._image(volume_id).exists():
                self._mount(volume_id)
        return self.path(volume_id)

    def _make(self, volume_id: str, size_gb: int) -> None:
        self.images.mkdir(parents=True, exist_ok=True, mode=0o700)
        free = shutil.disk_usage(self.images).free
        if free < size_gb * GIB:
            raise RoostError(409, f"this host has {free // GIB} GB of disk free: a {size_gb} GB volume would not "
                                  f"fit once written; choose a smaller size or another host")
        image = self._image(volume_id)
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.truncate(size_gb * GIB)
        # No reserved blocks (the volume is the app's alone); lazy init keeps a sparse image sparse.
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1",
              "-L", volume_id[-16:], str(partial)], f"make volume {volume_id}")
        os.replace(partial, image)
        self._size_file(volume_id).write_text(str(size_gb))

    def _mount(self, volume_id: str) -> None:
        target = self.path(volume_id)
        target.mkdir(exist_ok=True)
        if os.path.ismount(target):
            return
        device = loop_device_of(self._image(volume_id))
        if device:  # still attached from a mount in another namespace: share its device
            _run(["mount", "-o", MOUNT_OPTIONS, device, str(target)], f"mount volume {volume_id}")
        else:
            _run(["mount", "-o", f"loop,{MOUNT_OPTIONS}", str(self._image(volume_id)), str(target)],
                 f"mount volume {volume_id}")

    def _grow(self, volume_id: str, size_gb: int, busy: bool) -> bool:
        image = self._image(volume_id)
        with open(image, "r+b") as f:
            if os.fstat(f.fileno()).st_size < size_gb * GIB:
                f.truncate(size_gb * GIB)
        device = loop_device_of(image)
        if device:
            _run(["losetup", "-c", device], f"grow volume {volume_id}")
            online = subprocess.run(["resize2fs", device], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
            if online.returncode == 0:
                self._size_file(volume_id).write_text(str(size_gb))
                return True
            log.info("volume %s: the kernel refused to grow it while mounted (%s)", volume_id,
                     online.stderr.strip().splitlines()[-1:] or "")
        if busy:
            return False
        self._unmount(volume_id)
        if not _detached(image):  # still mounted elsewhere (a machine from a former agent): not now
            self._mount(volume_id)
            return False
        _run(["e2fsck", "-f", "-p", str(image)], f"check volume {volume_id}", ok=(0, 1))  # 1: fixed something
        _run(["resize2fs", str(image)], f"grow volume {volume_id}")
        self._size_file(volume_id).write_text(str(size_gb))
        self._mount(volume_id)
        return True

    def _unmount(self, volume_id: str) -> None:
        target = self.path(volume_id)
        if os.path.ismount(target):
            _run(["umount", str(target)], f"unmount volume {volume_id}")

    def remove(self, volume_id: str) -> bool:
        """Delete a destroyed volume: unmounted, its image and directory gone. False if there was none."""
        with self._lock:
            target, image = self.path(volume_id), self._image(volume_id)
            if not target.exists() and not image.exists():
                return False
            if os.path.ismount(target):
                _run(["umount", "--lazy", str(target)], f"unmount volume {volume_id}")
            image.unlink(missing_ok=True)
            self._size_file(volume_id).unlink(missing_ok=True)
            if target.exists():
                shutil.rmtree(target)
            return True


def can_mount() -> bool:
    return (os.geteuid() == 0 and Path("/dev/loop-control").exists()
            and all(shutil.which(tool) for tool in ("mkfs.ext4", "resize2fs", "e2fsck", "losetup", "mount")))


def loop_device_of(image: Path) -> str:
    """The loop device the image is attached to, or ''."""
    if not image.exists():
        return ""
    found = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(image)], capture_output=True, text=True,
                           timeout=10)
    return found.stdout.split()[0] if found.returncode == 0 and found.stdout.split() else ""


def _detached(image: Path, wait: float = 2.0) -> bool:
    """Whether the image's loop device went away after its last unmount (the kernel frees it just after)."""
    deadline = time.monotonic() + wait
    while loop_device_of(image):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _run(argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RoostError(500, f"{what}: {argv[0]} failed: {exc}") from None
    if done.returncode not in ok:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise RoostError(500, f"{what}: {argv[0]} failed: {detail[-1] if detail else done.returncode}")


def mounts_under(root: Path, mountinfo: str) -> list[Path]:
    """Mount points at or below `root` in a /proc/<pid>/mountinfo text, deepest first (the order to unmount)."""
    base = os.path.realpath(root)
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        if point == base or point.startswith(base.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(root: Path) -> int:
    """Unmount everything mounted below `root` (a host's data directory at `dev down`); how many."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return 0
    count = 0
    for point in mounts_under(root, text):
        done = subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=10)
        count += done.returncode == 0
    return count
