"""Issue 20: the control plane's /metrics on a real fleet: behind a credential (an operator's or a read-only
token, not an edge's), every name docs/metrics.md lists for the server, the fleet gauges as they are, and the
API's requests counted by route template."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.conftest import ROOT, Fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mfleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("metrics"), ["ams"], 2)
    yield f
    f.close()


def scrape(f: Fleet, token: str | None) -> httpx.Response:
    """The leader's metrics (with several replicas, heartbeats and takeovers are counted where they are decided)."""
    leader = f.api.get("/v1/control-plane").json().get("leader") or f.url
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{leader.rstrip('/')}/metrics", headers=headers, verify=f.verify, trust_env=False, timeout=10)


def test_the_servers_metrics_need_a_credential_and_list_what_the_docs_say(mfleet):
    f = mfleet
    assert scrape(f, None).status_code == 401
    edge = f.api.post("/v1/tokens", json={"kind": "edge", "name": "an edge"}).json()["token"]
    assert scrape(f, edge).status_code == 403, "an edge's token routes; it reads no fleet metrics"
    readonly = f.api.post("/v1/tokens", json={"kind": "readonly", "name": "prometheus"}).json()["token"]
    assert f.api.post("/v1/apps", json={"app_name": "metered", "primary_region": "ams"}).status_code == 201
    leader = f.api.get("/v1/control-plane").json().get("leader") or f.url
    for _ in range(3):
        assert httpx.get(f"{leader.rstrip('/')}/v1/apps/metered/machines", verify=f.verify, trust_env=False,
                         headers={"Authorization": f"Bearer {f.token}"}, timeout=10).status_code == 200
    text = scrape(f, readonly).text
    documented = set(re.findall(r"^\| `(roost_(?:server_\w+|machines|hosts))` \|",
                                (ROOT / "docs" / "metrics.md").read_text(), re.M))
    assert len(documented) >= 9
    for name in documented:
        assert re.search(rf"^# HELP {name} ", text, re.M), f"{name} not served"
    assert 'roost_hosts{region="ams",status="ok"} 2.0' in text
    served = re.search(r'^roost_server_api_requests_total\{method="GET",route="/v1/apps/\{app\}/machines",'
                       r'status="200"\} (\d+)', text, re.M)
    assert served and int(served.group(1)) >= 3, "counted by the route's template, not the path"
    assert re.search(r'^roost_server_api_requests_total\{method="GET",route="\(unrouted\)",status="401"\}', text,
                     re.M), "the refused scrape itself"
    beats = re.search(r"^roost_server_heartbeats_total (\S+)", text, re.M)
    assert beats and float(beats.group(1)) > 0
    f.api.delete("/v1/apps/metered")


def test_every_agent_serves_its_machines_and_their_apps_metrics(mfleet):
    f = mfleet
    f.push_example("hello:v1")
    assert f.api.post("/v1/apps", json={"app_name": "counted", "primary_region": "ams"}).status_code == 201
    service = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}
    m = f.api.post("/v1/apps/counted/machines", json={"region": "ams", "config": {
        "image": "hello:v1", "services": [service], "metrics": {"port": 8080, "path": "/metrics"}}}).json()
    f.api.get(f"/v1/apps/counted/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    port = m["roost"]["ports"]["8080"]
    f.wait_for(lambda: _hits(f"http://{m['private_ip']}:{port}/"), what="the machine serving")
    agent_url = next(h["agent_url"] for h in f.api.get("/v1/hosts").json() if h["id"] == m["host_id"])

    def agent_scrape(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{agent_url}/metrics", headers=headers, verify=f.verify, trust_env=False, timeout=10)

    assert agent_scrape(None).status_code == 401
    edge = f.api.post("/v1/tokens", json={"kind": "edge", "name": "edge 2"}).json()["token"]
    readonly = f.api.post("/v1/tokens", json={"kind": "readonly", "name": "prometheus 2"}).json()["token"]
    # The host learns both tokens' digests with its next heartbeat answer.
    f.wait_for(lambda: agent_scrape(readonly).status_code == 200, what="the agent to know the read-only token")
    assert agent_scrape(edge).status_code == 403, "an edge starts and stops machines; it reads no metrics"
    text = agent_scrape(f.token).text
    documented = set(re.findall(r"^\| `(roost_agent_\w+)` \|", (ROOT / "docs" / "metrics.md").read_text(), re.M))
    assert len(documented) >= 14
    for name in documented:
        assert re.search(rf"^# HELP {name} ", text, re.M), f"{name} not served"
    labels = f'app="counted",machine="{m["id"]}"'
    cpu = re.search(rf"^roost_agent_machine_cpu_seconds_total\{{{labels}\}} (\S+)", text, re.M)
    memory = re.search(rf"^roost_agent_machine_memory_bytes\{{{labels}\}} (\S+)", text, re.M)
    assert cpu and float(cpu.group(1)) > 0 and memory and float(memory.group(1)) > 1e6, "read from its cgroup"
    assert re.search(r'^roost_agent_machine_starts_total\{app="counted",result="started"\} 1\.0', text, re.M)
    # The app's own counter, scraped from its [metrics] port and labelled with where it runs.
    hits = re.search(rf'^hello_hits_total\{{{labels},region="ams"\}} (\S+)', text, re.M)
    assert hits and float(hits.group(1)) >= 1, text[-2000:]
    assert re.search(r'^roost_agent_app_scrapes_total\{app="counted",result="ok"\} ', text, re.M)
    # The scheduler's answers, on the server: this placement, and a refusal for a region no host is in.
    assert f.api.post("/v1/apps/counted/machines",
                      json={"region": "zzz", "config": {"image": "hello:v1"}}).status_code == 400
    server = "".join(httpx.get(f"{url.rstrip('/')}/metrics", headers={"Authorization": f"Bearer {readonly}"},
                               verify=f.verify, trust_env=False, timeout=10).text for url in f.servers)
    assert re.search(r'^roost_server_placements_total\{region="ams",result="placed"\} [1-9]', server, re.M)
    assert re.search(r'^roost_server_placements_total\{region="\(unknown\)",result="refused"\} 1\.0', server, re.M)
    f.api.delete("/v1/apps/counted", params={"force": "true"})


def _hits(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_malformed_price_table_is_refused_at_start_with_its_line(tmp_path):
    import subprocess
    import sys

    table = tmp_path / "prices.toml"
    table.write_text("[compute]\nshared_cpu = 0.5\nmemory_gb = \"five\"\n")
    result = subprocess.run([sys.executable, "-m", "roost", "server", "--prices", str(table), "--data-dir",
                             str(tmp_path / "server")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and f"{table}:3:" in result.stderr and "memory_gb" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "server").exists(), "refused before start"
