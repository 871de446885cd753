"""Issue 19: docs/production.md followed end to end on separate network hosts (one network namespace each, on a
fleet network with no way out): certificates with `roost tls`, the control plane, hosts and edges started by
the systemd units' command lines on the guide's config files, hosts joining with one-time tokens and
`--advertise`; then an app deployed, reached through an edge by its domain, a host's power cut, and the
worker's standby taking over."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from roost.agent.drivers.container import runc_available
from roost.agent.oci_images import oci_tools_available
from roost.agent.wireguard import available as wireguard_available
from roost.client import oci_build
from roost.dev import faults
from roost.dev.fleet import down, pid_alive, start_registry, write_fleet
from roost.dev.fleetnet import PRIVATE_NET, FleetNetwork, unavailable
from tests.images import build_oci_image, busybox_rootfs, push
from tests.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
    pytest.mark.skipif(not (runc_available() and oci_tools_available()),
                       reason="needs root, runc, tini, skopeo and umoci (./scripts/setup)"),
]
UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
HOSTS = {"ewr-1": ("ewr", 1, 1), "ewr-2": ("ewr", 1, 2), "syd-1": ("syd", 2, 1)}  # id: region, net, index
EDGES = ("ewr-1", "syd-1")  # hosts that also run an edge
DOMAIN = "apps.example.com"


def unit_command(component: str, config_dir: Path) -> list[str]:
    """The unit's ExecStart, with this checkout's roost and the test's config directory for /etc/roost."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(UNITS / f"roost-{component}.service")
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert argv[0] == "/usr/local/bin/roost"
    return [sys.executable, "-m", "roost", *(a.replace("/etc/roost", str(config_dir)) for a in argv[1:])]


def toml(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    os.chmod(path, 0o600)
    return path


def spawn(net: FleetNetwork, node: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen([*net.enter(node), *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})})
    return proc.pid


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's three hosts in two regions, each in its own namespace, set up as the guide says."""
    tmp = tmp_path_factory.mktemp("production")
    data = tmp / "fleet"
    data.mkdir(mode=0o700)
    fleet: dict[str, Any] = {"data_dir": str(data), "hosts": [], "proxies": [], "servers": [], "token": ""}
    net = FleetNetwork.create(data)
    fleet["netns"] = net.describe()
    write_fleet(data, fleet)  # from here on, down() removes whatever was made
    try:
        yield _set_up(tmp, data, fleet, net)
    finally:
        faults.heal(data)
        down(data)
        leftovers = [p for p in fleet.get("all_pids", []) if pid_alive(p)]
        assert leftovers == [], f"processes left behind: {leftovers}"


def _set_up(tmp: Path, data: Path, fleet: dict[str, Any], net: FleetNetwork) -> dict[str, Any]:
    cp = net.server_address(0)
    net.add_node("cp-1", cp)
    for host_id, (_region, n, i) in HOSTS.items():
        net.add_node(host_id, f"10.{net.octet}.{n}.{i}", forwarding=True)
    # Between hosts, the guide's WireGuard mesh (the agents make it) where this computer has WireGuard, else its
    # static routes for one LAN; this computer reaches machines through their hosts either way.
    mesh = wireguard_available() is None
    for host_id, (_region, n, i) in HOSTS.items():
        net.route(f"10.{200 + i}.{n}.0/24", f"10.{net.octet}.{n}.{i}", skip=set(HOSTS) if mesh else {host_id})
    fleet["netns"] = net.describe()
    logs = tmp / "logs"
    logs.mkdir()
    roost = [sys.executable, "-m", "roost"]

    def cli(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([*roost, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})
        assert done.returncode == 0, f"roost {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    # 2. Certificates
    cli("tls", "init", str(tmp / "fleet-tls"))
    cli("tls", "issue", str(tmp / "fleet-tls"), "server", cp)
    for host_id, (_region, n, i) in HOSTS.items():
        cli("tls", "issue", str(tmp / "fleet-tls"), f"agent-{host_id}", f"10.{net.octet}.{n}.{i}")
    tls = tmp / "fleet-tls" / "tls"  # where `roost tls` keeps them
    # The image registry the fleet pulls from, on this computer's address on the fleet network.
    registry = start_registry(data, free_port(), net.operator_address)
    fleet["registry"] = registry
    write_fleet(data, fleet)
    # 3. The control plane, by its unit's command line on the guide's server.toml
    etc = {name: tmp / "etc" / name for name in ("cp-1", *HOSTS)}
    for path in etc.values():
        path.mkdir(parents=True, mode=0o700)
    toml(etc["cp-1"] / "server.toml", {
        "listen": f"{cp}:4280", "region": "ewr", "data-dir": str(data / "server"),
        "tls-cert": str(tls / "server.pem"), "tls-key": str(tls / "server.key"), "ca": str(tls / "ca.pem"),
        "heartbeat-interval": 0.25, "suspect-after": 0.75, "dead-after": 1.5,
        "registry": registry["address"], "insecure-registry": [registry["address"]],
        "allow-registry": [registry["address"]]})
    url = f"https://{cp}:4280"
    server = {"url": url, "data_dir": str(data / "server"), "log": str(logs / "server.log"), "node": "cp-1",
              "pid": spawn(net, "cp-1", unit_command("server", etc["cp-1"]), logs / "server.log")}
    fleet["server"], fleet["servers"] = server, [server]
    write_fleet(data, fleet)
    trust = str(tls / "ca.pem")
    context = ssl.create_default_context(cafile=trust)
    wait(lambda: httpx.get(f"{url}/healthz", verify=context, trust_env=False, timeout=1).status_code == 200, 30,
         "the control plane")
    admin = (data / "server" / "admin-token").read_text().strip()
    fleet["token"] = admin
    api_env = {"ROOST_API_URL": url, "ROOST_API_TOKEN": admin, "ROOST_CA_FILE": trust}
    # 4. Hosts: a join token each, the guide's agent.toml, the unit's command line
    for host_id, (region, n, i) in HOSTS.items():
        join = json.loads(cli("hosts", "join-token", "--expiry", "30m", "--json", env=api_env))["token"]
        address = f"10.{net.octet}.{n}.{i}"
        toml(etc[host_id] / "agent.toml", {
            "server": url, "region": region, "host-id": host_id, "listen": "0.0.0.0:4300", "advertise": address,
            "data-dir": str(data / "agents" / host_id), "driver": "container",
            "machine-net": f"10.{200 + i}.{n}.0/24", "private-net": PRIVATE_NET,
            "tls-cert": str(tls / f"agent-{host_id}.pem"), "tls-key": str(tls / f"agent-{host_id}.key"),
            "ca": trust, "join-token": join, "insecure-registry": [registry["address"]],
            **({"wireguard-port": 51820} if mesh else {})})
        argv = unit_command("agent", etc[host_id])
        host = {"id": host_id, "region": region, "address": address, "data_dir": str(data / "agents" / host_id),
                "log": str(logs / f"agent-{host_id}.log"), "node": host_id, "enter": net.enter(host_id),
                "argv": argv[3:], "driver": "container", "agent_url": f"https://{address}:4300"}
        host["pid"] = spawn(net, host_id, argv, Path(host["log"]))
        fleet["hosts"].append(host)
        write_fleet(data, fleet)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, verify=context,
                      trust_env=False, timeout=70) as api:
        wait(lambda: {h["id"] for h in api.get("/v1/hosts").json() if h["status"] == "ok"} == set(HOSTS), 30,
             "every host to join")
        # 5. Edges: an edge token each, the guide's proxy.toml
        for host_id in EDGES:
            region = HOSTS[host_id][0]
            token = json.loads(cli("tokens", "create", "edge", "--name", f"edge {region}", "--json",
                                   env=api_env))["token"]
            address = next(h["address"] for h in fleet["hosts"] if h["id"] == host_id)
            toml(etc[host_id] / "proxy.toml", {
                "server": url, "region": region, "listen": "0.0.0.0:80", "advertise": address,
                "admin": "127.0.0.1:4500",
                "domain": DOMAIN, "ca": trust, "token": token, "data-dir": str(data / "proxies" / region),
                "id": f"edge-{region}"})
            log = logs / f"proxy-{region}.log"
            proxy = {"region": region, "node": host_id, "log": str(log),
                     "url": f"http://{address}:80",
                     "pid": spawn(net, host_id, unit_command("proxy", etc[host_id]), log)}
            fleet["proxies"].append(proxy)
            write_fleet(data, fleet)
    # An image for the app, pushed to the fleet's registry.
    oci_build.PLAIN_HTTP.add(registry["address"])
    rootfs = busybox_rootfs(tmp / "rootfs")
    (rootfs / "www").mkdir(exist_ok=True)
    (rootfs / "www" / "index.html").write_text("served on real hosts\n")
    build_oci_image(tmp / "layout", "httpd", rootfs, ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                    ports=["8080/tcp"])
    push(tmp / "layout", "httpd", f"{registry['address']}/guide/httpd:1")
    fleet["image"] = f"{registry['address']}/guide/httpd:1"
    fleet["api_env"] = api_env
    fleet["all_pids"] = [server["pid"], *(h["pid"] for h in fleet["hosts"]), *(p["pid"] for p in fleet["proxies"]),
                         registry["pid"]]
    return fleet


def client(fleet: dict[str, Any]) -> httpx.Client:
    env = fleet["api_env"]
    return httpx.Client(base_url=env["ROOST_API_URL"], headers={"Authorization": f"Bearer {env['ROOST_API_TOKEN']}"},
                        verify=ssl.create_default_context(cafile=env["ROOST_CA_FILE"]), trust_env=False, timeout=70)


def test_an_app_deployed_as_the_guide_says_is_reached_through_an_edge_by_its_domain(guide):
    with client(guide) as api:
        assert api.post("/v1/apps", json={"app_name": "site", "primary_region": "ewr"}).status_code == 201
        for region in ("ewr", "syd"):
            r = api.post("/v1/apps/site/machines", json={"region": region, "config": {
                "image": guide["image"], "services": [{"protocol": "tcp", "internal_port": 8080,
                                                       "ports": [{"port": 80, "handlers": ["http"]}]}]}})
            assert r.status_code == 200, r.text
            api.get(f"/v1/apps/site/machines/{r.json()['id']}/wait", params={"state": "started", "timeout": 60})
    with client(guide) as api:  # the edges as the control plane lists them: at their advertised addresses
        listed = wait(lambda: len(api.get("/v1/proxies").json()) == 2 and api.get("/v1/proxies").json(), 20,
                      "both edges to register")
        assert sorted(p["url"] for p in listed) == sorted(p["url"] for p in guide["proxies"])
    for proxy in guide["proxies"]:
        # an edge answers 404 until the watch feed has brought it the app's machines
        got = wait(lambda p=proxy: _served(p["url"], f"site.{DOMAIN}"), 20, f"the {proxy['region']} edge to serve")
        assert "served on real hosts" in got


def _served(url: str, host: str) -> str | None:
    r = httpx.get(url, headers={"Host": host}, trust_env=False, timeout=5)
    return r.text if r.status_code == 200 else None


def test_a_power_cut_on_a_guide_host_hands_its_worker_to_the_standby(guide):
    with client(guide) as api:
        assert api.post("/v1/apps", json={"app_name": "work", "primary_region": "ewr"}).status_code == 201
        config = {"image": guide["image"], "init": {"cmd": ["/bin/sleep", "3600"]}}
        r = api.post("/v1/apps/work/machines", json={"region": "ewr", "config": config})
        assert r.status_code == 200, r.text
        worker = r.json()
        api.get(f"/v1/apps/work/machines/{worker['id']}/wait", params={"state": "started", "timeout": 60})
        r = api.post("/v1/apps/work/machines", json={"region": "ewr",
                                                     "config": {**config, "standbys": [worker["id"]]}})
        assert r.status_code == 200, r.text
        standby = r.json()
        assert standby["host_id"] != worker["host_id"]
        time.sleep(1.0)  # the worker's host has acknowledged that a standby watches it
        at = faults.kill_host(Path(guide["data_dir"]), worker["host_id"])
        wait(lambda: api.get(f"/v1/apps/work/machines/{standby['id']}").json()["state"] == "started", 10,
             "the standby to take over")
        took = time.time() - at
        print(f"standby running {took:.2f} s after the power cut")
        assert took < 3.0
