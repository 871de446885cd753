"""Issue 15: scoped tokens on a real server. A deploy token reaches its app and nothing else (another app is a
404, as if it did not exist); a read-only token reads; revocation holds from the next request; the CLI makes,
lists and revokes them; Fly's deploy_token and tokens/current routes answer."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_apps(fleet):
    for name in ("tok-a", "tok-b"):
        assert fleet.api.post("/v1/apps", json={"app_name": name}).status_code == 201
    return fleet


def as_token(fleet, token: str) -> httpx.Client:
    return httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {token}"}, trust_env=False,
                        verify=fleet.verify, timeout=10)


def test_a_deploy_token_reaches_its_app_and_nothing_else(two_apps):
    f = two_apps
    made = f.api.post("/v1/tokens", json={"kind": "deploy", "app": "tok-a", "name": "ci"})
    assert made.status_code == 201 and made.json()["token"].startswith("rt1_")
    with as_token(f, made.json()["token"]) as api:
        assert api.get("/v1/apps/tok-a").status_code == 200
        assert [a["name"] for a in api.get("/v1/apps").json()["apps"]] == ["tok-a"]
        r = api.get("/v1/apps/tok-b")
        assert r.status_code == 404 and r.json() == {"error": "app 'tok-b' not found"}  # nothing leaks
        assert api.get("/v1/apps/tok-b/machines").status_code == 404
        assert api.post("/v1/apps/tok-b/secrets", json={"values": {"X": "y"}}).status_code == 404
        assert f.api.get("/v1/apps/tok-b/secrets").json()["secrets"] == []  # nothing stored
        assert api.post("/v1/apps/tok-a/secrets", json={"values": {"X": "y"}}).status_code in (200, 201)
        for method, path in (("GET", "/v1/hosts"), ("GET", "/v1/watch"), ("POST", "/v1/apps"),
                             ("GET", "/v1/tokens"), ("POST", "/v1/apps/tok-a/deploy_token")):
            assert api.request(method, path, json={}).status_code == 403, path
        r = api.post("/v1/images", params={"name": "tok-b:v1"}, content=b"x")
        assert r.status_code == 403 and "tok-a" in r.json()["error"]
        current = api.get("/v1/tokens/current").json()["tokens"][0]
        assert current["apps"] == ["tok-a"] and current["kind"] == "deploy"


def test_a_read_only_token_reads_and_changes_nothing(two_apps):
    f = two_apps
    token = f.api.post("/v1/tokens", json={"kind": "readonly"}).json()["token"]
    with as_token(f, token) as api:
        assert api.get("/v1/apps/tok-b/machines").status_code == 200
        r = api.post("/v1/apps/tok-b/machines", json={"config": {"image": "x"}})
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        assert api.delete("/v1/apps/tok-b").status_code == 403
    assert f.api.get("/v1/apps/tok-b").status_code == 200


def test_revocation_holds_from_the_next_request(two_apps):
    f = two_apps
    made = f.api.post("/v1/tokens", json={"kind": "deploy", "app": "tok-a"}).json()
    with as_token(f, made["token"]) as api:
        assert api.get("/v1/apps/tok-a").status_code == 200
        began = time.monotonic()
        assert f.api.delete(f"/v1/tokens/{made['id']}").status_code == 200
        assert api.get("/v1/apps/tok-a").status_code == 401
        assert time.monotonic() - began < 5
    listed = {t["id"]: t for t in f.api.get("/v1/tokens").json()["tokens"]}
    assert listed[made["id"]]["revoked_at"] is not None and "token" not in listed[made["id"]]


def test_flys_deploy_token_route_and_the_cli(two_apps):
    f = two_apps
    r = f.api.post("/v1/apps/tok-a/deploy_token", json={"expiry": "720h"})
    assert r.status_code == 200
    with as_token(f, r.json()["token"]) as api:
        assert api.get("/v1/apps/tok-a/machines").status_code == 200
    out = f.roost("tokens", "create", "deploy", "-a", "tok-b", "--expiry", "1h", "--name", "from-cli").stdout
    token = out.strip().splitlines()[-1]
    with as_token(f, token) as api:
        assert api.get("/v1/apps/tok-b").status_code == 200 and api.get("/v1/apps/tok-a").status_code == 404
    listing = f.roost("tokens", "list").stdout
    assert "from-cli" in listing and token not in listing
    bad = f.roost("tokens", "create", "superuser", check=False)
    assert bad.returncode != 0 and "unknown token kind" in bad.stderr and "Traceback" not in bad.stderr
    token_id = next(t["id"] for t in f.api.get("/v1/tokens").json()["tokens"] if t["name"] == "from-cli")
    f.roost("tokens", "revoke", token_id)
    with as_token(f, token) as api:
        assert api.get("/v1/apps/tok-b").status_code == 401


def test_a_machine_exec_token_reads_its_apps_machines_and_changes_nothing(two_apps):
    """The token kind `machine exec` (issue 16) will take: its app's machines and commands in them, no more."""
    f = two_apps
    token = f.roost("tokens", "create", "machine-exec", "-a", "tok-a").stdout.strip().splitlines()[-1]
    with as_token(f, token) as api:
        assert api.get("/v1/apps/tok-a/machines").status_code == 200
        assert api.get("/v1/apps/tok-b/machines").status_code == 404
        assert api.post("/v1/apps/tok-a/machines", json={"config": {"image": "x"}}).status_code == 403
        assert api.get("/v1/apps/tok-a/secrets").status_code == 403
        assert api.get("/v1/tokens/current").json()["tokens"][0]["apps"] == ["tok-a"]
