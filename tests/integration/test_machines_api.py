"""Issue 2's end-to-end check: an HTTP-only client drives the Machines API against a real server and agent."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import TEST_DRIVER

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(fleet):
    fleet.push_example("hello:v1")
    r = fleet.api.post("/v1/apps", json={"app_name": "api-test", "org_slug": "personal"})
    assert r.status_code == 201, r.text
    return "api-test"


CONFIG = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp",
                                             "ports": [{"port": 80, "handlers": ["http"]}], "autostop": "suspend"}],
          "x-client-extra": {"kept": True}}


def test_auth_is_required_everywhere(fleet):
    for path in ("/v1/apps", "/v1/hosts", "/v1/watch", "/v1/apps/x/machines"):
        r = httpx.get(fleet.url + path, trust_env=False, verify=fleet.verify)
        assert r.status_code == 401 and "error" in r.json()
    r = httpx.get(fleet.url + "/v1/apps", headers={"Authorization": "Bearer wrong"}, trust_env=False,
                  verify=fleet.verify)
    assert r.status_code == 401


def test_apps(fleet, app):
    assert fleet.api.get(f"/v1/apps/{app}").json()["name"] == app
    listing = fleet.api.get("/v1/apps", params={"org_slug": "personal"}).json()
    assert app in [a["name"] for a in listing["apps"]] and listing["total_apps"] >= 1
    assert fleet.api.get("/v1/apps", params={"org_slug": "other"}).json()["total_apps"] == 0
    r = fleet.api.post("/v1/apps", json={"app_name": app, "org_slug": "personal"})
    assert r.status_code == 422 and "taken" in r.json()["error"]
    r = fleet.api.post("/v1/apps", json={"app_name": "Bad Name!"})
    assert r.status_code == 400
    assert fleet.api.get("/v1/apps/nope").status_code == 404


def test_machine_lifecycle_over_http(fleet, app):
    api = fleet.api
    r = api.post(f"/v1/apps/{app}/machines", json={"config": CONFIG, "name": "web-1", "region": "ams"})
    assert r.status_code == 200, r.text
    m = r.json()
    assert re.fullmatch(r"[0-9a-f]{14}", m["id"])
    for key in ("id", "name", "state", "region", "instance_id", "private_ip", "config", "image_ref", "created_at",
                "updated_at", "events", "checks", "host_status"):
        assert key in m, key
    assert m["config"]["x-client-extra"] == {"kept": True}, "unknown config keys are returned unchanged"
    assert m["config"]["services"][0]["autostop"] == "suspend"
    assert m["image_ref"]["repository"] == "hello" and m["image_ref"]["digest"].startswith("sha256:")
    assert m["host_status"] == "ok"
    mid = m["id"]

    r = api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 30})
    assert r.status_code == 200 and r.json()["ok"] is True
    m = api.get(f"/v1/apps/{app}/machines/{mid}").json()
    assert m["state"] == "started"
    port = m["roost"]["ports"]["8080"]
    body = fleet.wait_for(lambda: _get(f"http://{m['private_ip']}:{port}/"), what="app answering")
    assert body["machine"] == mid and body["app"] == app

    # list with filters
    assert [x["id"] for x in api.get(f"/v1/apps/{app}/machines", params={"region": "ams"}).json()] == [mid]
    assert api.get(f"/v1/apps/{app}/machines", params={"region": "syd"}).json() == []
    summary = api.get(f"/v1/apps/{app}/machines", params={"summary": "true"}).json()
    assert "events" not in summary[0]

    # metadata
    assert api.post(f"/v1/apps/{app}/machines/{mid}/metadata/role", json={"value": "primary"}).status_code == 204
    assert api.get(f"/v1/apps/{app}/machines/{mid}/metadata").json() == {"role": "primary"}
    assert [x["id"] for x in api.get(f"/v1/apps/{app}/machines", params={"metadata.role": "primary"}).json()] == [mid]
    assert api.delete(f"/v1/apps/{app}/machines/{mid}/metadata/role").status_code == 204
    assert api.get(f"/v1/apps/{app}/machines/{mid}/metadata/role").status_code == 404

    # update: a new instance id, the running machine restarts with the new config
    old_instance = m["instance_id"]
    new_config = {**m["config"], "env": {"GREETING": "hi"}}
    r = api.post(f"/v1/apps/{app}/machines/{mid}", json={"config": new_config})
    assert r.status_code == 200, r.text
    assert r.json()["instance_id"] != old_instance
    assert api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 30}).status_code == 200
    versions = api.get(f"/v1/apps/{app}/machines/{mid}/versions").json()
    assert versions[0]["version"] == r.json()["instance_id"] and versions[1]["version"] == old_instance
    # PUT works too
    assert api.put(f"/v1/apps/{app}/machines/{mid}", json={"config": new_config}).status_code == 200
    api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 30})

    # stop with a signal and timeout
    r = api.post(f"/v1/apps/{app}/machines/{mid}/stop", json={"signal": "SIGTERM", "timeout": "5s"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "stopped", "timeout": 30}).status_code == 200

    # illegal moves change nothing
    r = api.post(f"/v1/apps/{app}/machines/{mid}/suspend")
    assert r.status_code == 412 and "stopped" in r.json()["error"]
    r = api.post(f"/v1/apps/{app}/machines/{mid}/signal", json={"signal": "SIGHUP"})
    assert r.status_code == 412
    assert api.get(f"/v1/apps/{app}/machines/{mid}").json()["state"] == "stopped"

    # start again, suspend, resume by start
    r = api.post(f"/v1/apps/{app}/machines/{mid}/start")
    assert r.status_code == 200 and r.json()["previous_state"] == "stopped"
    api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 30})
    assert api.post(f"/v1/apps/{app}/machines/{mid}/suspend").status_code == 200
    r = api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "suspended", "timeout": 30})
    assert r.status_code == 200
    assert api.post(f"/v1/apps/{app}/machines/{mid}/start").json()["previous_state"] == "suspended"
    assert api.get(f"/v1/apps/{app}/machines/{mid}").json()["state"] == "started"

    # signal by name and by number
    assert api.post(f"/v1/apps/{app}/machines/{mid}/signal", json={"signal": "SIGHUP"}).status_code in (200, 412)
    api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 30})

    # wait that times out: 408
    began = time.monotonic()
    r = api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "destroyed", "timeout": 1})
    assert r.status_code == 408 and time.monotonic() - began >= 0.9
    # flyctl's extra wait parameters are accepted
    r = api.get(f"/v1/apps/{app}/machines/{mid}/wait",
                params={"state": "started", "timeout": 5, "version": m["instance_id"], "from_event_id": "x"})
    assert r.status_code == 200
    assert api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "sleeping"}).status_code == 400

    # cordon and events
    assert api.post(f"/v1/apps/{app}/machines/{mid}/cordon").status_code == 200
    assert api.get(f"/v1/apps/{app}/machines/{mid}").json()["cordoned"] is True
    assert api.post(f"/v1/apps/{app}/machines/{mid}/uncordon").status_code == 200
    events = api.get(f"/v1/apps/{app}/machines/{mid}/events").json()
    assert events[0]["timestamp"] >= events[-1]["timestamp"], "newest first"
    assert {"launch", "start", "stop", "update", "suspend"} <= {e["type"] for e in events}
    assert all(e["source"] in ("user", "flyd") for e in events)

    # destroy: refused while running, forced with kill=true (flyctl's flag)
    r = api.delete(f"/v1/apps/{app}/machines/{mid}")
    assert r.status_code == 412
    assert api.delete(f"/v1/apps/{app}/machines/{mid}", params={"kill": "true"}).status_code == 200
    assert api.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "destroyed"}).status_code == 200
    assert api.get(f"/v1/apps/{app}/machines").json() == []
    assert [x["id"] for x in api.get(f"/v1/apps/{app}/machines", params={"include_deleted": "true"}).json()] == [mid]
    r = api.post(f"/v1/apps/{app}/machines/{mid}/start")
    assert r.status_code == 412 and "destroyed" in r.json()["error"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{m['private_ip']}:{port}/", timeout=1, trust_env=False)


def test_leases(fleet, app):
    api = fleet.api
    m = api.post(f"/v1/apps/{app}/machines", json={"config": CONFIG, "skip_launch": True, "lease_ttl": 30}).json()
    mid, nonce = m["id"], m["nonce"]
    assert m["state"] == "created"
    # a write without the nonce is refused while leased
    r = api.post(f"/v1/apps/{app}/machines/{mid}/cordon")
    assert r.status_code == 409 and "fly-machine-lease-nonce" in r.json()["error"]
    r = api.post(f"/v1/apps/{app}/machines/{mid}/lease", json={"ttl": 10})
    assert r.status_code == 409
    lease = api.get(f"/v1/apps/{app}/machines/{mid}/lease").json()
    assert lease["status"] == "success" and lease["data"]["nonce"] == nonce
    # with the nonce: writes pass, refresh keeps the nonce (flyctl sends ttl as a query parameter)
    headers = {"fly-machine-lease-nonce": nonce}
    assert api.post(f"/v1/apps/{app}/machines/{mid}/cordon", headers=headers).status_code == 200
    r = api.post(f"/v1/apps/{app}/machines/{mid}/lease", params={"ttl": 60}, headers=headers)
    assert r.status_code == 200 and r.json()["data"]["nonce"] == nonce
    # release needs the nonce
    assert api.delete(f"/v1/apps/{app}/machines/{mid}/lease").status_code == 400
    bad = {"fly-machine-lease-nonce": "bad"}
    assert api.delete(f"/v1/apps/{app}/machines/{mid}/lease", headers=bad).status_code == 409
    assert api.delete(f"/v1/apps/{app}/machines/{mid}/lease", headers=headers).json()["data"]["ok"] is True
    assert api.get(f"/v1/apps/{app}/machines/{mid}/lease").status_code == 404
    # a fresh lease comes back 201 with a new nonce
    r = api.post(f"/v1/apps/{app}/machines/{mid}/lease", json={"ttl": 5, "description": "deploy"})
    assert r.status_code == 201 and r.json()["data"]["nonce"] != nonce
    api.delete(f"/v1/apps/{app}/machines/{mid}", headers={"fly-machine-lease-nonce": r.json()["data"]["nonce"]})


def test_bad_input_is_a_clear_4xx_and_changes_nothing(fleet, app):
    api = fleet.api
    before = api.get(f"/v1/apps/{app}/machines").json()
    cases = [
        ({"config": {"image": "nope:v9"}}, 422, "not found"),
        ({"config": {"image": "hello:v1"}, "region": "xyz"}, 400, "unknown region"),
        ({"config": {"image": "hello:v1", "guest": {"cpus": 1, "memory_mb": 10_000_000}}}, 400, "memory_mb"),
        ({"config": {"image": "hello:v1", "guest": {"cpus": 64, "memory_mb": 262144}}}, 412, "insufficient"),
        ({"config": {"image": "hello:v1", "services": [{"internal_port": "x"}]}}, 400, "internal_port"),
        ({"config": "nope"}, 400, "config"),
        ({}, 400, "config"),
    ]
    for body, status, words in cases:
        r = api.post(f"/v1/apps/{app}/machines", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"], (body, r.text)
    r = api.post(f"/v1/apps/{app}/machines", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = api.post(f"/v1/apps/{app}/machines/{'0' * 14}/stop", content=b"[1,2]")
    assert r.status_code in (400, 404)
    capacity = api.post(f"/v1/apps/{app}/machines",
                        json={"config": {"image": "hello:v1", "guest": {"cpus": 64, "memory_mb": 262144}}}).json()
    assert capacity["status"] == "insufficient_capacity"
    assert api.get(f"/v1/apps/{app}/machines").json() == before


# Where the machine sees its volume: at /data in a container; beside it on the process driver, which runs in
# a directory of the host (/data there would be the host's).
VOLUME_FILE = "/data/file" if TEST_DRIVER == "container" else "data/file"


def test_volumes(fleet, app):
    api = fleet.api
    r = api.post(f"/v1/apps/{app}/volumes", json={"name": "data", "region": "ams", "size_gb": 1})
    assert r.status_code == 200, r.text
    vol = r.json()
    assert vol["id"].startswith("vol_") and vol["size_gb"] == 1 and vol.get("attached_machine_id") is None
    assert api.get(f"/v1/apps/{app}/volumes/{vol['id']}").json()["name"] == "data"
    assert [v["id"] for v in api.get(f"/v1/apps/{app}/volumes").json()] == [vol["id"]]
    r = api.put(f"/v1/apps/{app}/volumes/{vol['id']}/extend", json={"size_gb": 2})
    assert r.status_code == 200 and r.json()["volume"]["size_gb"] == 2
    assert api.put(f"/v1/apps/{app}/volumes/{vol['id']}/extend", json={"size_gb": 1}).status_code == 400
    config = {"image": "hello:v1", "mounts": [{"volume": vol["id"], "path": "/data"}],
              "init": {"cmd": ["sh", "-c", f"echo persisted > {VOLUME_FILE}; exec sleep 60"]}}
    m = api.post(f"/v1/apps/{app}/machines", json={"config": config}).json()
    assert api.get(f"/v1/apps/{app}/volumes/{vol['id']}").json()["attached_machine_id"] == m["id"]
    # one machine per volume
    r = api.post(f"/v1/apps/{app}/machines", json={"config": config})
    assert r.status_code == 412 and "attached" in r.json()["error"]
    r = api.delete(f"/v1/apps/{app}/volumes/{vol['id']}")
    assert r.status_code == 412
    api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    host = next(h for h in fleet.info["hosts"] if h["id"] == m["host_id"])
    data = Path(host["data_dir"]) / "volumes" / vol["id"]
    fleet.wait_for(lambda: (data / "file").exists(), what="the machine's write on its volume")
    # the host itself refuses to delete the data of a volume a machine runs on
    r = httpx.delete(f"{host['agent_url']}/v1/volumes/{vol['id']}", trust_env=False, verify=fleet.verify,
                     headers=fleet.agent_headers)
    assert r.status_code == 409 and "in use" in r.json()["error"] and data.exists()
    api.delete(f"/v1/apps/{app}/machines/{m['id']}", params={"force": "true"})
    assert api.get(f"/v1/apps/{app}/volumes/{vol['id']}").json().get("attached_machine_id") is None
    assert data.exists()  # destroying the machine keeps the volume's data
    assert api.delete(f"/v1/apps/{app}/volumes/{vol['id']}").status_code == 200
    assert api.get(f"/v1/apps/{app}/volumes/{vol['id']}").status_code == 404
    assert not data.exists()  # destroying the volume deletes it on its host
    assert api.post(f"/v1/apps/{app}/volumes", json={"name": "Bad-Name"}).status_code == 400


def test_a_volume_holds_its_size_and_grows(fleet, app):
    """size_gb is a fixed-size filesystem: a machine writing past it gets ENOSPC and the host's own disk is
    untouched; `volumes extend` grows it (live, or at the machine's next start where the kernel refuses)."""
    api = fleet.api
    vol = api.post(f"/v1/apps/{app}/volumes", json={"name": "sized", "region": "ams", "size_gb": 1}).json()
    host = fleet.host(vol["zone"])
    data = Path(host["data_dir"]) / "volumes" / vol["id"]
    image = Path(host["data_dir"]) / "volume-images" / f"{vol['id']}.img"
    assert os.path.ismount(data), "the volume is made on its host when created"
    assert 0.9 * 1024**3 < capacity(data) <= 1024**3
    fill = VOLUME_FILE.replace("file", "fill")
    script = (f"out=$(dd if=/dev/zero of={fill} bs=1M count=1100 2>&1); rc=$?; rm -f {fill}; "
              f"echo \"$rc $out\" > {VOLUME_FILE}; exec sleep 60")
    config = {"image": "hello:v1", "mounts": [{"volume": vol["id"], "path": "/data"}],
              "init": {"cmd": ["sh", "-c", script]}}
    m = api.post(f"/v1/apps/{app}/machines", json={"config": config}).json()
    result = fleet.wait_for(lambda: (data / "file").exists() and (data / "file").read_text(), timeout=60,
                            what="the machine's write past its volume's size")
    assert not result.startswith("0 ") and "No space left on device" in result, result
    assert image.stat().st_blocks * 512 <= 1.05 * 1024**3, "the full volume took no more of the host's disk"

    grown = json.loads(fleet.roost("volumes", "extend", vol["id"], "-a", app, "--size", "2", "--json").stdout)
    assert grown["volume"]["size_gb"] == 2
    if grown["needs_restart"]:  # the kernel grows a mounted filesystem only with CAP_SYS_RESOURCE
        (data / "file").unlink()
        assert api.post(f"/v1/apps/{app}/machines/{m['id']}/restart").status_code == 200
        result = fleet.wait_for(lambda: (data / "file").exists() and (data / "file").read_text(), timeout=60,
                                what="the machine's write after its restart")
        assert result.startswith("0 "), result
    assert 1.9 * 1024**3 < capacity(data) <= 2 * 1024**3
    api.delete(f"/v1/apps/{app}/machines/{m['id']}", params={"force": "true"})
    assert api.delete(f"/v1/apps/{app}/volumes/{vol['id']}").status_code == 200
    assert not data.exists() and not image.exists() and not os.path.ismount(data)


def capacity(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_blocks * stat.f_frsize


def test_hosts_and_watch_feed(fleet, app):
    api = fleet.api
    hosts = api.get("/v1/hosts").json()
    assert hosts[0]["region"] == "ams" and hosts[0]["status"] == "ok"
    assert {"id", "region", "address", "capacity", "used", "status", "last_heartbeat"} <= set(hosts[0])
    # a new watcher starts from a snapshot
    first = api.get("/v1/watch", params={"since": 0}).json()
    assert first["reset"] is True and any(o["kind"] == "host" for o in first["objects"])
    rev = first["revision"]
    m = api.post(f"/v1/apps/{app}/machines", json={"config": CONFIG, "skip_launch": True}).json()
    batch = api.get("/v1/watch", params={"since": rev, "timeout": 5}).json()
    assert batch["reset"] is False
    revs = [e["rev"] for e in batch["events"]]
    assert revs == sorted(revs) and revs[0] == rev + 1
    assert any(e["kind"] == "machine" and e["key"] == m["id"] for e in batch["events"])
    # resuming from any revision misses nothing
    api.delete(f"/v1/apps/{app}/machines/{m['id']}")
    later = api.get("/v1/watch", params={"since": revs[-1], "timeout": 5}).json()
    assert later["events"][0]["rev"] == revs[-1] + 1
    assert later["events"][-1]["object"]["state"] == "destroyed"
    # long-poll waits when nothing changes
    began = time.monotonic()
    idle = api.get("/v1/watch", params={"since": later["revision"], "timeout": 0.5}).json()
    assert idle["events"] == [] and time.monotonic() - began >= 0.45


def test_restart_policy_and_exit_events(fleet, app):
    api = fleet.api
    config = {"image": "hello:v1", "init": {"cmd": ["sh", "-c", "sleep 0.3; exit 7"]},
              "restart": {"policy": "on-failure", "max_retries": 2}}
    m = api.post(f"/v1/apps/{app}/machines", json={"config": config}).json()

    def exits():
        events = api.get(f"/v1/apps/{app}/machines/{m['id']}/events").json()
        return [e for e in events if e["type"] == "exit"]

    fleet.wait_for(lambda: len(exits()) >= 3 and api.get(f"/v1/apps/{app}/machines/{m['id']}").json()["state"]
                   == "stopped", timeout=30, what="two restarts then stopped")
    final = exits()[0]
    assert final["request"]["exit_event"]["exit_code"] == 7
    assert final["request"]["exit_event"]["restarting"] is False
    assert sum(1 for e in exits() if e["request"]["exit_event"]["restarting"]) == 2
    api.delete(f"/v1/apps/{app}/machines/{m['id']}")


def _get(url: str):
    try:
        r = httpx.get(url, timeout=1, trust_env=False)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None
