"""Issue 15: hosts join, they don't share. A new agent joins a real fleet with a one-time join token (it is
never given the fleet's token), keeps a credential of its own, runs machines placed on it, and that
credential, stolen, reports for that host only: it is no operator and cannot speak for another host."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import free_port, stop_process

pytestmark = pytest.mark.integration
ADDRESS = "127.0.1.9"  # beside the fleet's hosts (127.0.1.1 ...), on loopback


@pytest.fixture(scope="module")
def joined(fleet, tmp_path_factory):
    fleet.push_example("hello:v1")
    token = fleet.roost("hosts", "join-token", "--expiry", "10m").stdout.strip().splitlines()[-1]
    data = tmp_path_factory.mktemp("joined") / "agent"
    env = {k: v for k, v in fleet.env.items() if k != "ROOST_API_TOKEN"}  # the new host never sees it
    port = free_port()
    log = open(data.parent / "agent.log", "w")  # noqa: SIM115 (closed with the agent)
    # The fleet speaks TLS: the new host gets a certificate from the fleet CA for its address, as an
    # operator would give it one ('roost tls issue'), and pins that CA (ROOST_CA_FILE in the env).
    fleet.roost("tls", "issue", fleet.info["data_dir"], "agent-joined-1", ADDRESS)
    tls = Path(fleet.info["data_dir"]) / "tls"
    proc = subprocess.Popen([sys.executable, "-m", "roost", "agent", "--server", fleet.url, "--region", "ams",
                             "--host-id", "joined-1", "--listen", f"{ADDRESS}:{port}", "--data-dir", str(data),
                             "--cpus", "4", "--memory-mb", "4096", "--tls-cert", str(tls / "agent-joined-1.pem"),
                             "--tls-key", str(tls / "agent-joined-1.key")],
                            env={**env, "ROOST_JOIN_TOKEN": token}, stdout=log, stderr=subprocess.STDOUT)
    try:
        fleet.wait_for(lambda: any(h["id"] == "joined-1" and h["status"] == "ok"
                                   for h in fleet.api.get("/v1/hosts").json()), timeout=30,
                       what="the joined host to report in")
        yield fleet, token, data
    finally:
        stop_process(proc, log)
        from roost.dev.fleet import _remove_cgroups

        _remove_cgroups("joined-1")  # the agent's machine cgroups (it was not started by the fleet)


def credential(data) -> str:
    import json

    return json.loads((data / "credential.json").read_text())["token"]


def test_a_joined_host_keeps_its_own_credential_and_the_join_token_is_spent(joined):
    fleet, token, data = joined
    path = data / "credential.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert fleet.token not in path.read_text()  # only the operator token's digest
    r = httpx.post(f"{fleet.url}/v1/hosts/join", json={"host_id": "impostor"},
                   headers={"Authorization": f"Bearer {token}"}, trust_env=False, verify=fleet.verify)
    assert r.status_code == 401  # once only


def test_machines_run_on_a_joined_host(joined):
    fleet, _, _ = joined
    original = [h["id"] for h in fleet.api.get("/v1/hosts").json() if h["id"] != "joined-1"]
    for host in original:  # so that placement picks the joined host
        fleet.api.post(f"/v1/hosts/{host}/cordon")
    try:
        assert fleet.api.post("/v1/apps", json={"app_name": "joined-app"}).status_code == 201
        m = fleet.api.post("/v1/apps/joined-app/machines", json={"config": {"image": "hello:v1"}}).json()
        assert m["roost"]["host_id"] == "joined-1"
        r = fleet.api.get(f"/v1/apps/joined-app/machines/{m['id']}/wait", params={"state": "started",
                                                                                   "timeout": 30})
        assert r.status_code == 200, r.text  # the server's call reached it; the image came with its credential
        fleet.api.delete(f"/v1/apps/joined-app/machines/{m['id']}", params={"force": "true"})
    finally:
        for host in original:
            fleet.api.post(f"/v1/hosts/{host}/uncordon")


def test_a_stolen_host_credential_reports_for_that_host_only(joined):
    fleet, _, data = joined
    with httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {credential(data)}"},
                      trust_env=False, verify=fleet.verify, timeout=10) as stolen:
        assert stolen.post("/v1/hosts/joined-1/heartbeat", json={}).status_code == 200
        for method, path, body in (("GET", "/v1/apps", None), ("GET", "/v1/watch", None),
                                   ("POST", "/v1/apps", {"app_name": "evil"}),
                                   ("POST", "/v1/hosts/ams-1/heartbeat", {}),
                                   ("POST", "/v1/hosts", {"id": "fake-host", "region": "ams",
                                                          "address": "127.0.1.77",
                                                          "agent_url": "http://127.0.1.77:1"})):
            r = stolen.request(method, path, json=body)
            assert r.status_code == 403, (path, r.text)
        # who is where, for its `.internal` resolver: names and addresses, never a config (env, secrets)
        names = stolen.get("/v1/watch/names", params={"timeout": 0})
        assert names.status_code == 200 and names.json()["reset"]
        allowed = {"app": {"name", "org"},
                   "machine": {"id", "app", "region", "state", "private_ip", "host_id", "group"}}
        for obj in names.json()["objects"]:
            assert set(obj["object"]) <= allowed[obj["kind"]], obj
    assert "fake-host" not in [h["id"] for h in fleet.api.get("/v1/hosts").json()]


def test_the_dev_fleets_own_hosts_joined_and_hold_no_fleet_token(fleet):
    for host in fleet.info["hosts"]:
        assert (Path(host["data_dir"]) / "credential.json").exists()
        environ = Path(f"/proc/{host['pid']}/environ").read_bytes()
        assert fleet.token.encode() not in environ, host["id"]


def test_only_the_server_commands_an_agent(joined):
    """The attack from the issue: the operator token sent straight to an agent placed a spec that ran a shell
    command as root. Now an agent obeys only the server's control credential, which the API itself refuses;
    the operator token gets what an edge gets (start, stop, suspend what is already placed)."""
    fleet, _, _ = joined
    host = fleet.info["hosts"][0]
    agent = host["agent_url"]
    spec = {"id": "a0000000000001", "instance_id": "x", "app": "evil", "config": {
        "image": "hello:v1", "init": {"exec": ["/bin/sh", "-c", "id > /tmp/roost-pwned"]}}}
    # A host learns a new peer's credential with its next heartbeat answer; until then it does not know it (401).
    peer = {"Authorization": f"Bearer {credential(joined[2])}"}
    fleet.wait_for(lambda: httpx.get(f"{agent}/v1/machines", headers=peer, trust_env=False, verify=fleet.verify,
                                     timeout=10).status_code != 401, what="the host to know its new peer")
    for token in (fleet.token, credential(joined[2])):
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, trust_env=False, verify=fleet.verify,
                          timeout=10) as c:
            assert c.put(f"{agent}/v1/machines/a0000000000001", json=spec).status_code == 403
            assert c.get(f"{agent}/v1/machines").status_code == 403
            assert c.get(f"{agent}/v1/machines/a0000000000001/logs").status_code == 403
    assert not Path("/tmp/roost-pwned").exists()
    control = (Path(fleet.info["server"]["data_dir"]) / "control-token").read_text().strip()
    assert stat.S_IMODE(os.stat(Path(fleet.info["server"]["data_dir"]) / "control-token").st_mode) == 0o600
    as_server = {"Authorization": f"Bearer {control}"}
    r = httpx.get(f"{fleet.url}/v1/apps", headers=as_server, trust_env=False, verify=fleet.verify)
    assert r.status_code == 401  # the server's credential towards agents is nobody's key to the API
    r = httpx.get(f"{agent}/v1/machines", headers=as_server, trust_env=False, verify=fleet.verify)
    assert r.status_code == 200


def test_an_edge_token_routes_and_its_revocation_reaches_the_agents(joined):
    fleet, _, _ = joined
    made = fleet.api.post("/v1/tokens", json={"kind": "edge", "name": "test edge"}).json()
    edge = {"Authorization": f"Bearer {made['token']}"}
    agent = fleet.info["hosts"][0]["agent_url"]
    with httpx.Client(base_url=fleet.url, headers=edge, trust_env=False, verify=fleet.verify, timeout=10) as c:
        assert c.get("/v1/watch", params={"timeout": 0}).status_code == 200
        assert c.get("/v1/hosts").status_code == 200
        for method, path in (("GET", "/v1/tokens"), ("POST", "/v1/apps"), ("GET", "/v1/apps/x/secrets"),
                             ("DELETE", "/v1/apps/x/machines/a0000000000001"), ("GET", "/v1/apps/x/logs")):
            assert c.request(method, path, json={}).status_code == 403, path
    # An agent knows the edge by its token's digest, from the heartbeat answers: a start (of nothing here) is
    # let through to be judged on its merits, anything else is refused.
    fleet.wait_for(lambda: httpx.post(f"{agent}/v1/machines/a0000000000001/start", json={}, headers=edge,
                                      trust_env=False, verify=fleet.verify).status_code not in (401, 403), timeout=5,
                   what="the agent to know it")
    assert httpx.get(f"{agent}/v1/machines", headers=edge, trust_env=False, verify=fleet.verify).status_code == 403
    fleet.api.delete(f"/v1/tokens/{made['id']}")
    assert httpx.get(f"{fleet.url}/v1/hosts", headers=edge, trust_env=False, verify=fleet.verify).status_code == 401
    fleet.wait_for(lambda: httpx.post(f"{agent}/v1/machines/a0000000000001/start", json={}, headers=edge,
                                      trust_env=False, verify=fleet.verify).status_code == 401, timeout=5,
                   what="the agent to refuse the revoked edge token")



def test_components_speak_tls_only_and_pin_the_fleet_ca(fleet):
    """Issue 15: server, agents and edges speak HTTPS under the fleet CA; plain HTTP is refused on every link,
    and an agent that would call the server in clear text does not start."""
    agent = fleet.info["hosts"][0]["agent_url"]
    assert fleet.url.startswith("https://") and agent.startswith("https://")
    for url in (fleet.url, agent):
        with pytest.raises(httpx.HTTPError):  # a plain request to a TLS port gets no answer
            httpx.get("http://" + url.split("://", 1)[1] + "/v1/apps", trust_env=False, timeout=5,
                      headers={"Authorization": f"Bearer {fleet.token}"})
        with pytest.raises(httpx.ConnectError):  # the system's CAs do not vouch for the fleet's certificates
            httpx.get(url + "/healthz", trust_env=False, timeout=5)
    r = fleet.api.post("/v1/hosts", json={"id": "clear-1", "region": "ams", "address": "127.0.1.78",
                                          "agent_url": "http://127.0.1.78:1", "cpus": 1, "memory_mb": 512})
    assert r.status_code == 400 and "TLS" in r.json()["error"]
    for skew, says in ((-60, "60.0 s behind"), (3600, "3600.0 s ahead of")):  # issue 19: a far-off clock
        r = fleet.api.post("/v1/hosts", json={"id": "skewed-1", "region": "ams", "address": "127.0.1.78",
                                              "agent_url": "https://127.0.1.78:1", "cpus": 1, "memory_mb": 512,
                                              "time": time.time() + skew})
        assert r.status_code == 422 and says in r.json()["error"] and "NTP" in r.json()["error"], r.text
    assert "skewed-1" not in [h["id"] for h in fleet.api.get("/v1/hosts").json()]
    # Issue 19: an agent at an address the control plane cannot reach is refused at join, not left to flap.
    r = fleet.api.post("/v1/hosts", json={"id": "unreached-1", "region": "ams", "address": "127.0.1.78",
                                          "agent_url": "https://127.0.1.78:1", "cpus": 1, "memory_mb": 512,
                                          "time": time.time()})
    assert r.status_code == 422 and "cannot reach host unreached-1 at https://127.0.1.78:1" in r.json()["error"] \
        and "--advertise" in r.json()["error"], r.text
    assert "unreached-1" not in [h["id"] for h in fleet.api.get("/v1/hosts").json()]
    plain = fleet.roost("agent", "--server", "http://" + fleet.url.split("://", 1)[1], "--region", "ams",
                        "--listen", "127.0.1.79:1", check=False, timeout=30)
    assert plain.returncode != 0 and "plain HTTP" in plain.stderr and "Traceback" not in plain.stderr
