"""The control plane on PostgreSQL (issue 18): a local fleet whose server stores everything in the fleet's own
PostgreSQL cluster (`roost dev up --store postgresql`), what it does when that database goes away, and the one
line a bad --store gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from roost.dev import faults, postgres
from roost.dev.fleet import down, pid_alive, read_fleet, restart_server
from tests.integration.conftest import Fleet
from tests.ports import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("pgfleet") / "fleet", ["ams"], 2, store="postgresql",
              postgres_port=free_port())
    yield f
    down(f.spec.data_dir)


def _terminate_server_connections(fleet: Fleet) -> int:
    cluster = postgres.LocalPostgres(Path(fleet.info["postgres"]["dir"]), fleet.info["postgres"]["port"])
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="roost", dbname="postgres",
                         password=cluster.password(), autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'roost-server'").fetchall()
    return len(rows)


def test_the_fleet_runs_on_its_postgresql_and_keeps_everything_across_a_server_kill(fleet):
    info = fleet.info["postgres"]
    assert pid_alive(info["pid"]) and info["url"].startswith("postgresql://roost@127.0.0.1:")
    assert "--store" in fleet.info["server"]["argv"] and "pgpass" not in " ".join(fleet.info["server"]["argv"])
    assert oct(os.stat(Path(info["dir"]) / "pgpass").st_mode & 0o777) == "0o600"
    assert not Path(fleet.info["server"]["data_dir"], "roost.db").exists()  # nothing went to SQLite
    fleet.push_example("pg-app")
    assert fleet.api.post("/v1/apps", json={"app_name": "pg-app", "org_slug": "personal"}).status_code == 201
    made = fleet.api.post("/v1/apps/pg-app/machines", json={"config": {"image": "pg-app:latest"}})
    assert made.status_code == 200, made.text
    machine = made.json()["id"]
    fleet.wait_for(lambda: fleet.api.get(f"/v1/apps/pg-app/machines/{machine}").json()["state"] == "started",
                   timeout=30, what="the machine started")

    os.kill(fleet.info["server"]["pid"], signal.SIGKILL)
    fleet.wait_for(lambda: not pid_alive(fleet.info["server"]["pid"]), timeout=10, what="the server died")
    fleet.info["server"].update(restart_server(fleet.spec.data_dir))
    got = fleet.api.get(f"/v1/apps/pg-app/machines/{machine}")
    assert got.status_code == 200 and got.json()["state"] == "started"
    assert [a["name"] for a in fleet.api.get("/v1/apps").json()["apps"]] == ["pg-app"]


def test_a_lost_database_connection_is_a_503_with_a_retry_hint_and_the_server_reconnects(fleet):
    assert _terminate_server_connections(fleet) >= 1
    lost = fleet.api.post("/v1/apps", json={"app_name": "during-the-loss", "org_slug": "personal"})
    assert lost.status_code == 503 and lost.headers["retry-after"] == "1"
    assert "retry" in lost.json()["error"]
    again = fleet.api.post("/v1/apps", json={"app_name": "after-the-loss", "org_slug": "personal"})
    assert again.status_code == 201, again.text
    names = {a["name"] for a in fleet.api.get("/v1/apps").json()["apps"]}
    assert "after-the-loss" in names and "during-the-loss" not in names  # the failed request wrote nothing


def _server(tmp_path: Path, *store: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", "server", "--data-dir", str(tmp_path / "server"),
                           "--listen", f"127.0.0.1:{free_port()}", *store],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("store", "says"), [
    ("mysql://root@127.0.0.1/roost", "unsupported store URL 'mysql://root@127.0.0.1/roost': use sqlite:///PATH"),
    ("postgresql://roost:hunter2@127.0.0.1:{port}/roost", "cannot open the store at postgresql+psycopg://roost:***@"),
])
def test_the_server_refuses_a_bad_store_in_one_line(tmp_path, store, says):
    result = _server(tmp_path, "--store", store.format(port=free_port()))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len([line for line in lines if "Traceback" in line]) == 0
    assert says in lines[-1] and "hunter2" not in result.stderr


def test_dev_down_stops_the_fleets_postgresql(tmp_path):
    f = Fleet(tmp_path / "fleet", ["ams"], 1, store="postgresql", postgres_port=free_port(), proxies=False)
    pid = f.info["postgres"]["pid"]
    assert pid_alive(pid)
    down(f.spec.data_dir)
    assert not pid_alive(pid) and read_fleet(f.spec.data_dir) is None
    leftover = subprocess.run(["pgrep", "-f", str(Path(f.info["postgres"]["dir"]) / "data")],
                              capture_output=True, text=True)
    assert leftover.stdout.strip() == ""  # no backend, checkpointer or writer of it either


# ---- several replicas on one PostgreSQL ----

@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("trio") / "fleet", ["ams"], 2, store="postgresql",
              postgres_port=free_port(), servers=3, proxies=False)
    yield f
    down(f.spec.data_dir)


def _client(fleet: Fleet, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {fleet.token}"}, timeout=10,
                        trust_env=False, verify=fleet.verify)


def _views(fleet: Fleet) -> list[dict]:
    out = []
    for server in fleet.info["servers"]:
        if not pid_alive(server["pid"]):
            continue
        with _client(fleet, server["url"]) as c:
            out.append(c.get("/v1/control-plane").json())
    return out


def test_three_replicas_one_leader_and_every_replica_reads_what_another_wrote(trio):
    assert len(trio.info["servers"]) == 3
    views = _views(trio)
    assert sum(v["leads"] for v in views) == 1
    leader = next(v["replica"] for v in views if v["leads"])
    assert {v["leader"] for v in views} == {leader}
    followers = [s["url"] for s in trio.info["servers"] if s["url"] != leader]
    with _client(trio, followers[0]) as a, _client(trio, followers[1]) as b:
        made = a.post("/v1/apps", json={"app_name": "via-follower", "org_slug": "personal"})
        assert made.status_code == 201, made.text  # forwarded to the leader
        got = b.get("/v1/apps/via-follower")  # at once, on another follower
        assert got.status_code == 200 and got.json()["name"] == "via-follower"
        # the hosts' heartbeats reach the leader through whichever replica they call
        assert {h["status"] for h in b.get("/v1/hosts").json()} == {"ok"}
        # a watcher on one follower hears a change made through the other, from the revision it had
        since = b.get("/v1/watch", params={"since": 0, "timeout": 0}).json()["revision"]
        assert a.post("/v1/apps", json={"app_name": "heard", "org_slug": "personal"}).status_code == 201
        heard = b.get("/v1/watch", params={"since": since, "timeout": 5}).json()
        assert [e["key"] for e in heard["events"]] == ["heard"] and not heard["reset"]


def test_killing_the_leader_elects_another_and_writes_go_on(trio):
    views = _views(trio)
    leader = next(s for s in trio.info["servers"] if s["url"] == next(v["replica"] for v in views if v["leads"]))
    os.kill(leader["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    survivors = [s["url"] for s in trio.info["servers"] if s is not leader]
    # the CLI, told every replica (the dead one first), fails over to one that answers
    env = {**trio.env, "ROOST_API_URL": ",".join([leader["url"], *survivors])}
    written_after = None
    for i in range(200):  # bounded: 200 tries, 50 ms apart
        with _client(trio, survivors[i % 2]) as c:
            r = c.post("/v1/apps", json={"app_name": f"after-{i}", "org_slug": "personal"})
        if r.status_code == 201:
            written_after = time.monotonic() - killed_at
            break
        assert r.status_code == 503 and r.headers.get("retry-after") == "1", r.text
        time.sleep(0.05)
    print(f"writes again {written_after:.2f} s after the leader was killed")
    assert written_after is not None and written_after < 5.0
    views = _views(trio)
    assert sum(v["leads"] for v in views) == 1 and all(v["replica"] != leader["url"] for v in views if v["leads"])
    listed = subprocess.run([sys.executable, "-m", "roost", "apps", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "via-follower" in listed.stdout


def test_the_leader_killed_during_a_host_failure_starts_the_standby_exactly_once(trio, tmp_path):
    from tests.integration.test_failover import deploy_worker, machine, stale_writes, started_after

    for i, server in enumerate(trio.info["servers"]):  # the replica killed before comes back: three again
        if not pid_alive(server["pid"]):
            server.update(restart_server(trio.spec.data_dir, i))
    trio.workdir = tmp_path
    worker, standby, shared = deploy_worker(trio, "pg-fenced")
    leader = next(s for s in trio.info["servers"]
                  if s["url"] == next(v["replica"] for v in _views(trio) if v["leads"]))
    os.kill(leader["pid"], signal.SIGKILL)  # the control plane's leader and the worker's host, at once
    killed = faults.kill_host(trio.spec.data_dir, worker["host_id"])
    trio.wait_for(lambda: started_after(trio, standby["id"], killed), timeout=20,
                  what="the standby to start under the new leader")
    print(f"standby running {started_after(trio, standby['id'], killed) - killed:.2f} s after both kills")
    time.sleep(3.0)  # a second takeover (by a deposed leader, or decided twice) would have happened by now
    runs = [r for r in faults.runs(trio.spec.data_dir) if r.machine == standby["id"] and r.start >= killed]
    assert len(runs) == 1
    taker = machine(trio, "pg-fenced", standby["id"])
    assert taker["state"] == "started" and taker["roost"]["fencing"]["token"] == 2
    assert stale_writes(shared) == 0


def test_the_kill_server_drill_kills_the_leader_and_reports_what_the_api_saw(trio):
    for i, server in enumerate(trio.info["servers"]):  # three replicas up
        if not pid_alive(server["pid"]):
            server.update(restart_server(trio.spec.data_dir, i))
    assert trio.api.post("/v1/apps", json={"app_name": "drilled", "org_slug": "personal"}).status_code == 201
    result = trio.roost("drill", "kill-server", "-a", "drilled", "--duration", "10s", "--at", "2s",
                        "--heal-after", "5s", "--json", "--data-dir", str(trio.spec.data_dir), check=False,
                        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    c = report["control_plane"]
    print(f"kill-server on 3 replicas: {c}")
    assert c["replicas"] == 3 and c["killed"].startswith("server-") and c["writes"] >= 150
    assert c["writes_lost"] == 0 and c["takeovers_decided_twice"] == 0
    assert c["new_leader"] and c["term_after"] > c["term_before"]
    assert c["new_leader_after_s"] < 5.0 and c["writes_back_after_s"] is not None and c["writes_back_after_s"] < 5.0
    # refused with a retry hint (or cut off in flight at the leader as it died), never a 500
    assert set(c["failed_statuses"]) <= {0, 503}
    leftovers = [a["name"] for a in trio.api.get("/v1/apps").json()["apps"] if a["name"].startswith("drill-")]
    assert leftovers == []  # the probe's apps were cleaned up
    trio.info["servers"] = read_fleet(trio.spec.data_dir)["servers"]  # the healed replica has a new pid
    assert sum(v["leads"] for v in _views(trio)) == 1 and len(_views(trio)) == 3  # healed: all three back
