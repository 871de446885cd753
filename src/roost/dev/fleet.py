"""`roost dev up|status|down`: a whole fleet on this computer, on loopback.

The server listens on 127.0.0.1; host N of region R gets its own address 127.0.R.N (all of 127/8 is
loopback on Linux), so hosts are told apart without any setup. Every process is started in its own
session, its PID written to fleet.json, and `down` stops them by PID — agents first (so nothing
restarts machines), then every machine process the agents' records and cgroups name, then the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from roost.agent.cgroups import Cgroups
from roost.agent.drivers.container import host_pids, sweep
from roost.agent.drivers.pidwatch import proc_start_time
from roost.agent.keeper import KeeperFiles
from roost.agent.volumes import unmount_under
from roost.dev.fleetnet import PRIVATE_NET, FleetNetError, FleetNetwork
from roost.dev.fleetnet import unavailable as fleetnet_unavailable
from roost.dev.postgres import LocalPostgres, PostgresError
from roost.failover import replicas, server_list
from roost.fleet_ca import fleet_ca, issue_files
from roost.pids import pid_alive as pid_alive  # re-exported: the fleet's users ask it
from roost.private_files import write_private
from roost.tls import Trust

SERVER_PORT = 4280
AGENT_PORT = 4300
PROXY_PORT = 4400
ADMIN_PORT = 4500
REGISTRY_PORT = 4390
POSTGRES_PORT = 4388


class FleetError(Exception):
    pass


@dataclass
class FleetSpec:
    data_dir: Path
    regions: list[str]
    hosts_per_region: int = 2
    server_port: int = SERVER_PORT
    host_cpus: int = 2
    host_memory_mb: int = 4096
    heartbeat_interval: float = 0.25
    driver: str = "process"
    agent_port: int = AGENT_PORT
    address_offset: int = 0  # host N of region R listens on 127.0.(offset+R+1).(N+1)
    proxy_port: int = PROXY_PORT  # the edge of region R listens on 127.0.0.1:(proxy_port+R)
    admin_port: int = ADMIN_PORT  # and serves /metrics on 127.0.0.1:(admin_port+R)
    tcp_octet: int = 100  # the edge of region R gives apps TCP addresses in 127.(tcp_octet+R).0.0/16
    idle_interval: float = 30.0  # autostop passes (Fly: every few minutes; seconds here, to see it work)
    proxies: bool = True
    simulate_latency: bool = True  # edges add the round-trip time when they forward to another region
    anycast_port: int = 4399  # one address that sends each client to its nearest live edge (0: none)
    tls: bool = True  # server, agents and edges speak HTTPS to each other under a fleet CA (issue 15)
    edge_tls_port: int = 0  # the edge of region R terminates apps' TLS on 127.0.0.1:(edge_tls_port+R); 0: none
    server_args: tuple[str, ...] = ()  # more options for `roost server` (e.g. --acme-directory)
    registry_port: int = 0  # an OCI registry (docker-registry) on 127.0.0.1:PORT for the fleet's images; 0: none
    servers: int = 1  # control-plane replicas (more than one needs store="postgresql"): on server_port, +1, ...
    store: str = "sqlite"  # the control plane's database: "sqlite" (a file) or "postgresql" (a local cluster)
    postgres_port: int = POSTGRES_PORT  # where the fleet's PostgreSQL listens (127.0.0.1), with store="postgresql"
    netns: bool = False  # every host, edge and server in a network namespace of its own (dev/fleetnet.py)
    link_latency: bool = True  # in a netns fleet: links between regions delayed by their RTT (dev/linkdelay.py)
    # In a netns fleet of container hosts: machines' private network between hosts over a WireGuard mesh set up by
    # the agents (as in production), where this computer has WireGuard; else (or False) plain routes.
    wireguard: bool = True


def uses_wireguard(spec: FleetSpec) -> bool:
    from roost.agent.wireguard import available

    return spec.netns and spec.driver == "container" and spec.wireguard and available() is None


WIREGUARD_PORT = 51820  # every host has an address of its own in a netns fleet: one port for all


def roost_command() -> list[str]:
    """How to run `roost` as a child process: this interpreter, so the fleet uses the same install."""
    return [sys.executable, "-m", "roost"]


def _spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None, unset: tuple[str, ...] = (),
           enter: list[str] | None = None) -> int:
    """Start a component in its own session (and, with `enter`, in its node's network namespace)."""
    args = [*(enter or []), *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**environment, **(env or {})})
    return proc.pid


def read_fleet(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "fleet.json"
    if not path.exists():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except ValueError:
        return None


def admin_headers(proxy: dict[str, Any]) -> dict[str, str]:
    """What an edge's admin port (/metrics, /routes) needs: its token."""
    return {"Authorization": f"Bearer {proxy.get('admin_token', '')}"}


def admin_get(proxy: dict[str, Any], path: str, timeout: float = 5.0) -> httpx.Response:
    """GET a page of an edge's admin port (/routes, /metrics), with its token."""
    return httpx.get(f"{proxy['admin_url']}{path}", headers=admin_headers(proxy), trust_env=False, timeout=timeout)


def write_fleet(data_dir: Path, fleet: dict[str, Any]) -> None:
    write_private(data_dir / "fleet.json", json.dumps(fleet, indent=2))  # it holds the fleet's token


def fleet_alive(fleet: dict[str, Any]) -> bool:
    return any(pid_alive(int(s["pid"])) for s in replicas(fleet))


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def host_address(region_index: int, host_index: int, offset: int = 0) -> str:
    return f"127.0.{offset + region_index + 1}.{host_index + 1}"


def machine_net(region_index: int, host_index: int, offset: int = 0) -> str:
    """The container driver's machine subnet of host 127.0.A.B: 10.(200+B).A.0/24, unique per host address."""
    return f"10.{200 + host_index + 1}.{offset + region_index + 1}.0/24"


def _plan_network(net: FleetNetwork, spec: FleetSpec, wireguard: bool) -> None:
    """Every namespace of a netns fleet, made before anything starts (addresses follow from the spec), and the
    routes to every host's machine subnet."""
    for i in range(spec.servers):  # in the first region, as `roost server --region` says
        net.add_node("server" if i == 0 else f"server-{i + 1}", net.server_address(i), region=spec.regions[0])
    for r, region in enumerate(spec.regions):
        for h in range(spec.hosts_per_region):
            net.add_node(f"{region}-{h + 1}", net.host_address(r, h), forwarding=True, region=region)
        if spec.proxies:
            net.add_node(f"edge-{region}", net.edge_address(r), region=region)
    if spec.driver == "container":
        hosts = {f"{region}-{h + 1}" for region in spec.regions for h in range(spec.hosts_per_region)}
        for r, region in enumerate(spec.regions):
            for h in range(spec.hosts_per_region):
                # Over WireGuard, hosts route each other's machines into the mesh themselves (the agents do).
                skip = hosts if wireguard else {f"{region}-{h + 1}"}
                net.route(machine_net(r, h, spec.address_offset), net.host_address(r, h), skip=skip)


def up(spec: FleetSpec, progress: Any = None) -> dict[str, Any]:
    """Start the fleet and wait until every part is healthy; returns what fleet.json records."""
    data = spec.data_dir
    wireguard = uses_wireguard(spec)  # asked once: it looks for programs on this computer
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)  # fleet.json holds the token; logs and every component's data live below
    existing = read_fleet(data)
    if existing and fleet_alive(existing):
        raise FleetError(f"a fleet is already running from {data} (server pid {existing['server']['pid']}); "
                         "'roost dev status' shows it, 'roost dev down' stops it")
    if not spec.netns and not _port_free("127.0.0.1", spec.server_port):
        raise FleetError(f"port {spec.server_port} on 127.0.0.1 is in use; pass --port to use another")
    logs = data / "logs"
    scheme = "https" if spec.tls else "http"
    net: FleetNetwork | None = None
    if spec.netns:
        why = fleetnet_unavailable()
        if why:
            raise FleetError(why)
        if spec.hosts_per_region > 50 or len(spec.regions) > 50:
            raise FleetError("a netns fleet holds at most 50 regions of 50 hosts")
    local = "127.0.0.1"  # where this computer's services for the fleet listen (registry, PostgreSQL)
    server_ip = "127.0.0.1"
    url = f"{scheme}://127.0.0.1:{spec.server_port}"
    say = progress or (lambda _msg: None)
    fleet: dict[str, Any] = {"data_dir": str(data), "started_at": time.time(), "regions": spec.regions,
                             "server": {}, "token": "", "hosts": [], "proxies": []}
    if spec.tls:
        fleet["ca"] = str(fleet_ca(data)[1])

    def enter(name: str) -> list[str] | None:
        return net.enter(name) if net is not None else None

    def node_of(name: str) -> dict[str, Any]:
        """What a component's record says of its namespace: its node and how to run a program there."""
        return {"node": name, "enter": net.enter(name)} if net is not None else {}

    def tls_args(name: str, address: str, *more: str) -> list[str]:
        if not spec.tls:
            return []
        cert, key = issue_files(data, name, [address, "localhost"] if address == "127.0.0.1" else [address, *more])
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--ca", fleet["ca"]]

    try:
        if spec.netns:
            say("making the fleet network: a namespace for every host, edge and server")
            try:
                net = FleetNetwork.create(data, spec.regions if spec.link_latency else None)
                fleet["netns"] = net.describe()
                write_fleet(data, fleet)  # recorded first: a failed start is still removed by down()
                _plan_network(net, spec, wireguard)
                if net.regions:
                    argv = ["dev", "relay", *(a for r, t in net.taps().items() for a in ("--tap", f"{r}={t}"))]
                    relay = _spawn([*roost_command(), *argv], logs / "relay.log", enter=net.relay_enter())
                    fleet["extra_pids"] = [relay]
            except FleetNetError as exc:
                raise FleetError(f"the fleet network: {exc}") from None
            fleet["netns"] = net.describe()
            if spec.driver == "container":
                fleet["private_network"] = "wireguard" if wireguard else "routes"
            write_fleet(data, fleet)
            local, server_ip = net.operator_address, net.server_address(0)
            url = f"{scheme}://{server_ip}:{spec.server_port}"
        if spec.registry_port:
            say(f"starting the fleet's image registry on {local}:{spec.registry_port}")
            fleet["registry"] = start_registry(data, spec.registry_port, local)
            write_fleet(data, fleet)
        if spec.store == "postgresql":
            say(f"starting the fleet's PostgreSQL on {local}:{spec.postgres_port}")
            cluster = LocalPostgres(data / "postgres", spec.postgres_port, local)
            if not _port_free(local, spec.postgres_port):
                raise FleetError(f"port {spec.postgres_port} on {local} is in use; pass --postgres-port")
            fleet["postgres"] = {"dir": str(cluster.directory), "port": spec.postgres_port, "url": cluster.url(),
                                 "log": str(cluster.log), "host": local}
            write_fleet(data, fleet)  # recorded first: a failed start is still stopped by down()
            try:
                fleet["postgres"]["pid"] = cluster.start()
            except PostgresError as exc:
                raise FleetError(str(exc)) from None
            write_fleet(data, fleet)
        elif spec.store != "sqlite":
            raise FleetError(f"unknown store {spec.store!r}: sqlite or postgresql")
        if spec.servers > 1 and spec.store != "postgresql":
            raise FleetError("several servers share one PostgreSQL: add --store postgresql")
        say("starting the control plane")
        server_argv = ["server", "--data-dir", str(data / "server"), "--listen", f"{server_ip}:{spec.server_port}",
                       "--region", spec.regions[0], "--heartbeat-interval", str(spec.heartbeat_interval),
                       *tls_args("server", server_ip,  # one certificate for every replica's address
                                 *(net.server_address(i) for i in range(1, spec.servers) if net)),
                       *spec.server_args]
        if fleet.get("registry"):
            server_argv += ["--registry", fleet["registry"]["address"]]
            if net is not None:  # plain HTTP off loopback too: it is on the fleet network only
                server_argv += ["--insecure-registry", fleet["registry"]["address"]]
        if fleet.get("postgres"):
            server_argv += ["--store", fleet["postgres"]["url"]]
        server_pid = _spawn([*roost_command(), *server_argv], logs / "server.log", env=server_env(fleet),
                            enter=enter("server"))
        fleet["server"] = {"url": url, "pid": server_pid, "data_dir": str(data / "server"),
                           "log": str(logs / "server.log"), "argv": server_argv, **node_of("server")}
        fleet["servers"] = [dict(fleet["server"])]
        write_fleet(data, fleet)
        _wait_http(f"{url}/healthz", 30, lambda: pid_alive(server_pid), logs / "server.log", verify(fleet))
        # More replicas, one after another: they share the first one's data directory (its tokens, secrets key
        # and image blobs), which exists by now.
        for i in range(1, spec.servers):
            # On loopback each replica takes the next port; in a netns fleet, each has its own address.
            ip, port = (net.server_address(i), spec.server_port) if net else ("127.0.0.1", spec.server_port + i)
            if net is None and not _port_free(ip, port):
                raise FleetError(f"port {port} on 127.0.0.1 is in use (replica {i + 1}); pass --port to move them")
            say(f"starting control-plane replica {i + 1} on {ip}:{port}")
            replica_url = f"{scheme}://{ip}:{port}"
            argv = [a if a != f"{server_ip}:{spec.server_port}" else f"{ip}:{port}" for a in server_argv]
            argv += ["--advertise", replica_url]
            log = logs / f"server-{i + 1}.log"
            node = f"server-{i + 1}"
            pid = _spawn([*roost_command(), *argv], log, env=server_env(fleet), enter=enter(node))
            fleet["servers"].append({"url": replica_url, "pid": pid, "data_dir": str(data / "server"),
                                     "log": str(log), "argv": argv, **node_of(node)})
            write_fleet(data, fleet)
            _wait_http(f"{replica_url}/healthz", 30, lambda p=pid: pid_alive(p), log, verify(fleet))
        # What every component is told: all the replicas, and it fails over between them.
        servers_arg = server_list(fleet)
        token = (data / "server" / "admin-token").read_text().strip()
        for server in fleet["servers"]:  # who leads as the fleet starts ('roost dev status' says who leads now)
            _note_leads(fleet, server, token, timeout=5)
        fleet["token"] = token
        write_fleet(data, fleet)
        for r, region in enumerate(spec.regions):
            for h in range(spec.hosts_per_region):
                address = net.host_address(r, h) if net else host_address(r, h, spec.address_offset)
                host_id = f"{region}-{h + 1}"
                if net is None and not _port_free(address, spec.agent_port):
                    raise FleetError(f"{address}:{spec.agent_port} is in use (another fleet?); run 'roost dev down'")
                say(f"starting host {host_id} on {address}")
                argv = ["agent", "--server", servers_arg, "--region", region,
                        "--host-id", host_id, "--listen", f"{address}:{spec.agent_port}",
                        "--cpus", str(spec.host_cpus), "--memory-mb", str(spec.host_memory_mb),
                        "--data-dir", str(data / "agents" / host_id),
                        "--heartbeat-interval", str(spec.heartbeat_interval), "--driver", spec.driver,
                        *tls_args(f"agent-{host_id}", address)]
                if net is not None and fleet.get("registry"):
                    argv += ["--insecure-registry", fleet["registry"]["address"]]
                if spec.driver == "container":
                    argv += ["--machine-net", machine_net(r, h, spec.address_offset)]
                    if net is not None:
                        argv += ["--private-net", PRIVATE_NET]
                    if wireguard:
                        argv += ["--wireguard-port", str(WIREGUARD_PORT)]
                host: dict[str, Any] = {"id": host_id, "region": region, "address": address,
                        "agent_url": f"{scheme}://{address}:{spec.agent_port}", "argv": argv,
                        "data_dir": str(data / "agents" / host_id), "log": str(logs / f"agent-{host_id}.log")}
                host.update(node_of(host_id))
                host["pid"] = start_agent(host, token, join_token(url, token, verify(fleet)))
                fleet["hosts"].append(host)
                write_fleet(data, fleet)
        say("waiting for every host to report in")
        _wait_hosts(url, token, {h["id"] for h in fleet["hosts"]}, 30, fleet, verify(fleet))
        if spec.proxies:
            for r, region in enumerate(spec.regions):
                port, admin = spec.proxy_port + r, spec.admin_port + r
                edge_ip = net.edge_address(r) if net else "127.0.0.1"
                if net is None and not _port_free("127.0.0.1", port):
                    raise FleetError(f"127.0.0.1:{port} is in use; pass --proxy-port to use others")
                say(f"starting the {region} edge on {edge_ip}:{port}")
                argv = ["proxy", "--server", servers_arg, "--region", region, "--listen", f"{edge_ip}:{port}",
                        "--admin", f"{edge_ip}:{admin}", "--tcp-prefix", f"127.{spec.tcp_octet + r}",
                        "--idle-interval", str(spec.idle_interval), "--data-dir", str(data / "proxies" / region)]
                if spec.simulate_latency and not (net and net.regions):  # real links carry it there
                    argv.append("--simulate-rtt")
                if spec.tls:
                    argv += ["--ca", fleet["ca"]]
                if spec.edge_tls_port:
                    if net is None and not _port_free("127.0.0.1", spec.edge_tls_port + r):
                        raise FleetError(f"127.0.0.1:{spec.edge_tls_port + r} is in use; pass --tls-port")
                    argv += ["--tls-port", str(spec.edge_tls_port + r)]
                # Each edge routes with a token of its own (kind "edge"), which also guards its admin pages.
                edge_token = make_token(url, token, "edge", f"edge {region}", "", verify(fleet))
                proxy: dict[str, Any] = {
                         "region": region, "url": f"http://{edge_ip}:{port}", "address": f"{edge_ip}:{port}",
                         "admin_url": f"http://{edge_ip}:{admin}", "admin_token": edge_token,
                         "tcp_prefix": f"127.{spec.tcp_octet + r}",
                         "tls_port": spec.edge_tls_port + r if spec.edge_tls_port else 0,
                         "argv": argv, "log": str(logs / f"proxy-{region}.log")}
                proxy.update(node_of(f"edge-{region}"))
                proxy["pid"] = _spawn([*roost_command(), *argv], Path(proxy["log"]),
                                      env={"ROOST_API_TOKEN": edge_token}, enter=enter(f"edge-{region}"))
                fleet["proxies"].append(proxy)
                write_fleet(data, fleet)
            for proxy in fleet["proxies"]:
                _wait_http(f"{proxy['admin_url']}/healthz", 20, lambda p=proxy: pid_alive(p["pid"]), Path(proxy["log"]))
            if spec.anycast_port:
                if not _port_free("127.0.0.1", spec.anycast_port):
                    raise FleetError(f"127.0.0.1:{spec.anycast_port} is in use; pass --anycast-port")
                argv = ["dev", "anycast", "--listen", f"127.0.0.1:{spec.anycast_port}",
                        "--default-region", spec.regions[0]]
                for proxy in fleet["proxies"]:
                    argv += ["--edge", f"{proxy['region']}={proxy['address']}"]
                if spec.simulate_latency:
                    argv.append("--simulate-rtt")
                log = logs / "anycast.log"
                fleet["anycast"] = {"url": f"http://127.0.0.1:{spec.anycast_port}", "port": spec.anycast_port,
                                    "argv": argv, "log": str(log), "pid": _spawn([*roost_command(), *argv], log)}
                write_fleet(data, fleet)
                deadline = time.monotonic() + 10
                while _port_free("127.0.0.1", spec.anycast_port) and time.monotonic() < deadline:
                    time.sleep(0.05)
        write_fleet(data, fleet)
        return fleet
    except BaseException:
        down(data)
        raise


def start_agent(host: dict[str, Any], token: str, join_token: str = "") -> int:
    """Start (or restart) one host's agent with the arguments the fleet recorded for it. A host joins with a
    one-time token and keeps its own credential; it is never given the fleet token (an agent of an older
    fleet, without a credential, gets the fleet token as before)."""
    joined = join_token or (Path(host["data_dir"]) / "credential.json").exists()
    if joined:
        return _spawn([*roost_command(), *host["argv"]], Path(host["log"]),
                      env={"ROOST_JOIN_TOKEN": join_token} if join_token else None,
                      unset=("ROOST_API_TOKEN", "ROOST_JOIN_TOKEN") if not join_token else ("ROOST_API_TOKEN",),
                      enter=host.get("enter"))
    return _spawn([*roost_command(), *host["argv"]], Path(host["log"]), env={"ROOST_API_TOKEN": token},
                  enter=host.get("enter"))


def join_token(url: str, token: str, trust: ssl.SSLContext | bool = True) -> str:
    """A one-time token for one new host of the fleet."""
    return make_token(url, token, "join", "dev fleet", "10m", trust)


def make_token(url: str, token: str, kind: str, name: str, expiry: str, trust: ssl.SSLContext | bool = True) -> str:
    response = httpx.post(f"{url}/v1/tokens", json={"kind": kind, "expiry": expiry, "name": name},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False, verify=trust)
    response.raise_for_status()
    return str(response.json()["token"])


def cut_link(fleet: dict[str, Any], component: dict[str, Any], only_with: list[str] | None = None) -> None:
    """In a netns fleet, drop every frame of a component's link (or only those with `only_with`'s addresses)."""
    if fleet.get("netns") and component.get("node"):
        try:
            FleetNetwork.from_fleet(fleet["netns"]).cut(component["node"], only_with)
        except FleetNetError as exc:
            raise FleetError(f"cutting {component['node']} off: {exc}") from None


def heal_links(fleet: dict[str, Any], component: dict[str, Any] | None = None) -> int:
    """In a netns fleet, restore a component's link (or every one); returns how many cuts went."""
    if not fleet.get("netns") or (component is not None and not component.get("node")):
        return 0
    try:
        return FleetNetwork.from_fleet(fleet["netns"]).heal(component["node"] if component else None)
    except FleetNetError as exc:
        raise FleetError(f"healing the fleet network: {exc}") from None


def restart_agent(data_dir: Path, host_id: str) -> dict[str, Any]:
    """Start a host's agent again (after a crash or a drill) and record its new PID in fleet.json."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    host = next((h for h in fleet["hosts"] if h["id"] == host_id), None)
    if host is None:
        raise FleetError(f"no host {host_id!r} in this fleet")
    if pid_alive(host["pid"]):
        raise FleetError(f"the agent of {host_id} is still running (pid {host['pid']})")
    heal_links(fleet, host)  # a power cut took its link down: it is back with the host
    host["pid"] = start_agent(host, fleet["token"])
    write_fleet(data_dir, fleet)
    return dict(host)


def restart_server(data_dir: Path, index: int = 0) -> dict[str, Any]:
    """Start a control-plane replica again (after `kill-server`; the first unless `index` says) with its
    recorded arguments; new PID in fleet.json."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    server = replicas(fleet)[index]
    if pid_alive(server["pid"]):
        raise FleetError(f"the server is still running (pid {server['pid']})")
    server["pid"] = _spawn([*roost_command(), *server["argv"]], Path(server["log"]), env=server_env(fleet),
                           enter=server.get("enter"))
    if index == 0:
        fleet["server"]["pid"] = server["pid"]
    write_fleet(data_dir, fleet)
    _wait_http(f"{server['url']}/healthz", 30, lambda: pid_alive(server["pid"]), Path(server["log"]),
               verify(fleet))
    return dict(server)


def _note_leads(fleet: dict[str, Any], server: dict[str, Any], token: str, timeout: float) -> None:
    """Record in `server` whether that replica leads the control plane now (left as it was if it cannot say)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        server["leads"] = bool(httpx.get(f"{server['url']}/v1/control-plane", timeout=timeout, trust_env=False,
                                         verify=verify(fleet),
                                         headers={"Authorization": f"Bearer {token}"}).json().get("leads"))


def server_env(fleet: dict[str, Any]) -> dict[str, str]:
    """What the server's environment adds: where libpq finds the fleet's PostgreSQL password."""
    if not fleet.get("postgres"):
        return {}
    return LocalPostgres(Path(fleet["postgres"]["dir"]), int(fleet["postgres"]["port"])).env()


def verify(fleet: dict[str, Any]) -> ssl.SSLContext | bool:
    """How to check the fleet's components when calling them: against its CA alone, if it has one."""
    return Trust(Path(fleet["ca"])).context() if fleet.get("ca") else True


def _wait_http(url: str, timeout: float, alive: Any, log: Path, trust: ssl.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise FleetError(f"process exited during start-up; its log ({log}) ends with:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, trust_env=False, verify=trust).status_code == 200:
                return
        time.sleep(0.05)
    raise FleetError(f"{url} did not answer within {timeout:g}s")


def _wait_hosts(url: str, token: str, wanted: set[str], timeout: float, fleet: dict[str, Any],
                trust: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for host in fleet["hosts"]:
            if not pid_alive(host["pid"]):
                log = Path(host["log"])
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise FleetError(f"agent {host['id']} exited during start-up; its log ends with:\n{tail}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            hosts = httpx.get(f"{url}/v1/hosts", headers={"Authorization": f"Bearer {token}"}, timeout=2,
                              trust_env=False, verify=trust).json()
            seen = {h["id"] for h in hosts if h["status"] == "ok"}
            if wanted <= seen:
                return
        time.sleep(0.05)
    raise FleetError(f"hosts not healthy after {timeout:g}s: {', '.join(sorted(wanted - seen))}")


def _recorded_pid(record: Path) -> set[int]:
    """A machine record's main process, if it is still that process: a pid the machine no longer holds may
    belong to anything now (another fleet's server), and signals sent to it would land there."""
    try:
        run = json.loads(record.read_text()).get("run") or {}
        pid, start = int(run["pid"]), int(run["proc_start"])
    except (ValueError, OSError, KeyError, TypeError, AttributeError):
        return set()
    return {pid} if pid > 0 and proc_start_time(pid) == start else set()


def machine_pids(host_data_dir: Path) -> set[int]:
    """Every process of every machine an agent runs: from its records and its machines' cgroups."""
    pids: set[int] = set()
    records = host_data_dir / "records"
    if records.is_dir():
        for path in records.glob("*.json"):
            pids |= _recorded_pid(path)
    for base in Cgroups.bases(host_data_dir.name):
        for procs in base.glob("*/cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids | host_pids(host_data_dir.name)


def machine_processes(host_data_dir: Path, machine_id: str) -> set[int]:
    """The live processes of one machine: its recorded main process and everything in its cgroup."""
    pids = _recorded_pid(host_data_dir / "records" / f"{machine_id}.json")
    for base in Cgroups.bases(host_data_dir.name):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in (base / machine_id / "cgroup.procs").read_text().split())
    pids |= host_pids(host_data_dir.name, machine_id)  # a container machine's processes, in its own cgroup
    return {p for p in pids if pid_alive(p)}


def restart_proxy(data_dir: Path, region: str) -> dict[str, Any]:
    """Start a region's edge again (after a region was killed) with its recorded arguments."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    proxy = next((p for p in fleet.get("proxies", []) if p["region"] == region), None)
    if proxy is None:
        raise FleetError(f"no edge in region {region!r} in this fleet")
    if pid_alive(proxy["pid"]):
        raise FleetError(f"the {region} edge is still running (pid {proxy['pid']})")
    proxy["pid"] = _spawn([*roost_command(), *proxy["argv"]], Path(proxy["log"]),
                          env={"ROOST_API_TOKEN": proxy.get("admin_token") or fleet["token"]}, enter=proxy.get("enter"))
    write_fleet(data_dir, fleet)
    _wait_http(f"{proxy['admin_url']}/healthz", 20, lambda: pid_alive(proxy["pid"]), Path(proxy["log"]))
    return dict(proxy)


def _terminate(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def start_registry(data: Path, port: int, address: str = "127.0.0.1") -> dict[str, Any]:
    """The fleet's OCI registry: Debian's docker-registry (the CNCF distribution server) on loopback, its blobs in
    the fleet's directory. Waits until it answers."""
    if shutil.which("docker-registry") is None:
        raise FleetError("the fleet's registry needs docker-registry (apt-get install docker-registry; "
                         "./scripts/setup installs it), or pass --registry-port 0")
    if not _port_free(address, port):
        raise FleetError(f"{address}:{port} is in use; pass --registry-port to use another")
    root = data / "registry"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}:{port}\n")
    log = data / "logs" / "registry.log"
    pid = _spawn(["docker-registry", "serve", str(config)], log)
    _wait_http(f"http://{address}:{port}/v2/", 20, lambda: pid_alive(pid), log, True)
    return {"address": f"{address}:{port}", "pid": pid, "log": str(log), "data_dir": str(root / "data")}


def kill_machines(host_data_dir: Path) -> int:
    """SIGKILL every machine process of one host (its process groups too); returns how many were found."""
    pids = machine_pids(host_data_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # Thaw frozen cgroups so that their killed processes can actually exit.
    for state in Cgroups.bases(host_data_dir.name)[1].glob("*/freezer.state"):
        with contextlib.suppress(OSError):
            state.write_text("THAWED")
    return len(pids)


def kill_keeper(host_data_dir: Path) -> bool:
    """SIGKILL a host's fence keeper (a power cut takes it too; `down` leaves nothing running)."""
    pid = KeeperFiles(host_data_dir).keeper_pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    return True


def down(data_dir: Path, purge: bool = False) -> dict[str, int]:
    """Stop everything the fleet in `data_dir` started; nothing is left running."""
    fleet = read_fleet(data_dir)
    stopped = {"agents": 0, "machines": 0, "proxies": 0, "server": 0}
    if fleet:
        agents = [h["pid"] for h in fleet.get("hosts", []) if pid_alive(h["pid"])]
        for pid in agents:  # agents first, hard: a dying agent must not restart machines
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        stopped["agents"] = len(agents)
        for host in fleet.get("hosts", []):
            kill_keeper(Path(host["data_dir"]))
            stopped["machines"] += kill_machines(Path(host["data_dir"]))
        proxies = [p["pid"] for p in fleet.get("proxies", []) if pid_alive(p["pid"])]
        if fleet.get("anycast") and pid_alive(fleet["anycast"]["pid"]):
            proxies.append(fleet["anycast"]["pid"])
        _terminate(proxies, 3)
        stopped["proxies"] = len(proxies)
        servers = [s["pid"] for s in fleet.get("servers") or [fleet.get("server") or {}]
                   if s.get("pid") and pid_alive(s["pid"])]
        if servers:
            _terminate(servers, 5)
            stopped["server"] = len(servers)
        for extra in fleet.get("extra_pids", []):
            _terminate([extra], 2)
        if fleet.get("registry", {}).get("pid") and pid_alive(fleet["registry"]["pid"]):
            _terminate([fleet["registry"]["pid"]], 3)
        if fleet.get("postgres"):  # after the server, its one client
            LocalPostgres(Path(fleet["postgres"]["dir"]), int(fleet["postgres"]["port"])).stop()
        deadline = time.monotonic() + 5
        pids = agents + proxies
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        for host in fleet.get("hosts", []):
            _remove_cgroups(host["id"])
            if host.get("driver") == "container" or "container" in (host.get("argv") or []):
                stopped["machines"] += sweep(Path(host["data_dir"]) / "machines", host["id"])
            unmount_under(Path(host["data_dir"]))  # its volumes' filesystems (mounts outlive their agent)
        if fleet.get("netns"):  # last: nothing runs in its namespaces any more
            FleetNetwork.from_fleet(fleet["netns"]).remove()
        with contextlib.suppress(FileNotFoundError):
            (data_dir / "fleet.json").unlink()
    if purge and data_dir.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
    return stopped


def _remove_cgroups(host_id: str) -> None:
    for base in Cgroups.bases(host_id):
        for child in base.glob("*"):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()


def status(data_dir: Path) -> dict[str, Any] | None:
    fleet = read_fleet(data_dir)
    if fleet is None:
        return None
    fleet["server"]["alive"] = pid_alive(fleet["server"]["pid"])
    live: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {fleet['token']}"}
    for server in fleet.get("servers") or []:  # each replica: alive, and whether it leads now
        server["alive"] = pid_alive(server["pid"])
        if server["alive"]:
            _note_leads(fleet, server, fleet["token"], timeout=2)
    answering = [s for s in replicas(fleet) if s.get("alive", True) and pid_alive(s["pid"])]
    if answering:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            hosts = httpx.get(f"{answering[0]['url']}/v1/hosts", timeout=2, trust_env=False, verify=verify(fleet),
                              headers=headers).json()
            live = {h["id"]: h for h in hosts}
    for host in fleet["hosts"]:
        host["alive"] = pid_alive(host["pid"])
        host["status"] = live.get(host["id"], {}).get("status", "unknown")
        host["machines"] = live.get(host["id"], {}).get("used", {}).get("machines", 0)
    for proxy in fleet.get("proxies", []):
        proxy["alive"] = pid_alive(proxy["pid"])
    if fleet.get("anycast"):
        fleet["anycast"]["alive"] = pid_alive(fleet["anycast"]["pid"])
    return fleet
