"""What `dev down` unmounts: every mount point at or below a host's data directory, deepest first, read from
mountinfo (whose fields escape spaces); nothing outside it, nor a directory that only shares its prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.agent.volumes import VolumeStore, checked_volume_id, mounts_under
from roost.core.errors import RoostError

MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 7:0 / /srv/fleet/h1/volumes/vol_a rw,nosuid,nodev - ext4 /dev/loop0 rw
91 22 0:50 / /srv/fleet/h1/machines/m1/rootfs rw - overlay overlay rw
92 91 7:1 / /srv/fleet/h1/machines/m1/rootfs/data rw - ext4 /dev/loop1 rw
93 22 7:2 / /srv/fleet/h10/volumes/vol_b rw - ext4 /dev/loop2 rw
94 22 7:3 / /srv/fleet/h1/volumes/with\\040space rw - ext4 /dev/loop3 rw
"""


def test_mounts_below_a_directory_deepest_first() -> None:
    found = mounts_under(Path("/srv/fleet/h1"), MOUNTINFO)
    assert found[0] == Path("/srv/fleet/h1/machines/m1/rootfs/data")
    assert set(found) == {Path("/srv/fleet/h1/volumes/vol_a"), Path("/srv/fleet/h1/machines/m1/rootfs"),
                          Path("/srv/fleet/h1/machines/m1/rootfs/data"), Path("/srv/fleet/h1/volumes/with space")}
    assert mounts_under(Path("/srv/other"), MOUNTINFO) == []


def test_a_volume_id_never_names_a_path_outside(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes", tmp_path / "images", enforce=False)
    for bad in ("../etc", "vol_/x", "", ".vol_a", "vol_A"):
        with pytest.raises(RoostError):
            checked_volume_id(bad)
        with pytest.raises(RoostError):
            store.path(bad)
    with pytest.raises(RoostError, match="size_gb"):
        store.ensure("vol_a", 0)
    assert store.ensure("vol_a", 1) and store.path("vol_a").is_dir()  # unenforced: a plain directory
    assert store.remove("vol_a") and not store.remove("vol_a")


async def test_a_snapshot_that_arrives_damaged_is_not_kept(tmp_path: Path) -> None:
    from roost.agent.snapshots import SnapshotStore

    store = SnapshotStore(VolumeStore(tmp_path / "volumes", tmp_path / "images", enforce=False), tmp_path / "snaps")

    async def chunks():
        yield b"some bytes"

    with pytest.raises(RoostError, match="digest"):
        await store.receive("vs_" + "0" * 16, "0" * 64, chunks(), 1024)
    assert list((tmp_path / "snaps").iterdir()) == []


def test_a_snapshot_is_hashed_as_it_is_written_and_leaves_lost_found_out(tmp_path: Path) -> None:
    import hashlib
    import tarfile

    from roost.agent.snapshots import SnapshotStore

    volumes = VolumeStore(tmp_path / "volumes", tmp_path / "images", enforce=False)
    volumes.ensure("vol_a", 1)
    (volumes.path("vol_a") / "lost+found").mkdir()
    (volumes.path("vol_a") / "rows").write_text("row 1\n")
    store = SnapshotStore(volumes, tmp_path / "snaps")
    made = store.take("vol_a", "vs_" + "1" * 16)
    stored = store.path("vs_" + "1" * 16)
    assert made == {"size": stored.stat().st_size, "digest": hashlib.sha256(stored.read_bytes()).hexdigest()}
    with tarfile.open(stored) as tar:
        assert tar.getnames() == ["rows"]
