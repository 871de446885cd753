"""Issue 8's end-to-end checks: every fault of `roost drill` runs against a real fleet, and each report is
cross-checked against the edges' own counters and the agents' own run records."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest

from roost.dev import faults
from roost.dev.fleet import admin_get
from tests.integration.conftest import Fleet, needs_host_reach
from tests.integration.test_failover import deploy_worker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"protocol": "tcp", "internal_port": 8080, "autostop": False, "autostart": False,
           "ports": [{"port": 80, "handlers": ["http"]}]}
SHORT = ["--rps", "40", "--duration", "6s", "--at", "2s", "--heal-after", "2s"]
CAN_PARTITION = faults.partition_unavailable() is None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("drill"), ["ams", "ewr", "syd"], 2, proxies=True, idle_interval=3600.0)
    f.push_example("hello:v1")
    f.workdir = tmp_path_factory.mktemp("drill-apps")
    yield f
    faults.heal(f.spec.data_dir)
    f.close()


def http_app(f: Fleet, app: str, regions: list[str], balancing: str | None = None) -> list[dict]:
    """An HTTP app with one machine per entry of `regions` (spread over hosts), known to every edge."""
    f.api.post("/v1/apps", json={"app_name": app, "primary_region": regions[0]})
    service = {**SERVICE, "concurrency": {"type": "requests", "soft_limit": 20, "balancing": balancing}} \
        if balancing else SERVICE
    machines = []
    for region in regions:
        m = f.api.post(f"/v1/apps/{app}/machines", json={
            "config": {"image": "hello:v1", "services": [service], "restart": {"policy": "always"}},
            "region": region}).json()
        waited = f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        if waited.status_code != 200:
            now = f.api.get(f"/v1/apps/{app}/machines/{m['id']}").json()
            raise AssertionError(f"machine {m['id']} in {region} on {now.get('host_id')} did not start "
                                 f"({waited.status_code}): {now.get('state')}, events {now.get('events')}")
        machines.append(m)
    assert len({m["host_id"] for m in machines}) == len(machines), "one machine per host"
    seen: dict[str, list] = {}  # what each edge knew last, for the message when it never learns
    for proxy in f.info["proxies"]:
        try:
            f.wait_for(lambda p=proxy: _edge_knows(p, app, len(regions), seen), what="the edges to know the machines")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: edge {proxy['region']} knew {seen}") from None
    for m in machines:
        port = m["roost"]["ports"]["8080"]
        f.wait_for(lambda m=m, port=port: _ok(f"http://{m['private_ip']}:{port}/"), what="machines serving")
    return machines


def _edge_knows(proxy: dict, app: str, started: int, seen: dict[str, list]) -> bool:
    """True once the edge knows `started` started machines of the app; what it knows goes into `seen`."""
    machines = admin_get(proxy, "/routes").json()["apps"].get(app, {}).get("machines", [])
    seen[proxy["region"]] = [(x["id"], x["state"]) for x in machines]
    return sum(1 for x in machines if x["state"] == "started") == started


def host_ok(f: Fleet, host_id: str) -> bool:
    return any(h["id"] == host_id and h["status"] == "ok" for h in f.api.get("/v1/hosts").json())


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def drill(f: Fleet, *args: str, check: bool = True) -> dict:
    result = f.roost("drill", *args, "--json", check=check, timeout=120)
    return json.loads(result.stdout)


def edge_counts(f: Fleet, app: str) -> Counter:
    """Answers per machine, from every edge's own /metrics."""
    counts: Counter = Counter()
    pattern = re.compile(r'roost_proxy_requests_total\{app="([^"]*)",machine="([^"]*)",status="(\d+)"\} (\S+)')
    for proxy in f.info["proxies"]:
        text = admin_get(proxy, "/metrics").text
        for a, machine, status, value in pattern.findall(text):
            if a == app and machine != "-" and int(status) < 500:
                counts[machine] += int(float(value))
    return counts


def test_kill_host_under_a_two_machine_app_fails_no_request(fleet, tmp_path):
    machines = http_app(fleet, "pair", ["ams", "ams"])
    victim, survivor = machines[0]["id"], machines[1]["id"]
    host = machines[0]["host_id"]
    before = edge_counts(fleet, "pair")
    html = tmp_path / "report.html"
    report = drill(fleet, "kill-host", "-a", "pair", "--target", host, *SHORT, "--expect-no-errors",
                   "--expect-shift-under", "2s", "--report", str(html))
    assert report["passed"] and report["totals"]["failed"] == 0, (report["totals"], report["phases"],
                                                                  report.get("shift"))
    assert report["totals"]["sent"] == 240
    assert report["target"]["machines"] == [victim]
    assert set(report["phases"]["before"]["by_machine"]) == {victim, survivor}
    during = report["phases"]["during"]["by_machine"]
    assert during.get(survivor, 0) > 0.9 * report["phases"]["during"]["sent"], during
    assert report["shift"]["seconds"] is not None and report["shift"]["seconds"] < 2
    # The report's attribution is what the edges themselves counted.
    after = edge_counts(fleet, "pair")
    assert {m: after[m] - before[m] for m in after if after[m] - before[m]} == report["totals"]["by_machine"]
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "kill-host" in page and "<script" not in page
    fleet.wait_for(lambda: host_ok(fleet, host), what="the host back")


def test_stop_kill_and_slow_machine(fleet):
    machines = http_app(fleet, "trio", ["ams", "ams"])
    first, second = machines[0]["id"], machines[1]["id"]
    stopped = drill(fleet, "stop-machine", "-a", "trio", "--target", first, *SHORT, "--expect-no-errors")
    assert stopped["totals"]["failed"] == 0 and stopped["passed"]
    assert stopped["heal"] == "start the machine again"
    late = [b for b in stopped["timeline"]["buckets"] if 2.5 <= b["start"] < 4.0]
    assert all(first not in b["ok"] for b in late), "a stopped machine serves nothing"
    fleet.wait_for(lambda: fleet.api.get(f"/v1/apps/trio/machines/{first}").json()["state"] == "started",
                   what="the heal to start it again")

    killed = drill(fleet, "kill-machine", "-a", "trio", "--target", second, *SHORT)
    assert killed["heal"] is None and killed["heal_at_s"] is None
    ends = [r for r in faults.runs(fleet.spec.data_dir) if r.machine == second and r.end is not None]
    assert ends, "the agent recorded the killed process's end"
    fleet.wait_for(lambda: fleet.api.get(f"/v1/apps/trio/machines/{second}").json()["state"] == "started",
                   what="the restart policy to bring it back")

    slow = drill(fleet, "slow-machine", "-a", "trio", "--target", first, *SHORT)
    assert slow["phases"]["during"]["max_ms"] > 100, "answers from the frozen machine wait"
    assert slow["phases"]["after"]["failed"] == 0
    assert slow["heal"] == "let the machine run at full speed again"


def share_after_first_second(report: dict, machine_id: str) -> float:
    since, until = report["fault_at_s"] + 1.0, report["heal_at_s"]
    width = report["timeline"]["width_s"]
    buckets = [b for b in report["timeline"]["buckets"] if b["start"] >= since and b["start"] + width <= until]
    total = sum(sum(b["ok"].values()) for b in buckets)
    return sum(b["ok"].get(machine_id, 0) for b in buckets) / total


def test_a_slow_machine_gets_few_requests_unless_the_service_asks_for_flys_random_rule(fleet):
    """Issue 17: latency-aware balancing (the default) against Fly's rule, on the same fault."""
    long = ["--rps", "50", "--duration", "8s", "--at", "2s", "--heal-after", "4s"]
    fast = http_app(fleet, "quick2", ["ams", "ams"])
    report = drill(fleet, "slow-machine", "-a", "quick2", "--target", fast[0]["id"], *long)
    assert share_after_first_second(report, fast[0]["id"]) <= 0.10
    assert report["phases"]["during"]["p99_ms"] < 100, report["phases"]["during"]
    fly = http_app(fleet, "flyrule", ["ams", "ams"], balancing="random")
    report = drill(fleet, "slow-machine", "-a", "flyrule", "--target", fly[0]["id"], *long)
    # Random among machines under soft_limit: about half each (a paused app that refused connections, with
    # a listen backlog of 5, got ejected and kept a quarter or none)
    assert share_after_first_second(report, fly[0]["id"]) >= 0.3
    assert report["phases"]["during"]["p99_ms"] > 100


def test_kill_server_leaves_traffic_alone(fleet):
    http_app(fleet, "calm", ["ams", "ewr"])
    report = drill(fleet, "kill-server", "-a", "calm", *SHORT, "--expect-no-errors")
    assert report["passed"] and report["totals"]["failed"] == 0
    assert report["target"]["kind"] == "server" and report["heal_at_s"] is not None
    assert fleet.api.get("/v1/apps/calm/machines").status_code == 200, "the control plane is back"


def test_kill_region_shifts_to_the_next_nearest(fleet):
    http_app(fleet, "world", ["ams", "ewr", "syd"])
    report = drill(fleet, "kill-region", "-a", "world", "--target", "ams", "--rps", "40", "--duration", "8s",
                   "--at", "2s", "--heal-after", "3s")
    assert report["target"]["kind"] == "region" and "anycast" in report["entry"]
    assert report["phases"]["before"]["by_region"] == {"ams": report["phases"]["before"]["ok"]}
    during = report["phases"]["during"]["by_region"]
    assert during.get("ewr", 0) > 0.8 * report["phases"]["during"]["sent"], during
    assert "syd" not in during, "ams clients go to the next nearest region (ewr ~90 ms), not syd (~250 ms)"
    assert report["shift"]["seconds"] is not None and report["shift"]["seconds"] < 3
    assert report["phases"]["after"]["ok"] > 0
    assert report["timeline"]["series_by"] == "region"
    for host in ("ams-1", "ams-2"):
        fleet.wait_for(lambda h=host: host_ok(fleet, h), what="ams back")


def test_kill_host_under_a_worker_reports_the_takeover(fleet):
    worker, standby, _ = deploy_worker(fleet, "crunch")
    report = drill(fleet, "kill-host", "-a", "crunch", "--duration", "6s", "--at", "1s", "--heal-after", "4s")
    assert report["target"]["name"] == worker["host_id"], "the drill picks the watched machine's host"
    assert report["rps"] == 0 and any("no services" in n for n in report["notes"])
    row = report["standbys"][0]
    assert row["standby"] == standby["id"] and row["hit"]
    assert row["standby_started_after_s"] is not None and row["standby_started_after_s"] < 3
    assert row["fencing_token"] == 2 and row["double_runs"] == 0 and report["double_runs"] == 0
    # cross-check with the agents' own records
    first = min(r.start for r in faults.runs(fleet.spec.data_dir)
                if r.machine == standby["id"] and r.start >= report["fault_time"])
    assert abs(first - report["fault_time"] - row["standby_started_after_s"]) < 0.002
    fleet.wait_for(lambda: host_ok(fleet, worker['host_id']),
                   what="the host back")


@pytest.mark.skipif(not CAN_PARTITION, reason="partitions need root and iptables")
def test_partition_host_shows_fencing(fleet):
    worker, _, _ = deploy_worker(fleet, "island")
    report = drill(fleet, "partition-host", "-a", "island", "--duration", "6s", "--at", "1s", "--heal-after", "4s")
    row = report["standbys"][0]
    assert row["watched_end_reason"] == "fenced", row
    assert row["standby_started_after_s"] > row["watched_ended_after_s"], "fenced before the standby started"
    assert row["double_runs"] == 0 and row["fencing_token"] >= 2 and report["passed"]
    fleet.wait_for(lambda: host_ok(fleet, worker['host_id']),
                   what="the host back")


@pytest.mark.skipif(not CAN_PARTITION, reason="partitions need root and iptables")
def test_partition_host_under_an_http_app_fails_no_get(fleet):
    """The cut-off host never answers nor resets: the edge gives up on it when the control plane declares it
    unreachable (and on new connections after the connect timeout) and retries on the other machine."""
    machines = http_app(fleet, "moat", ["ams", "ams"])
    host = machines[0]["host_id"]
    report = drill(fleet, "partition-host", "-a", "moat", "--target", host, "--rps", "40", "--duration", "8s",
                   "--at", "2s", "--heal-after", "4s", "--expect-no-errors")
    assert report["passed"] and report["totals"]["failed"] == 0, report["totals"]
    assert report["phases"]["during"]["max_ms"] < 4000, report["phases"]["during"]
    assert report["shift"]["seconds"] is not None and report["shift"]["seconds"] < 4
    fleet.wait_for(lambda: host_ok(fleet, host), what="the host back")


def test_primary_region_writes_survive_a_killed_primary(fleet):
    needs_host_reach("primary-db", "replicates through the edge on the host's loopback", private_network_will_do=True)
    directory = fleet.workdir / "notes"
    shutil.copytree(ROOT / "examples" / "primary-db", directory)
    text = (directory / "fly.toml").read_text().replace("http://127.0.0.1:4400", fleet.edge("ams")["url"])
    (directory / "fly.toml").write_text(text.replace('app = "notes"', 'app = "ledger"').replace(
        'source = "notes"', 'source = "ledger"'))
    fleet.roost("apps", "create", "ledger", "--primary-region", "ams")
    fleet.roost("deploy", "-c", str(directory / "fly.toml"), timeout=180)
    fleet.roost("scale", "count", "2", "--region", "ams,ewr", "-a", "ledger", "--yes", timeout=180)
    for proxy in fleet.info["proxies"]:
        fleet.wait_for(lambda p=proxy: sum(1 for x in admin_get(p, "/routes").json()
                                           ["apps"].get("ledger", {}).get("machines", []) if x["state"] == "started")
                       == 2, what="edges to know the ledger machines")
    report = drill(fleet, "kill-host", "-a", "ledger", "--method", "POST", "--path", "/items",
                   "--check-writes", "/items", "--rps", "20", "--duration", "6s", "--at", "2s", "--heal-after", "2s")
    primary = next(m for m in fleet.api.get("/v1/apps/ledger/machines").json() if m["region"] == "ams")
    assert report["target"]["name"] == primary["host_id"]
    w = report["writes"]
    assert w["acknowledged"] > 40 and w["lost"] == 0, w
    assert any(c["name"] == "acknowledged writes lost" and c["passed"] for c in report["checks"])
    fleet.wait_for(lambda: host_ok(fleet, primary["host_id"]), what="the host back")


def test_the_drill_refuses_what_is_not_its_fleet(fleet):
    http_app(fleet, "safe", ["ewr"])
    for args, message in ((["kill-host", "--target", "db-9"], "no host 'db-9' in this fleet"),
                          (["kill-region", "--target", "fra"], "no region 'fra' in this fleet"),
                          (["stop-machine", "--target", "0000"], "no machine '0000'"),
                          (["kill-server", "--target", "ams-1"],
                           "no replica 'ams-1'" if len(fleet.servers) > 1 else "takes no --target"),
                          (["melt-host"], "unknown fault 'melt-host'"),
                          (["kill-host", "--at", "40s"], "--at must fall inside the drill"),
                          (["kill-host", "--client-region", "mars"], "not a region code"),
                          (["kill-host", "--rps", "5000"], "--rps must be between")):
        result = fleet.roost("drill", args[0], "-a", "safe", *args[1:], check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = fleet.roost("drill", "kill-host", "-a", "nope", check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
