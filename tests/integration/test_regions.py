"""Issue 7's end-to-end checks: the closest healthy region, the anycast entry, region headers, fly-replay
and the primary write region, on a fleet with ams, ewr and syd."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from roost.dev import faults
from roost.dev.fleet import admin_get
from tests.integration.conftest import Fleet, needs_host_reach

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"protocol": "tcp", "internal_port": 8080, "autostop": False,
           "ports": [{"port": 80, "handlers": ["http"]}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("world"), ["ams", "ewr", "syd"], 1, proxies=True, idle_interval=3600.0)
    f.push_example("hello:v1")
    f.workdir = tmp_path_factory.mktemp("world-apps")
    yield f
    f.close()


def place(f: Fleet, app: str, regions: list[str]) -> dict[str, dict]:
    f.api.post("/v1/apps", json={"app_name": app, "primary_region": regions[0]})
    out = {}
    for region in regions:
        m = f.api.post(f"/v1/apps/{app}/machines",
                       json={"config": {"image": "hello:v1", "services": [SERVICE]}, "region": region}).json()
        f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        out[region] = m
    for region, m in out.items():
        port = m["roost"]["ports"]["8080"]
        f.wait_for(lambda m=m, port=port: _ok(f"http://{m['private_ip']}:{port}/"), what=f"{region} serving")
    for proxy in f.info["proxies"]:
        f.wait_for(lambda p=proxy: sum(1 for x in admin_get(p, "/routes").json()
                                       ["apps"].get(app, {}).get("machines", []) if x["state"] == "started")
                   == len(regions), what="the edges to know the machines")
    return out


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def via_anycast(f: Fleet, app: str, region: str, **kw) -> httpx.Response:
    return httpx.get(f"{f.info['anycast']['url']}/", headers={"Host": f"{app}.localhost", "Fly-Client-Region": region},
                     timeout=kw.get("timeout", 10), trust_env=False)


def test_clients_land_in_their_own_region(world):
    place(world, "geo", ["ams", "ewr", "syd"])
    for region in ("ams", "ewr", "syd"):
        r = via_anycast(world, "geo", region)
        assert r.status_code == 200 and r.json()["region"] == region, (region, r.text)
    h = httpx.get(f"{world.edge('syd')['url']}/headers", headers={"Host": "geo.localhost"}, trust_env=False).json()
    assert h["fly-region"] == "syd"


def test_the_nearest_region_serves_when_the_edge_has_no_local_machine(world):
    place(world, "far", ["ewr", "syd"])
    began = time.monotonic()
    r = httpx.get(f"{world.edge('ams')['url']}/", headers={"Host": "far.localhost"}, timeout=10, trust_env=False)
    took = time.monotonic() - began
    assert r.json()["region"] == "ewr", "ams -> ewr (~90 ms) beats ams -> syd (~250 ms)"
    assert took >= 0.08, "the dev fleet adds the round-trip time to another region"


def test_region_headers(world):
    machines = place(world, "hdr", ["ams", "ewr", "syd"])
    url = f"{world.edge('ams')['url']}/"
    r = httpx.get(url, headers={"Host": "hdr.localhost", "Fly-Prefer-Region": "syd"}, trust_env=False, timeout=10)
    assert r.json()["region"] == "syd"
    r = httpx.get(url, headers={"Host": "hdr.localhost", "Fly-Prefer-Region": "gru"}, trust_env=False, timeout=10)
    assert r.json()["region"] == "ams", "a preference falls back to the nearest"
    forced = machines["ewr"]["id"]
    for _ in range(5):
        r = httpx.get(url, headers={"Host": "hdr.localhost", "Fly-Force-Instance-Id": forced}, trust_env=False,
                      timeout=10)
        assert r.json()["machine"] == forced


def test_writes_to_a_replica_land_in_the_primary_and_are_read_everywhere(world):
    needs_host_reach("primary-db", "replicates through the edge on the host's loopback", private_network_will_do=True)
    directory = world.workdir / "notes"
    shutil.copytree(ROOT / "examples" / "primary-db", directory)
    text = (directory / "fly.toml").read_text().replace("http://127.0.0.1:4400", world.edge("ams")["url"])
    (directory / "fly.toml").write_text(text)
    world.roost("apps", "create", "notes", "--primary-region", "ams")
    world.roost("deploy", "-c", str(directory / "fly.toml"), timeout=180)
    world.roost("scale", "count", "3", "--region", "ams,ewr,syd", "-a", "notes", "--yes", timeout=180)
    machines = world.api.get("/v1/apps/notes/machines").json()
    assert sorted(m["region"] for m in machines) == ["ams", "ewr", "syd"]
    assert all(m["config"]["env"]["PRIMARY_REGION"] == "ams" for m in machines)
    for proxy in world.info["proxies"]:
        world.wait_for(lambda p=proxy: sum(1 for x in admin_get(p, "/routes").json()
                                           ["apps"].get("notes", {}).get("machines", []) if x["state"] == "started")
                       == 3, what="edges to know the notes machines")
    for region in ("ams", "ewr", "syd"):
        world.wait_for(lambda r=region: _ok(f"{world.edge(r)['url']}/") or True)
    anycast = world.info["anycast"]["url"]
    r = httpx.post(f"{anycast}/items", json={"text": "written in syd"}, trust_env=False, timeout=20,
                   headers={"Host": "notes.localhost", "Fly-Client-Region": "syd"})
    assert r.status_code == 201, r.text
    assert r.json()["region"] == "ams", "the replica's fly-replay sent the write to the primary"
    assert "fly-replay" not in r.headers, "the machine's replay answer is never shown to the client"
    for region in ("ams", "ewr", "syd"):
        def seen(region=region):
            got = httpx.get(f"{anycast}/items", headers={"Host": "notes.localhost", "Fly-Client-Region": region},
                            trust_env=False, timeout=10).json()
            return got["region"] == region and any(i["text"] == "written in syd" for i in got["items"])
        world.wait_for(seen, timeout=15, what=f"the write readable in {region}")


def test_a_region_outage_moves_its_clients_to_the_next_nearest(world):
    place(world, "fail", ["ams", "ewr", "syd"])
    assert via_anycast(world, "fail", "ams").json()["region"] == "ams"
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def clients() -> None:
        with httpx.Client(trust_env=False, timeout=10) as c:
            for _ in range(2000):  # bounded; stopped earlier
                if stop.is_set():
                    return
                try:
                    # a new connection each time, as new clients arrive (anycast routes connections)
                    r = c.get(f"{world.info['anycast']['url']}/", headers={"Host": "fail.localhost",
                              "Fly-Client-Region": "ams", "Connection": "close"})
                    results.append((time.time(), r.status_code, r.json().get("region", "")))
                except (httpx.HTTPError, ValueError):
                    results.append((time.time(), -1, ""))
                time.sleep(0.02)

    t = threading.Thread(target=clients)
    t.start()
    time.sleep(1.0)
    killed = faults.kill_region(world.spec.data_dir, "ams")
    time.sleep(4.0)
    stop.set()
    t.join(30)
    after = [r for r in results if r[0] > killed + 2.0]
    assert after and all(code == 200 and region == "ewr" for _, code, region in after), after[:5]
    before = [r for r in results if r[0] < killed]
    assert before and all(region == "ams" for _, _, region in before)
