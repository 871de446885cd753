"""Issue 15, strict input at the door: each bad value that used to reach a host, or to answer 500, is refused
by a real server with a 400 that names it, and nothing is stored."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

GOOD = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp",
                                           "ports": [{"port": 80, "handlers": ["http"]}]}]}


@pytest.fixture(scope="module")
def door(fleet):
    fleet.push_example("hello:v1")
    assert fleet.api.post("/v1/apps", json={"app_name": "door"}).status_code == 201
    return fleet


def machine_count(fleet) -> int:
    return len(fleet.api.get("/v1/apps/door/machines").json())


@pytest.mark.parametrize(("change", "named"), [
    ({"env": {"GREETING": "hi\u0000there"}}, "config.env.GREETING"),
    ({"env": {"A=B": "x"}}, "invalid name 'A=B'"),
    ({"env": {"BIG": "x" * 70000}}, "config.env.BIG"),
    ({"init": {"cmd": ["sh", "-c", "id\u0000rm"]}}, "config.init.cmd[2]"),
    ({"mounts": [{"path": "/../../../../tmp/host-dir", "volume": "vol_x"}]}, "config.mounts[0].path"),
    ({"mounts": [{"path": "/etc", "volume": "vol_x"}]}, "system directory"),
    ({"metadata": {"k": "v\u0000"}}, "config.metadata.k"),
])
def test_bad_config_values_are_refused_and_nothing_is_created(door, change, named):
    before = machine_count(door)
    r = door.api.post("/v1/apps/door/machines", json={"config": {**GOOD, **change}})
    assert r.status_code == 400 and named in r.json()["error"], r.text
    assert machine_count(door) == before


def test_an_enormous_lease_ttl_is_refused_before_anything_exists(door):
    before = machine_count(door)
    r = door.api.post("/v1/apps/door/machines", json={"config": GOOD, "lease_ttl": 10 ** 30})
    assert r.status_code == 400 and "lease_ttl" in r.json()["error"]
    assert machine_count(door) == before


def test_a_secret_with_nul_is_refused_and_not_stored(door):
    r = door.api.post("/v1/apps/door/secrets", json={"values": {"DB_PASSWORD": "a\u0000b"}})
    assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
    names = [s["name"] for s in door.api.get("/v1/apps/door/secrets").json()["secrets"]]
    assert "DB_PASSWORD" not in names


def test_json_nested_deeply_is_400_not_500(door):
    body = "[" * 500 + "]" * 500
    r = door.api.post("/v1/apps/door/machines", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "deep" in r.json()["error"]


def test_a_non_ascii_authorization_header_is_401_not_500(door):
    r = httpx.get(door.url + "/v1/apps", headers={"Authorization": "Bearer caf\u00e9".encode("latin-1")},
                  trust_env=False, verify=door.verify)
    assert r.status_code == 401 and "error" in r.json()


def test_a_proxy_registration_with_a_bad_pid_is_400(door):
    r = door.api.post("/v1/proxies", json={"id": "p", "region": "ams", "url": "http://127.0.0.1:1",
                                           "tcp_prefix": "127.9", "pid": "abc"})
    assert r.status_code == 400 and "pid" in r.json()["error"]


def test_the_servers_data_is_its_owners_alone(door):
    data = door.spec.data_dir / "server"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    if door.info.get("postgres"):  # the fleet's PostgreSQL: its data directory and password file
        pg = Path(door.info["postgres"]["dir"])
        assert stat.S_IMODE(os.stat(pg).st_mode) == 0o700 and stat.S_IMODE(os.stat(pg / "data").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(pg / "pgpass").st_mode) == 0o600
    else:
        assert stat.S_IMODE(os.stat(data / "roost.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(door.spec.data_dir).st_mode) == 0o700  # the fleet's: fleet.json, logs
    for host in door.info["hosts"]:
        assert stat.S_IMODE(os.stat(host["data_dir"]).st_mode) == 0o700  # specs with secrets, volumes


def test_secret_values_are_sealed_in_the_database(door):
    value = "correct-horse-battery-staple-7d1f"
    assert door.api.post("/v1/apps/door/secrets", json={"values": {"API_KEY": value}}).status_code in (200, 201)
    data = door.spec.data_dir / "server"
    stored = door.stored_bytes()
    assert b"API_KEY" in stored and value.encode() not in stored
    assert stat.S_IMODE(os.stat(data / "secrets.key").st_mode) == 0o600
    listing = door.api.get("/v1/apps/door/secrets").json()["secrets"]
    digest = next(s["digest"] for s in listing if s["name"] == "API_KEY")
    import hashlib
    assert digest != hashlib.sha256(value.encode()).hexdigest()[:16]  # keyed: no lookup table finds it
