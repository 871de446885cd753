"""Issue 21: volume snapshots as Fly's: on demand and daily, restored into a new volume on another host of the
region (`volumes create --snapshot-id`), forks, and a snapshot that does not match its digest never restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roost.dev import faults
from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("snapshots"), ["ams"], 2, server_args=("--snapshot-interval", "2s"))
    assert f.api.post("/v1/apps", json={"app_name": "vols", "primary_region": "ams"}).status_code == 201
    yield f
    f.close()


def files_of(fleet: Fleet, volume: dict) -> Path:
    """A volume's directory on its host (what a machine mounts at its destination)."""
    return Path(fleet.host(volume["zone"])["data_dir"]) / "volumes" / volume["id"]


def on_demand(fleet: Fleet, volume_id: str) -> list[dict]:
    return [s for s in fleet.api.get(f"/v1/apps/vols/volumes/{volume_id}/snapshots").json()
            if s["type"] == "on-demand"]


def test_a_snapshot_restores_on_another_host_and_forks(fleet):
    source = fleet.api.post("/v1/apps/vols/volumes", json={"name": "data", "region": "ams", "size_gb": 2}).json()
    root = files_of(fleet, source)
    (root / "db").mkdir(parents=True)
    (root / "db" / "rows.txt").write_text("row 1\nrow 2\n")
    (root / "latest").symlink_to("db/rows.txt")

    made = json.loads(fleet.roost("volumes", "snapshots", "create", source["id"], "-a", "vols", "--json").stdout)
    assert made["id"].startswith("vs_") and made["size"] > 0 and len(made["digest"]) == 64
    assert made["volume_size"] == 2 * 1024**3 and made["retention_days"] == 5
    assert [s["id"] for s in on_demand(fleet, source["id"])] == [made["id"]]
    (root / "db" / "rows.txt").write_text("changed after the snapshot\n")

    # Same name, so the new volume goes to the other host: the snapshot travels there, checked on arrival
    restored = json.loads(fleet.roost("volumes", "create", "data", "-a", "vols", "--snapshot-id", made["id"],
                                      "--json").stdout)
    assert restored["zone"] != source["zone"] and restored["size_gb"] == 2
    copy = files_of(fleet, restored)
    assert (copy / "db" / "rows.txt").read_text() == "row 1\nrow 2\n", "the files as they were when taken"
    assert (copy / "latest").is_symlink() and (copy / "latest").read_text() == "row 1\nrow 2\n"

    forked = json.loads(fleet.roost("volumes", "fork", source["id"], "-a", "vols", "--name", "copy",
                                    "--json").stdout)
    assert forked["name"] == "copy" and forked["id"] not in (source["id"], restored["id"])
    assert (files_of(fleet, forked) / "db" / "rows.txt").read_text() == "changed after the snapshot\n"

    # Bad input: one clear line, nothing made
    before = {v["id"] for v in fleet.api.get("/v1/apps/vols/volumes").json()}
    for body, message in (({"name": "x", "snapshot_id": "vs_0000000000000000"}, "not found"),
                          ({"name": "x", "snapshot_id": made["id"], "size_gb": 1}, "at least 2"),
                          ({"name": "x", "snapshot_id": made["id"], "region": "ewr"}, "within its region"),
                          ({"name": "x", "source_volume_id": "vol_nope"}, "not found")):
        r = fleet.api.post("/v1/apps/vols/volumes", json=body)
        assert r.status_code in (400, 404) and message in r.json()["error"], (body, r.text)
    assert {v["id"] for v in fleet.api.get("/v1/apps/vols/volumes").json()} == before


def test_a_snapshot_that_does_not_match_its_digest_is_never_restored(fleet):
    volume = fleet.api.post("/v1/apps/vols/volumes", json={"name": "ledger", "region": "ams"}).json()
    files_of(fleet, volume).mkdir(parents=True, exist_ok=True)
    (files_of(fleet, volume) / "balance").write_text("100")
    snapshot = fleet.api.post(f"/v1/apps/vols/volumes/{volume['id']}/snapshots").json()
    for holder in (volume["zone"], snapshot["copy_host_id"]):  # the snapshot and its copy, both damaged
        stored = Path(fleet.host(holder)["data_dir"]) / "snapshots" / f"{snapshot['id']}.tar.gz"
        assert stored.stat().st_mode & 0o077 == 0, "snapshot files are the host's own (0600)"
        stored.write_bytes(stored.read_bytes()[:-8] + b"tampered")
    before = {v["id"] for v in fleet.api.get("/v1/apps/vols/volumes").json()}
    # the same name: the restore goes to the other host, which checks the digest before it unpacks
    r = fleet.api.post("/v1/apps/vols/volumes", json={"name": "ledger", "snapshot_id": snapshot["id"]})
    assert r.status_code >= 400 and "digest" in r.json()["error"], r.text
    assert {v["id"] for v in fleet.api.get("/v1/apps/vols/volumes").json()} == before, "no half-restored volume"


def test_volumes_are_snapshotted_on_schedule(fleet):
    volume = fleet.api.post("/v1/apps/vols/volumes", json={"name": "nightly", "region": "ams"}).json()
    fleet.wait_for(lambda: any(s["type"] == "daily" for s in
                               fleet.api.get(f"/v1/apps/vols/volumes/{volume['id']}/snapshots").json()),
                   timeout=20, what="a scheduled snapshot")
    off = fleet.api.post("/v1/apps/vols/volumes", json={"name": "scratch", "region": "ams",
                                                        "auto_backup_enabled": False}).json()
    first = fleet.api.get(f"/v1/apps/vols/volumes/{volume['id']}/snapshots").json()
    fleet.wait_for(lambda: len(fleet.api.get(f"/v1/apps/vols/volumes/{volume['id']}/snapshots").json())
                   > len(first), timeout=20, what="the next scheduled snapshot")
    assert fleet.api.get(f"/v1/apps/vols/volumes/{off['id']}/snapshots").json() == [], "auto_backup off: none"


def test_a_snapshot_outlives_its_volumes_host(fleet):
    """Each snapshot is also copied to another host of its region: with the volume's host frozen, the snapshot
    still restores, from the copy."""
    volume = fleet.api.post("/v1/apps/vols/volumes", json={"name": "kept", "region": "ams"}).json()
    (files_of(fleet, volume) / "orders").write_text("order 1\n")
    snapshot = fleet.api.post(f"/v1/apps/vols/volumes/{volume['id']}/snapshots").json()
    holder = snapshot["copy_host_id"]
    assert holder and holder != volume["zone"], snapshot
    copy = Path(fleet.host(holder)["data_dir"]) / "snapshots" / f"{snapshot['id']}.tar.gz"
    assert copy.exists() and copy.stat().st_mode & 0o077 == 0
    faults.freeze_agent(fleet.spec.data_dir, volume["zone"])
    try:
        fleet.wait_for(lambda: next(h for h in fleet.api.get("/v1/hosts").json()
                                    if h["id"] == volume["zone"])["status"] != "ok",
                       timeout=30, what="the volume's host declared away")
        restored = json.loads(fleet.roost("volumes", "create", "kept", "-a", "vols", "--snapshot-id",
                                          snapshot["id"], "--json").stdout)
        assert restored["zone"] == holder
        assert (files_of(fleet, restored) / "orders").read_text() == "order 1\n"
    finally:
        faults.thaw_agent(fleet.spec.data_dir, volume["zone"])
    fleet.wait_for(lambda: next(h for h in fleet.api.get("/v1/hosts").json()
                                if h["id"] == volume["zone"])["status"] == "ok", timeout=30, what="the host back")
