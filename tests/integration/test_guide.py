"""Issue 12: what Fly's "Resilient apps use multiple Machines" guide promises, on a real fleet (server, agents,
edges and the anycast entry as processes): standbys made any way survive their machine's host, a failed-over
worker survives a deploy and can be handed back, a host's return runs what should run (and not what was
suspended), autostart starts one machine at a time, scale count adds to the primary region, and a drill's
exit status, figures and safety checks tell the truth."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from roost.dev import faults
from roost.dev.fleet import admin_get, restart_agent
from tests.integration.conftest import Fleet
from tests.integration.test_drill import SHORT, drill, host_ok, http_app
from tests.integration.test_failover import deploy_worker, machine, stale_writes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("guide"), ["ams", "ewr", "syd"], 2, proxies=True, idle_interval=3600.0)
    f.push_example("hello:v1")
    f.workdir = tmp_path_factory.mktemp("guide-apps")
    yield f
    faults.heal(f.spec.data_dir)
    f.close()


def machines_of(f: Fleet, app: str) -> list[dict]:
    return f.api.get(f"/v1/apps/{app}/machines").json()


def wait_state(f: Fleet, app: str, mid: str, state: str, timeout: float = 20) -> dict:
    return f.wait_for(lambda: (m := machine(f, app, mid))["state"] == state and m, timeout=timeout,
                      what=f"{mid} {state}")


def runs_of(f: Fleet, mid: str) -> list[faults.Run]:
    return [r for r in faults.runs(f.spec.data_dir) if r.machine == mid]


def edge_metric(f: Fleet, region: str, name: str, labels: str) -> float:
    text = admin_get(f.edge(region), "/metrics").text
    match = re.search(re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)", text)
    return float(match.group(1)) if match else 0.0


# ---- standbys: one placement rule however they are made (cases 2 and 3) ----


def test_every_way_of_making_a_standby_keeps_it_off_the_watched_host(fleet):
    fleet.roost("apps", "create", "solo", "--primary-region", "ams")
    worker = fleet.api.post("/v1/apps/solo/machines", json={
        "config": {"image": "hello:v1", "restart": {"policy": "always"}}, "region": "ams"}).json()
    wait_state(fleet, "solo", worker["id"], "started")
    made = []
    for _ in range(3):
        out = fleet.roost("machine", "run", "hello:v1", "-a", "solo", "-r", "ams", "--standby-for", worker["id"],
                          "--json")
        made.append(json.loads(out.stdout))
    for _ in range(3):  # the guide's own command
        out = fleet.roost("machine", "clone", worker["id"], "-a", "solo", "--standby-for", "source", "--json")
        made.append(json.loads(out.stdout))
    api = fleet.api.post("/v1/apps/solo/machines", json={
        "config": {"image": "hello:v1", "standbys": [worker["id"]]}, "region": "ams", "skip_launch": True})
    assert api.status_code == 200, api.text
    made.append(api.json())
    for m in made:
        assert m["host_id"] != worker["host_id"], f"standby {m['id']} shares {worker['host_id']} with its machine"
        assert m["config"]["standbys"] == [worker["id"]]
        assert m["config"]["env"]["FLY_STANDBY_FOR"] == worker["id"]
        assert m["state"] in ("created", "stopped")
    # a standby starts only by a takeover; cleared, it is an ordinary machine again
    standby = made[3]["id"]
    refused = fleet.roost("machine", "start", standby, "-a", "solo", check=False)
    assert refused.returncode == 1 and "is a standby" in refused.stderr
    fleet.roost("machine", "update", standby, "-a", "solo", "--standby-for", "", "--skip-start")
    cleared = machine(fleet, "solo", standby)
    assert "standbys" not in cleared["config"] and "FLY_STANDBY_FOR" not in cleared["config"]["env"]
    fleet.roost("machine", "start", standby, "-a", "solo")
    wait_state(fleet, "solo", standby, "started")
    # making a machine on the watched machine's own host its standby is refused
    fleet.roost("hosts", "cordon", "ams-2" if worker["host_id"] == "ams-1" else "ams-1")
    try:
        beside = json.loads(fleet.roost("machine", "run", "hello:v1", "-a", "solo", "-r", "ams", "--json").stdout)
    finally:
        fleet.roost("hosts", "uncordon", "ams-2" if worker["host_id"] == "ams-1" else "ams-1")
    assert beside["host_id"] == worker["host_id"]
    bad = fleet.roost("machine", "update", beside["id"], "-a", "solo", "--standby-for", worker["id"], check=False)
    assert bad.returncode == 1 and "a standby must be on another host" in bad.stderr


def test_a_machine_with_services_can_have_a_standby_without_them(fleet):
    fleet.roost("apps", "create", "webby", "--primary-region", "ams")
    web = json.loads(fleet.roost("machine", "run", "hello:v1", "-a", "webby", "-p", "80:8080/tcp:http",
                                 "--json").stdout)
    out = fleet.roost("machine", "clone", web["id"], "-a", "webby", "--standby-for", "source")
    assert "without the source's services" in out.stdout
    standby = next(m for m in machines_of(fleet, "webby") if m["id"] != web["id"])
    assert standby["config"]["standbys"] == [web["id"]] and not standby["config"].get("services")
    assert standby["host_id"] != web["host_id"]
    # asking for both at once is a clear error, through the CLI and the API
    bad = fleet.roost("machine", "run", "hello:v1", "-a", "webby", "-p", "80:8080", "--standby-for", web["id"],
                      check=False)
    assert bad.returncode == 1 and "a standby has no services" in bad.stderr and "Traceback" not in bad.stderr
    r = fleet.api.post("/v1/apps/webby/machines", json={"config": {
        "image": "hello:v1", "standbys": [web["id"]], "services": web["config"]["services"]}})
    assert r.status_code == 400 and "a standby has no services" in r.json()["error"]
    assert len(machines_of(fleet, "webby")) == 2, "nothing was created"


# ---- a failover, a deploy, and handing the work back (cases 4 and 5) ----


def test_a_failed_over_worker_survives_a_deploy_and_can_be_handed_back(fleet):
    worker, standby, shared = deploy_worker(fleet, "relay")
    w, s = worker["id"], standby["id"]
    killed = faults.kill_host(fleet.spec.data_dir, worker["host_id"])
    wait_state(fleet, "relay", s, "started", timeout=10)
    assert machine(fleet, "relay", s)["roost"]["fencing"]["token"] == 2

    # Case 4: the next deploy keeps the group's only running worker running.
    out = fleet.roost("deploy", "-c", str(fleet.workdir / "relay" / "fly.toml"), timeout=120)
    assert f"updated {s}" in out.stdout
    after = machine(fleet, "relay", s)
    assert after["state"] == "started" and after["config"]["standbys"] == [w]
    assert after["config"]["metadata"]["fly_release_version"] == "2"
    deployed = max(e["timestamp"] for e in after["events"] if e["type"] == "update")
    assert not [e for e in after["events"] if e["timestamp"] >= deployed and e["status"] == "stopped"]

    # The host comes back: the replaced worker stays stopped, and keeps saying why.
    restart_agent(fleet.spec.data_dir, worker["host_id"])
    fleet.wait_for(lambda: host_ok(fleet, worker["host_id"]), what="the host back")
    time.sleep(2.0)
    assert machine(fleet, "relay", w)["state"] == "stopped"
    assert [r for r in runs_of(fleet, w) if r.start > killed] == []

    # Case 5: the standby holds the work, so an operator may stop it and start it again...
    fleet.roost("machine", "stop", s, "-a", "relay")
    wait_state(fleet, "relay", s, "stopped")
    fleet.roost("machine", "start", s, "-a", "relay")
    wait_state(fleet, "relay", s, "started")
    # ...and starting the replaced worker hands the work back with a new token.
    handed = time.time()
    fleet.roost("machine", "start", w, "-a", "relay")
    back = wait_state(fleet, "relay", w, "started")
    assert back["roost"]["fencing"]["token"] == 3 and back["roost"]["fencing"]["holder"] == w
    rearmed = machine(fleet, "relay", s)
    assert rearmed["state"] == "stopped" and rearmed["config"]["standbys"] == [w]
    assert "handed the work back" in rearmed["roost"]["note"]
    time.sleep(3.0)  # its agent no longer stops it ("replaced while this host was away")
    assert machine(fleet, "relay", w)["state"] == "started"
    assert faults.overlaps(runs_of(fleet, w), runs_of(fleet, s), since=handed) == []
    fleet.wait_for(lambda: any(line.startswith("3 ") for line in shared.read_text().splitlines()),
                   what="the worker writing with token 3")
    assert stale_writes(shared) == 0
    refused = fleet.roost("machine", "start", s, "-a", "relay", check=False)
    assert refused.returncode == 1 and "is a standby" in refused.stderr


# ---- a host's return (case 6) ----


def test_a_hosts_return_runs_what_ran_and_leaves_suspended_machines_down(fleet):
    fleet.roost("apps", "create", "nap", "--primary-region", "ewr")
    service = {"protocol": "tcp", "internal_port": 8080, "autostop": "suspend", "autostart": True,
               "ports": [{"port": 80, "handlers": ["http"]}]}
    fleet.roost("hosts", "cordon", "ewr-2")
    try:
        sleeper = fleet.api.post("/v1/apps/nap/machines", json={
            "config": {"image": "hello:v1", "services": [service]}, "region": "ewr"}).json()
        plain = fleet.api.post("/v1/apps/nap/machines", json={
            "config": {"image": "hello:v1", "restart": {"policy": "no"}}, "region": "ewr"}).json()
    finally:
        fleet.roost("hosts", "uncordon", "ewr-2")
    assert sleeper["host_id"] == plain["host_id"] == "ewr-1"
    wait_state(fleet, "nap", sleeper["id"], "started")
    wait_state(fleet, "nap", plain["id"], "started")
    fleet.roost("machine", "suspend", sleeper["id"], "-a", "nap")
    wait_state(fleet, "nap", sleeper["id"], "suspended")
    killed = faults.kill_host(fleet.spec.data_dir, "ewr-1")
    restart_agent(fleet.spec.data_dir, "ewr-1")
    fleet.wait_for(lambda: host_ok(fleet, "ewr-1"), what="the host back")
    wait_state(fleet, "nap", plain["id"], "started")  # desired running: it runs again, whatever its policy
    time.sleep(2.0)
    lost = machine(fleet, "nap", sleeper["id"])
    assert lost["state"] == "stopped", "a suspended machine is not woken by its host's return"
    assert [r for r in runs_of(fleet, sleeper["id"]) if r.start > killed] == []
    ended = [r for r in runs_of(fleet, plain["id"]) if r.end is not None and r.start < killed]
    assert ended and all(r.end <= killed + 0.5 for r in ended), "its end is when the host died, not when it came back"
    # it comes back with traffic (autostart), from its kept files
    answer = httpx.get(f"{fleet.edge('ewr')['url']}/", headers={"Host": "nap.localhost"}, timeout=20,
                       trust_env=False)
    assert answer.status_code == 200
    assert machine(fleet, "nap", sleeper["id"])["state"] == "started"


# ---- autostart (case 7) ----


def test_autostart_starts_one_machine_at_a_time(fleet):
    fleet.api.post("/v1/apps", json={"app_name": "lazy", "primary_region": "ams"})
    service = {"protocol": "tcp", "internal_port": 8080, "autostop": "stop", "autostart": True,
               "concurrency": {"type": "requests", "soft_limit": 200},
               "ports": [{"port": 80, "handlers": ["http"]}]}
    ids = []
    for region in ("ams", "ams", "ewr", "ewr"):
        m = fleet.api.post("/v1/apps/lazy/machines", json={
            "config": {"image": "hello:v1", "services": [service]}, "region": region}).json()
        ids.append(m["id"])
    for mid in ids:
        wait_state(fleet, "lazy", mid, "started")
        fleet.api.post(f"/v1/apps/lazy/machines/{mid}/stop")
    for mid in ids:
        wait_state(fleet, "lazy", mid, "stopped")
    for region in ("ams", "ewr"):
        fleet.wait_for(lambda r=region: {x["state"] for x in admin_get(fleet.edge(r), "/routes").json()["apps"]["lazy"]
                                         ["machines"]} == {"stopped"}, what="edges to see every machine stopped")
    statuses: list[int] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=fleet.edge("ams")["url"], headers={"Host": "lazy.localhost"}, timeout=20,
                          trust_env=False) as c:
            for _ in range(n):
                statuses.append(c.get("/").status_code)
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(12,)) for _ in range(8)]  # 96 requests, 8 at a time
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses.count(200) == 96, statuses
    states = {m["id"]: m["state"] for m in machines_of(fleet, "lazy")}
    started = [mid for mid, state in states.items() if state == "started"]
    assert len(started) == 1, states
    assert next(m for m in machines_of(fleet, "lazy") if m["id"] == started[0])["region"] == "ams"
    assert edge_metric(fleet, "ams", "roost_proxy_autostarts_total", 'app="lazy",result="ok"') == 1


def test_cost_bills_stopped_time_as_root_filesystem_only_and_shows_the_saving(fleet):
    """Issue 20: after the traffic above, one of lazy's four machines was started by it and three stayed stopped:
    `roost cost` bills their stopped time as root filesystem storage only and shows what that saved."""
    time.sleep(1.0)  # some stopped time after the burst
    report = json.loads(fleet.roost("cost", "-a", "lazy", "--json").stdout)
    machines = report["machines"]
    assert len(machines) == 4 and report["currency"] == "USD"
    month = 30 * 86400
    prices = report["prices"]
    per_second = (prices["shared_cpu"] + prices["memory_gb"] / 4) / month  # shared-cpu-1x, 256 MB
    for m in machines:
        s = m["seconds"]
        assert s["started"] > 0 and s["stopped"] > 0, m
        assert m["compute"] == pytest.approx(s["started"] * per_second, rel=1e-3, abs=1e-9)
        rootfs = m["size"]["rootfs_gb"] * prices["rootfs_gb"] / month
        assert m["rootfs"] == pytest.approx((s["stopped"] + s["suspended"] + s["standby"]) * rootfs, rel=1e-3,
                                            abs=1e-12), "stopped time: its root filesystem only"
        assert 0 <= m["rootfs"] < m["always_on"] - m["compute"], "storage costs less than running"
    total = report["total"]
    assert total["saved"] > 0 and total["always_on"] == pytest.approx(total["total"] + total["saved"], rel=1e-6)
    assert (report["process_groups"] and "app" in report["process_groups"]) or "" in report["process_groups"]
    text = fleet.roost("cost", "-a", "lazy").stdout
    assert "autostop saved" in text and all(m["id"] in text for m in machines)
    bad = fleet.roost("cost", "-a", "lazy", "--since", "90d", check=False)
    assert bad.returncode != 0 and "since" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert fleet.roost("cost", "-a", "nope", check=False).returncode != 0


# ---- a region outage and its heal on the stack example (case 1, the "done when") ----


@pytest.fixture(scope="module")
def stack(fleet):
    directory = fleet.workdir / "stack"
    shutil.copytree(ROOT / "examples" / "stack", directory)
    fleet.roost("apps", "create", "stack", "--primary-region", "ams")
    fleet.roost("deploy", "-c", str(directory / "fly.toml"), timeout=300)
    return directory


def test_after_a_region_outage_the_worker_or_its_standby_runs_again(fleet, stack):
    ms = machines_of(fleet, "stack")
    worker = next(m for m in ms if m["config"]["metadata"]["fly_process_group"] == "worker"
                  and not m["config"].get("standbys"))
    standby = next(m for m in ms if m["config"].get("standbys"))
    assert standby["host_id"] != worker["host_id"] and worker["region"] == standby["region"] == "ams"
    time.sleep(1.0)  # the worker's host has acknowledged that it is watched
    report = drill(fleet, "kill-region", "-a", "stack", "--target", "ams", "--rps", "20", "--duration", "12s",
                   "--at", "2s", "--heal-after", "4s")
    assert report["double_runs"] == 0 and report["passed"]
    heal = report["heal_time"]
    pair = {worker["id"]: "worker", standby["id"]: "standby"}
    back = [(r.start - heal, pair[r.machine]) for r in faults.runs(fleet.spec.data_dir)
            if r.machine in pair and r.start >= heal]
    assert back and min(t for t, _ in back) < 5.0, f"worker or standby running within 5 s of the heal: {back}"
    runner = min(back)[1]
    w, s = machine(fleet, "stack", worker["id"]), machine(fleet, "stack", standby["id"])
    status = fleet.roost("status", "-a", "stack").stdout
    if runner == "worker":
        assert w["state"] == "started" and s["state"] in ("stopped", "created")
        assert "running again" in w["roost"]["note"] and "running again" in status
        assert any(e["type"] == "start" and "came back" in (e.get("request") or {}).get("reason", "")
                   for e in w["events"])
    else:
        assert s["state"] == "started" and s["roost"]["fencing"]["holder"] == s["id"]
        assert s["roost"]["fencing"]["token"] == 2 and w["state"] == "stopped"
        assert "replaced by standby" in status and "took over" in status
    for host in ("ams-1", "ams-2"):
        fleet.wait_for(lambda h=host: host_ok(fleet, h), what="ams back")


def test_a_standby_in_another_region_takes_over_when_the_whole_region_is_lost(fleet):
    """Issue 17: `deploy --standby-region ewr` puts the worker's standby in ewr; kill-region ams: the standby
    runs within 3 s, the worker is fenced, and after the heal exactly one of them runs."""
    directory = fleet.workdir / "roam"
    shutil.copytree(ROOT / "examples" / "stack", directory)
    (directory / "fly.toml").write_text((directory / "fly.toml").read_text().replace('app = "stack"', 'app = "roam"'))
    fleet.roost("apps", "create", "roam", "--primary-region", "ams")
    fleet.roost("deploy", "-c", str(directory / "fly.toml"), "--standby-region", "ewr", timeout=300)
    ms = machines_of(fleet, "roam")
    worker = next(m for m in ms if m["config"]["metadata"]["fly_process_group"] == "worker"
                  and not m["config"].get("standbys"))
    standby = next(m for m in ms if m["config"].get("standbys"))
    assert worker["region"] == "ams" and standby["region"] == "ewr"
    assert all(m["region"] == "ams" for m in ms if m is not standby)  # only the standby moved
    time.sleep(1.0)  # the worker's host has acknowledged that it is watched
    report = drill(fleet, "kill-region", "-a", "roam", "--target", "ams", "--rps", "5", "--duration", "12s",
                   "--at", "2s", "--heal-after", "6s")
    row = next(r for r in report["standbys"] if r["standby"] == standby["id"])
    assert row["standby_started_after_s"] is not None and row["standby_started_after_s"] < 3.0, row
    assert report["double_runs"] == 0 and row["fencing_token"] == 2
    for host in ("ams-1", "ams-2"):
        fleet.wait_for(lambda h=host: host_ok(fleet, h), what="ams back")
    time.sleep(3.0)  # the returned hosts' recovery rule has run
    w, s = machine(fleet, "roam", worker["id"]), machine(fleet, "roam", standby["id"])
    assert s["state"] == "started" and s["roost"]["fencing"]["holder"] == s["id"]
    assert w["state"] == "stopped", w["state"]
    fleet.roost("apps", "destroy", "roam", "--yes")


def test_deploy_refuses_an_unknown_standby_region(fleet, stack):
    out = fleet.roost("deploy", "-c", str(stack / "fly.toml"), "--standby-region", "zzz", check=False)
    assert out.returncode == 1 and "unknown region 'zzz' for --standby-region" in out.stderr
    assert "Traceback" not in out.stderr


def test_deploying_a_suspended_machine_says_it_ends_stopped(fleet, stack):
    web = next(m for m in machines_of(fleet, "stack") if m["config"]["metadata"]["fly_process_group"] == "web"
               and m["state"] == "started")
    fleet.roost("machine", "suspend", web["id"], "-a", "stack")
    wait_state(fleet, "stack", web["id"], "suspended")
    out = fleet.roost("deploy", "-c", str(stack / "fly.toml"), timeout=300).stdout
    assert f"updated {web['id']} (web, suspended -> stopped" in out, out
    assert machine(fleet, "stack", web["id"])["state"] == "stopped"
    fleet.roost("machine", "start", web["id"], "-a", "stack")


# ---- scale count (case 8) ----


def test_scale_count_without_regions_adds_to_the_primary_region(fleet, stack):
    fleet.roost("scale", "count", "3", "--region", "ams,syd", "-g", "web", "-a", "stack", "--yes", timeout=300)
    assert {m["region"] for m in machines_of(fleet, "stack")} >= {"syd"}
    fleet.roost("scale", "count", "2", "-g", "db", "-a", "stack", "--yes", timeout=300)
    db = [m for m in machines_of(fleet, "stack") if m["config"]["metadata"]["fly_process_group"] == "db"]
    assert [m["region"] for m in db] == ["ams", "ams"], "flyctl adds to the primary region first"
    volumes = fleet.api.get("/v1/apps/stack/volumes").json()
    assert {v["region"] for v in volumes} == {"ams"} and len({v["host_id"] for v in volumes}) == 2


# ---- drills that tell the truth (cases 9 to 12) ----


def test_a_failed_drill_exits_1_through_the_real_cli(fleet):
    fleet.api.post("/v1/apps", json={"app_name": "fragile", "primary_region": "ams"})
    m = fleet.api.post("/v1/apps/fragile/machines", json={"config": {
        "image": "hello:v1", "restart": {"policy": "no"},
        "services": [{"protocol": "tcp", "internal_port": 8080, "autostart": False,
                      "ports": [{"port": 80, "handlers": ["http"]}]}]}, "region": "ams"}).json()
    wait_state(fleet, "fragile", m["id"], "started")
    fleet.wait_for(lambda: any(x["state"] == "started" for x in admin_get(fleet.edge("ams"), "/routes").json()["apps"]
                               .get("fragile", {}).get("machines", [])), what="the edge to know the machine")
    result = fleet.roost("drill", "kill-machine", "-a", "fragile", *SHORT, "--expect-no-errors", "--json",
                         check=False, timeout=120)
    report = json.loads(result.stdout)
    assert not report["passed"] and report["totals"]["failed"] > 0
    assert result.returncode == 1, "a check failed: the command must say so"
    fleet.api.post(f"/v1/apps/fragile/machines/{m['id']}/start")
    wait_state(fleet, "fragile", m["id"], "started")
    text = fleet.roost("drill", "stop-machine", "-a", "fragile", *SHORT, "--expect-shift-under", "1ms",
                       check=False, timeout=120)
    assert "FAIL" in text.stdout and text.returncode == 1


def test_kill_machine_counts_only_what_users_noticed(fleet):
    machines = http_app(fleet, "quick", ["ams", "ams"])
    target = machines[0]["id"]
    report = drill(fleet, "kill-machine", "-a", "quick", "--target", target, "--rps", "40", "--duration", "8s",
                   "--at", "2s")
    fleet.wait_for(lambda: machine(fleet, "quick", target)["state"] == "started", what="the restart")
    during = report["phases"]["during"]
    assert during["by_machine"].get(target, 0) > 0, "the restarted machine serves again"
    assert report["shift"]["seconds"] is not None and report["shift"]["seconds"] < 2, report["shift"]
    assert report["shift"]["affected"] < 0.1 * during["sent"], report["shift"]


def test_a_second_drill_judges_only_its_own_window(fleet):
    worker, standby, _ = deploy_worker(fleet, "twice")
    first = drill(fleet, "kill-host", "-a", "twice", "--duration", "6s", "--at", "1s", "--heal-after", "3s")
    assert first["standbys"][0]["standby_started_after_s"] is not None
    fleet.wait_for(lambda: host_ok(fleet, worker["host_id"]), what="the host back")
    time.sleep(1.0)
    # the standby now holds the work and nobody watches it: the drill targets its host
    second = drill(fleet, "kill-host", "-a", "twice", "--target", standby["host_id"], "--duration", "6s",
                   "--at", "1s", "--heal-after", "2s")
    row = second["standbys"][0]
    assert second["passed"] and second["double_runs"] == 0, "the first drill's overlap is not this one's"
    assert row["standby_started_after_s"] is None, "a heal restarting an active standby is not a takeover"
    fleet.wait_for(lambda: machine(fleet, "twice", standby["id"])["state"] == "started",
                   what="the active standby running again after its host's return")
    fleet.wait_for(lambda: host_ok(fleet, standby["host_id"]), what="the host back")


def test_a_region_failover_costs_the_latency_of_the_region_it_reaches(fleet):
    http_app(fleet, "globe", ["ams", "ewr", "syd"])
    # 15 s after the heal: on the container driver under CI's load, the region's hosts and machines took
    # more than the 9 s this once allowed to serve new clients again
    report = drill(fleet, "kill-region", "-a", "globe", "--target", "ams", "--rps", "40", "--duration", "20s",
                   "--at", "2s", "--heal-after", "3s")
    before, during = report["phases"]["before"], report["phases"]["during"]
    assert before["p50_ms"] < 20
    assert during["by_region"].get("ewr", 0) > 0.8 * during["sent"]
    assert during["p50_ms"] > 60, "ams clients on ewr are ~90 ms away"
    back = report["after_heal"]
    assert back["by_region"].get("ams", 0) > 0 and back["back_after_s"] is not None, back
    for host in ("ams-1", "ams-2"):
        fleet.wait_for(lambda h=host: host_ok(fleet, h), what="ams back")
