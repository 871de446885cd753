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
