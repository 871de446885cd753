"""The fence keeper (agent/keeper.py) as a real process: it kills a watched machine's processes once the
lease the agent published runs out, leaves a marker and a run-log line, never while the lease is renewed,
and ends when the agent stops."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from roost.agent.keeper import KeeperClient, KeeperFiles


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def keeper(tmp_path: Path):
    client = KeeperClient(tmp_path)
    pid = client.start()
    yield client, pid
    client.stop()
    if KeeperFiles(tmp_path).keeper_pid() is not None:
        os.kill(pid, 9)


def victim() -> subprocess.Popen[bytes]:
    # A machine's process and a child of it, in a process group of their own (as the drivers start them).
    return subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)


def test_a_lease_that_runs_out_gets_the_watched_machine_killed(keeper, tmp_path: Path) -> None:
    client, _ = keeper
    machine = victim()
    try:
        client.publish(time.monotonic() + 0.3, [{"id": "aa11bb22", "pid": machine.pid}])
        time.sleep(0.15)
        assert alive(machine)
        assert wait(lambda: not alive(machine), 2.0), "the keeper killed the machine once the lease ran out"
        assert KeeperFiles(tmp_path).take_fenced("aa11bb22")
        lines = [json.loads(line) for line in (tmp_path / "runs.log").read_text().splitlines()]
        assert lines == [{"machine": "aa11bb22", "pid": machine.pid, "event": "end", "time": lines[0]["time"],
                          "reason": "fenced"}]
    finally:
        if alive(machine):
            os.killpg(machine.pid, 9)


def test_a_renewed_lease_keeps_the_machine_and_a_clean_stop_ends_the_keeper(keeper, tmp_path: Path) -> None:
    client, pid = keeper
    machine = victim()
    try:
        for _ in range(15):  # the agent renews every heartbeat
            client.publish(time.monotonic() + 0.3, [{"id": "cc33dd44", "pid": machine.pid}])
            time.sleep(0.1)
        assert alive(machine)
        client.stop()
        assert wait(lambda: not Path(f"/proc/{pid}").exists() or
                    Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z", 3.0)
        assert alive(machine), "a clean agent stop fences nothing"
        assert not (tmp_path / "runs.log").exists()
    finally:
        os.killpg(machine.pid, 9)


def test_the_files_are_private_and_markers_take_only_machine_ids(keeper, tmp_path: Path) -> None:
    client, _ = keeper
    client.publish(time.monotonic() + 10, [])
    files = KeeperFiles(tmp_path)
    assert files.lease.stat().st_mode & 0o777 == 0o600
    assert files.dir.stat().st_mode & 0o777 == 0o700
    assert not files.take_fenced("../../etc/passwd")
    with pytest.raises(ValueError):
        files.mark_fenced("../x")
