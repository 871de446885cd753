"""The agent's supervisor over the fake driver: the recovery rule as the agent applies it after its own
restart (issue 12), and the start/stop bookkeeping it reports to the control plane. No processes, no sockets."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from roost.agent.drivers.fake import FakeDriver
from roost.agent.images import ImageCache
from roost.agent.records import RecordStore
from roost.agent.supervisor import Supervisor
from roost.agent.volumes import VolumeStore
from roost.core.agent_spec import AgentSpec
from roost.core.errors import RoostError

DIGEST = "sha256:" + "ab" * 32


def spec(mid: str, policy: str = "always", version: str = "") -> AgentSpec:
    return AgentSpec.from_json({
        "id": mid, "app": "a", "instance_id": version or f"v-{mid}",
        "config": {"image": "x", "restart": {"policy": policy}},
        "image": {"ref": "x", "digest": DIGEST, "cmd": ["run"]}, "env": {}, "ports": {}})


def agent(root: Path, driver: FakeDriver | None = None, watched: list[str] | None = None,
          ) -> tuple[Supervisor, FakeDriver, list[dict[str, Any]]]:
    driver = driver or FakeDriver()
    images = ImageCache(root / "images", "http://127.0.0.1:1", "t")
    images.path(DIGEST).mkdir(parents=True, exist_ok=True)  # already pulled: no network
    reports: list[dict[str, Any]] = []
    sup = Supervisor(driver, RecordStore(root / "records"), images, reports.append, root / "bin",
                     VolumeStore(root / "volumes", root / "volume-images", enforce=False))
    sup.watched = watched or []
    return sup, driver, reports


def ends(root: Path, mid: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (root / "runs.log").read_text().splitlines()]
    return [x for x in lines if x["machine"] == mid and x["event"] == "end"]


async def test_after_a_power_cut_what_ran_runs_again_and_its_end_is_when_the_host_died(tmp_path: Path) -> None:
    sup, _, _ = agent(tmp_path)
    await sup.start(spec("m1", policy="no"))
    sup.mark_alive()
    os.utime(sup.alive_file, (1000.0, 1000.0))  # the host's last sign of life
    # the host lost power: a new agent, a new driver (no process survived)
    again, driver, reports = agent(tmp_path)
    await again.recover(host_restarted=True)
    await again._watchers["m1"]
    assert driver.inspect("m1"), "desired running: started again, whatever its restart policy"
    assert ends(tmp_path, "m1")[-1]["time"] == 1000.0
    assert reports[0]["state"] == "stopped" and reports[0]["event"]["status"] == "restarting"
    assert reports[-1]["state"] == "started"


async def test_a_watched_machine_waits_for_the_control_plane(tmp_path: Path) -> None:
    sup, _, _ = agent(tmp_path, watched=["w"])
    await sup.start(spec("w"))
    again, driver, reports = agent(tmp_path, watched=["w"])
    await again.recover(host_restarted=True)
    assert not driver.inspect("w") and again.records["w"].awaiting == "host-lost"
    assert reports[0]["recover"] == "host-lost" and again.snapshot["w"]["recover"] == "host-lost"
    with pytest.raises(RoostError) as refused:  # a proxy's start by reference
        await again.start_staged("w", "v-w")
    assert refused.value.status == 409
    await again.start(spec("w"))  # the control plane's start, with the spec
    assert driver.inspect("w") and again.records["w"].awaiting == ""


async def test_a_suspended_machine_lost_with_its_host_stays_down_and_keeps_its_files(tmp_path: Path) -> None:
    sup, first, _ = agent(tmp_path)
    await sup.start(spec("s"))
    first.workloads["s"].files["/data/x"] = "kept"
    await sup.suspend("s")
    driver = FakeDriver()
    driver.workloads["s"] = first.workloads["s"]  # its files are on disk; its process is gone
    driver.exit("s", None)
    again, driver, reports = agent(tmp_path, driver)
    await again.recover(host_restarted=True)
    assert again.records["s"].state == "stopped" and not driver.inspect("s")
    assert reports[0]["event"]["status"] == "stopped"
    await again.start(spec("s"))
    assert driver.workloads["s"].files == {"/data/x": "kept"}, "booted from its files, not a fresh rootfs"


async def test_an_exit_while_only_the_agent_was_down_follows_the_restart_policy(tmp_path: Path) -> None:
    sup, _, _ = agent(tmp_path)
    await sup.start(spec("n", policy="no"))
    again, driver, reports = agent(tmp_path)
    await again.recover(host_restarted=False)
    await again._watchers["n"]
    assert not driver.inspect("n") and again.records["n"].state == "stopped"
    assert reports[-1]["event"]["type"] == "exit" and "recover" not in reports[-1]


async def test_a_fenced_machine_is_left_to_the_control_plane(tmp_path: Path) -> None:
    sup, driver, reports = agent(tmp_path, watched=["f"])
    await sup.start(spec("f"))
    sup.fenced.add("f")
    driver.exit("f", None, 9)
    await sup._watchers["f"]
    assert sup.records["f"].awaiting == "fenced" and reports[-1]["recover"] == "fenced"
    assert ends(tmp_path, "f")[-1]["reason"] == "fenced"


async def test_a_machine_that_never_ran_stays_created_through_updates(tmp_path: Path) -> None:
    sup, _, _ = agent(tmp_path)
    assert (await sup.prepare(spec("c")))["state"] == "created"
    newer = spec("c", version="v2")
    assert (await sup.prepare(newer))["state"] == "created"
    await sup.start(newer)
    await sup.stop("c", 15, 1.0)
    assert (await sup.prepare(spec("c", version="v3")))["state"] == "stopped"


class CountingCache(ImageCache):
    """An image cache whose pulls are counted and take a moment, standing in for the registry."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "http://127.0.0.1:1", "t")
        self.pulls: list[str] = []

    async def ensure(self, digest: str) -> Path:
        if not self.path(digest).is_dir():
            self.pulls.append(digest)
            await asyncio.sleep(0.01)
            self.path(digest).mkdir(parents=True)
        return self.path(digest)


async def test_a_staged_machine_has_its_image_before_its_first_start(tmp_path: Path) -> None:
    """A standby's takeover or a proxy's autostart only boots: the image was pulled when the machine was
    staged (as Fly pulls a created machine's image), once however often it is staged."""
    images = CountingCache(tmp_path / "images")
    driver = FakeDriver()
    sup = Supervisor(driver, RecordStore(tmp_path / "records"), images, [].append, tmp_path / "bin",
                     VolumeStore(tmp_path / "volumes", tmp_path / "volume-images", enforce=False))
    await sup.prepare(spec("s1"))
    await sup.prepare(spec("s2"))  # the same image: one pull
    await asyncio.gather(*sup._prefetches.values())
    assert images.pulls == [DIGEST] and images.path(DIGEST).is_dir()
    await sup.start(spec("s1"))
    assert images.pulls == [DIGEST] and driver.inspect("s1")
    await sup.shutdown()


async def test_an_image_pulled_for_a_machine_destroyed_meanwhile_is_removed(tmp_path: Path) -> None:
    images = CountingCache(tmp_path / "images")
    sup = Supervisor(FakeDriver(), RecordStore(tmp_path / "records"), images, [].append, tmp_path / "bin",
                     VolumeStore(tmp_path / "volumes", tmp_path / "volume-images", enforce=False))
    await sup.prepare(spec("gone"))
    await sup.destroy("gone")  # while its image is still being pulled
    await asyncio.gather(*sup._prefetches.values())
    assert images.pulls == [DIGEST] and not images.path(DIGEST).exists()
