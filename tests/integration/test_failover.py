"""Issue 6's end-to-end checks: a dead host is detected, its worker's standby takes over with a higher fencing
token, the returning host leaves the old worker stopped, a cut-off host fences itself before the standby
starts, and neither a stopped worker, a control-plane outage nor a host cut off from the control plane only
starts a standby or stops a machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.dev import faults
from roost.dev.fleet import pid_alive, restart_agent, restart_server
from tests.integration.conftest import TEST_DRIVER, TEST_NETNS, Fleet, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CAN_PARTITION = faults.partition_unavailable() is None


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("ha"), ["ams"], 3)
    f.workdir = tmp_path_factory.mktemp("fenced")
    yield f
    faults.heal(f.spec.data_dir)
    f.close()


def deploy_worker(f: Fleet, app: str) -> tuple[dict, dict, Path]:
    """Deploy the fenced worker example as APP; returns (worker, standby, shared log). Isolated machines share
    no disk: theirs goes through the example's ledger, a store on the host that refuses stale tokens, reached
    at each machine's ROOST_GATEWAY."""
    if TEST_DRIVER == "container" and TEST_NETNS:
        pytest.skip("the fenced worker's store is on this computer, which machines of a netns fleet cannot reach")
    directory = f.workdir / app
    shutil.copytree(ROOT / "examples" / "fenced-worker", directory)
    shared = f.workdir / f"{app}-shared" / "shared.log"
    text = (directory / "fly.toml").read_text().replace('app = "fenced"', f'app = "{app}"')
    if TEST_DRIVER == "container":
        port = free_port()
        # On every address of this computer: each host's machines reach it at their host's gateway.
        f.helpers.append(subprocess.Popen(
            [sys.executable, str(directory / "ledger.py"), "--listen", f"0.0.0.0:{port}", "--log", str(shared)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        text = text.replace('SHARED_LOG = "/tmp/roost-fenced/shared.log"', f'LEDGER_URL = "http://{{gateway}}:{port}"')
    else:
        text = text.replace("/tmp/roost-fenced/shared.log", str(shared))
    (directory / "fly.toml").write_text(text)
    f.roost("apps", "create", app, "--primary-region", "ams")
    f.roost("deploy", "-c", str(directory / "fly.toml"), timeout=120)
    machines = f.api.get(f"/v1/apps/{app}/machines").json()
    worker = next(m for m in machines if not m["config"].get("standbys"))
    standby = next(m for m in machines if m["config"].get("standbys"))
    assert worker["host_id"] != standby["host_id"]
    f.wait_for(lambda: shared.exists() and shared.read_text().count("\n") > 3, what="the worker writing")
    time.sleep(1.0)  # steady state: the worker's host has acknowledged that a standby watches it
    return worker, standby, shared


def machine(f: Fleet, app: str, mid: str) -> dict:
    return f.api.get(f"/v1/apps/{app}/machines/{mid}").json()


def stale_writes(shared: Path) -> int:
    highest = stale = 0
    for line in shared.read_text().splitlines():
        token = int(line.split()[0])
        stale += token < highest
        highest = max(highest, token)
    return stale


def started_after(f: Fleet, machine_id: str, t: float) -> float | None:
    starts = [r.start for r in faults.runs(f.spec.data_dir) if r.machine == machine_id and r.start >= t]
    return min(starts) if starts else None


def test_stopping_the_worker_by_hand_never_starts_the_standby(ha):
    worker, standby, _ = deploy_worker(ha, "manual")
    ha.roost("machine", "stop", worker["id"], "-a", "manual")
    time.sleep(3.0)
    assert machine(ha, "manual", standby["id"])["state"] in ("created", "stopped")
    ha.roost("machine", "destroy", worker["id"], "-a", "manual")
    time.sleep(2.0)
    assert machine(ha, "manual", standby["id"])["state"] in ("created", "stopped")


def test_a_dead_hosts_worker_is_replaced_by_its_standby_within_3s(ha):
    worker, standby, shared = deploy_worker(ha, "power")
    killed = faults.kill_host(ha.spec.data_dir, worker["host_id"])
    ha.wait_for(lambda: started_after(ha, standby["id"], killed), timeout=10, what="the standby to start")
    took = started_after(ha, standby["id"], killed) - killed
    assert took < 3.0, f"standby running {took:.2f}s after the kill"
    replaced, taker = machine(ha, "power", worker["id"]), machine(ha, "power", standby["id"])
    assert replaced["host_status"] == "unreachable"
    assert taker["roost"]["fencing"]["token"] == 2 and replaced["roost"]["fencing"]["replaced_by"] == standby["id"]
    assert any(e["type"] == "takeover" for e in replaced["events"])
    assert any(e["type"] == "takeover" for e in taker["events"])
    ha.wait_for(lambda: any(line.startswith("2 ") for line in shared.read_text().splitlines()),
                what="the standby writing with token 2")
    status = ha.roost("status", "-a", "power").stdout
    assert "replaced by standby" in status and "took over" in status
    # the host comes back: the old worker stays stopped, and says why
    restart_agent(ha.spec.data_dir, worker["host_id"])
    ha.wait_for(lambda: machine(ha, "power", worker["id"])["host_status"] == "ok", what="the host back")
    time.sleep(2.0)
    back = machine(ha, "power", worker["id"])
    assert back["state"] == "stopped" and "replaced by standby" in back["roost"]["note"]
    assert [r for r in faults.runs(ha.spec.data_dir) if r.machine == worker["id"] and r.start > killed] == []
    assert stale_writes(shared) == 0


def test_a_frozen_agents_watched_machine_is_fenced_by_its_keeper_before_the_standby_starts(ha):
    """Issue 17: SIGSTOP the worker's agent. It can neither beat nor fence, the control plane declares its
    host dead and starts the standby; the host's fence keeper has killed the worker first."""
    worker, standby, shared = deploy_worker(ha, "frozen")
    frozen = faults.freeze_agent(ha.spec.data_dir, worker["host_id"])
    try:
        ha.wait_for(lambda: started_after(ha, standby["id"], frozen), timeout=10, what="the standby to start")
        runs = faults.runs(ha.spec.data_dir)
        old = [r for r in runs if r.machine == worker["id"]]
        new = [r for r in runs if r.machine == standby["id"]]
        assert any(r.end_reason == "fenced" and r.end is not None and r.end > frozen for r in old), old
        assert faults.overlaps(old, new) == [], "the worker and its standby never ran at the same time"
        assert started_after(ha, standby["id"], frozen) - frozen < 3.0
    finally:
        faults.thaw_agent(ha.spec.data_dir, worker["host_id"])
    ha.wait_for(lambda: machine(ha, "frozen", worker["id"])["host_status"] == "ok", what="the host back")
    time.sleep(1.5)
    back = machine(ha, "frozen", worker["id"])
    assert back["state"] == "stopped", back["state"]  # the thawed agent did not restart it
    runs = faults.runs(ha.spec.data_dir)
    assert faults.overlaps([r for r in runs if r.machine == worker["id"]],
                           [r for r in runs if r.machine == standby["id"]]) == []
    assert stale_writes(shared) == 0


@pytest.mark.skipif(not CAN_PARTITION, reason="partitions need root and iptables")
def test_a_cut_off_host_fences_itself_before_its_standby_starts(ha):
    worker, standby, shared = deploy_worker(ha, "split")
    cut = faults.partition_host(ha.spec.data_dir, worker["host_id"])
    try:
        ha.wait_for(lambda: started_after(ha, standby["id"], cut), timeout=10, what="the standby to start")
        runs = faults.runs(ha.spec.data_dir)
        old = [r for r in runs if r.machine == worker["id"]]
        new = [r for r in runs if r.machine == standby["id"]]
        assert any(r.end_reason == "fenced" for r in old), old
        assert faults.overlaps(old, new) == [], "the worker and its standby never ran at the same time"
        assert started_after(ha, standby["id"], cut) - cut < 3.0
    finally:
        faults.heal(ha.spec.data_dir)
    ha.wait_for(lambda: machine(ha, "split", worker["id"])["host_status"] == "ok", what="the host back")
    time.sleep(1.5)
    assert machine(ha, "split", worker["id"])["state"] == "stopped"
    assert stale_writes(shared) == 0


@pytest.mark.skipif(not CAN_PARTITION, reason="partitions need root and iptables")
def test_a_host_cut_off_from_the_control_plane_only_keeps_running(ha):
    worker, standby, _ = deploy_worker(ha, "island")
    cut = faults.partition_host(ha.spec.data_dir, worker["host_id"], server_only=True)
    try:
        time.sleep(5.0)
        hosts = {h["id"]: h for h in ha.api.get("/v1/hosts").json()}
        assert hosts[worker["host_id"]]["status"] == "unknown", "suspect, not dead: its peers still reach it"
        assert started_after(ha, standby["id"], cut) is None
        running = [r for r in faults.runs(ha.spec.data_dir) if r.machine == worker["id"] and r.end is None]
        assert running, "the worker was not stopped"
    finally:
        faults.heal(ha.spec.data_dir)
    ha.wait_for(lambda: machine(ha, "island", worker["id"])["host_status"] == "ok", what="the host back")
    assert machine(ha, "island", worker["id"])["state"] == "started"


def test_a_control_plane_outage_stops_nothing_and_takes_nothing_over(ha):
    worker, standby, _ = deploy_worker(ha, "outage")
    pids_before = {r.machine for r in faults.runs(ha.spec.data_dir) if r.end is None}
    killed = faults.kill_server(ha.spec.data_dir)
    assert not pid_alive(ha.info["server"]["pid"])
    time.sleep(6.0)  # several leases long; bench/failover.py holds it for 60 s
    ha.info["server"].update(restart_server(ha.spec.data_dir))
    time.sleep(3.0)  # and a few heartbeats after it comes back
    running = {r.machine for r in faults.runs(ha.spec.data_dir) if r.end is None}
    assert pids_before <= running, "no machine was stopped"
    assert started_after(ha, standby["id"], killed) is None, "no takeover"
    assert machine(ha, "outage", worker["id"])["state"] == "started"
    assert ha.api.get("/v1/takeovers").json() == [] or all(
        t["watched"] != worker["id"] for t in ha.api.get("/v1/takeovers").json())


def test_hosts_list_and_cordon(ha):
    out = ha.roost("hosts", "list").stdout
    assert "ams-1" in out and "ams-3" in out
    ha.roost("hosts", "cordon", "ams-2")
    try:
        assert next(h for h in ha.api.get("/v1/hosts").json() if h["id"] == "ams-2")["cordoned"] is True
        for _ in range(3):
            r = ha.api.post("/v1/apps/outage/machines", json={"config": {"image": "fenced:latest"}})
            # whatever the image answer, nothing lands on the cordoned host
            if r.status_code == 200:
                assert r.json()["host_id"] != "ams-2"
    finally:
        ha.roost("hosts", "uncordon", "ams-2")

