"""`roost dev up|status|down`: the local fleet, Roost's embedded default."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from roost.cli.common import DEFAULT_FLEET_DIR
from roost.cli.output import CliError, command_group, console, err_console, print_json, print_table
from roost.core.regions import is_known
from roost.failover import replicas as fleet_replicas
from roost.failover import server_list

dev_app = command_group(help="Run a whole fleet on this computer.")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")


def _data_dir(value: Path | None) -> Path:
    return (value or Path(os.environ.get("ROOST_DEV_DIR", DEFAULT_FLEET_DIR))).expanduser().resolve()


DATA_OPT = typer.Option(None, "--data-dir", help="Fleet directory (default: $ROOST_DEV_DIR or ~/.roost/dev).")


@dev_app.command("up")
def up(
    regions: str = typer.Option("ams,ewr,syd", "--regions", help="Comma-separated region codes."),
    hosts_per_region: int = typer.Option(2, "--hosts-per-region", min=1, max=50),
    data_dir: Path = DATA_OPT,
    port: int = typer.Option(4280, "--port", help="Control plane port on 127.0.0.1."),
    host_cpus: int = typer.Option(2, "--host-cpus", min=1, help="CPUs each host offers."),
    host_memory_mb: int = typer.Option(4096, "--host-memory-mb", min=256, help="Memory each host offers, MB."),
    agent_port: int = typer.Option(4300, "--agent-port", help="Port every agent listens on (at its own address)."),
    address_offset: int = typer.Option(0, "--address-offset", hidden=True, min=0, max=200,
                                       help="Host N of region R gets 127.0.(OFFSET+R+1).(N+1)."),
    proxy_port: int = typer.Option(4400, "--proxy-port", help="The edge of region R listens on 127.0.0.1:(PORT+R)."),
    admin_port: int = typer.Option(4500, "--admin-port", help="Edge admin ports (/metrics) start here."),
    tcp_octet: int = typer.Option(100, "--tcp-octet", hidden=True, min=1, max=250,
                                  help="The edge of region R gives apps addresses in 127.(OCTET+R).0.0/16."),
    idle_interval: float = typer.Option(30.0, "--idle-interval", help="Seconds between autostop passes."),
    simulate_latency: bool = typer.Option(True, "--simulate-latency/--no-simulate-latency",
                                          help="Edges add the round-trip time when forwarding to another region."),
    anycast_port: int = typer.Option(4399, "--anycast-port", help="The anycast entry (0: none)."),
    tls_port: int = typer.Option(4440, "--tls-port",
                                 help="The edge of region R terminates apps' TLS on 127.0.0.1:(PORT+R) (0: none)."),
    tls: bool = typer.Option(True, "--tls/--no-tls",
                             help="Server, agents and edges speak HTTPS to each other under a fleet CA."),
    driver: str = typer.Option("auto", "--driver",
                               help="How hosts run machines: container (isolated, runc; needs root, runc, tini, "
                                    "skopeo, umoci and the fleet registry), process (no isolation), or auto: "
                                    "container where it can run, else process."),
    registry_port: int = typer.Option(4390, "--registry-port",
                                      help="The fleet's OCI registry on 127.0.0.1:PORT (0: none; skipped when "
                                           "docker-registry is not installed)."),
    store: str = typer.Option("sqlite", "--store",
                              help="The control plane's database: sqlite (a file) or postgresql (a local cluster "
                                   "of Debian's PostgreSQL in the fleet directory)."),
    postgres_port: int = typer.Option(4388, "--postgres-port", help="Where the fleet's PostgreSQL listens."),
    servers: int = typer.Option(1, "--servers", min=1, max=9,
                                help="Control-plane replicas on --port, --port+1, ... (more than one: "
                                     "--store postgresql)."),
    link_latency: bool = typer.Option(True, "--link-latency/--no-link-latency",
                                      help="With --netns: links between regions take their round-trip time "
                                           "(from the RTT catalogue) instead of the edges simulating it."),
    wireguard: bool = typer.Option(True, "--wireguard/--no-wireguard",
                                   help="With --netns and --driver container: machines' private network between "
                                        "hosts over a WireGuard mesh the agents set up, as in production (where "
                                        "wg and the kernel module or wireguard-go are installed); else routes."),
    netns: bool = typer.Option(False, "--netns",
                               help="Every host, edge and server in a network namespace of its own, on a fleet "
                                    "network with no way out; machines reach each other across hosts over the "
                                    "private network; faults cut real links (root; docs/private-network.md)."),
    json_out: bool = typer.Option(False, "--json", "-j"),
) -> None:
    """Start the server and agents (one per 127.0.X.Y address), wait until healthy, print the endpoints."""
    from roost.dev.fleet import FleetError, FleetSpec
    from roost.dev.fleet import up as fleet_up

    codes = [r.strip() for r in regions.split(",") if r.strip()]
    unknown = [r for r in codes if not is_known(r)]
    if not codes or unknown:
        raise CliError(f"unknown region {unknown[0]!r} in --regions; see 'roost platform regions'" if unknown
                       else "--regions needs at least one region code")
    if len(set(codes)) != len(codes):
        raise CliError("--regions lists a region twice")
    import shutil

    if store not in ("sqlite", "postgresql"):
        raise CliError(f"unknown --store {store!r}: use sqlite or postgresql")
    if servers > 1 and store != "postgresql":
        raise CliError("--servers above 1 needs --store postgresql: the replicas share one database")
    if store == "postgresql":
        from roost.dev import postgres

        if not postgres.available():
            raise CliError("--store postgresql needs PostgreSQL's server programs (Debian's 'postgresql' "
                           "package; ./scripts/setup installs it as root)")
    if netns:
        from roost.dev.fleetnet import unavailable

        why = unavailable()
        if why:
            raise CliError(f"--netns: {why}")
    if driver not in ("auto", "process", "container"):
        raise CliError(f"unknown --driver {driver!r}: use auto, container or process")
    if registry_port and shutil.which("docker-registry") is None:
        err_console.print("No fleet registry: docker-registry is not installed (./scripts/setup installs it).")
        registry_port = 0
    missing = _container_needs(registry_port)
    if driver == "container" and missing:
        raise CliError(f"--driver container needs {missing} (./scripts/setup installs them as root); "
                       "use --driver process, which does not isolate machines")
    if driver == "auto":
        driver = "process" if missing else "container"
        if missing:
            err_console.print(f"Machines run as host processes, not isolated: the container driver needs {missing}.")
    spec = FleetSpec(data_dir=_data_dir(data_dir), regions=codes, hosts_per_region=hosts_per_region,
                     server_port=port, host_cpus=host_cpus, host_memory_mb=host_memory_mb,
                     agent_port=agent_port, address_offset=address_offset, proxy_port=proxy_port,
                     admin_port=admin_port, tcp_octet=tcp_octet, idle_interval=idle_interval,
                     simulate_latency=simulate_latency, anycast_port=anycast_port, edge_tls_port=tls_port,
                     tls=tls, driver=driver, registry_port=registry_port, store=store,
                     postgres_port=postgres_port, servers=servers, netns=netns, link_latency=link_latency,
                     wireguard=wireguard)
    try:
        with err_console.status("Starting the fleet...") as status:
            fleet = fleet_up(spec, progress=lambda msg: status.update(f"Starting the fleet: {msg}..."))
    except FleetError as exc:
        raise CliError(str(exc)) from None
    if json_out:
        print_json(fleet)
        return
    _print_fleet(fleet)
    console.print(f"\nFleet is up. State: {spec.data_dir / 'fleet.json'}")
    console.print("The CLI finds this fleet by itself; other clients use:")
    api_url = server_list(fleet)
    console.print(f"  export ROOST_API_URL={api_url} ROOST_API_TOKEN={fleet['token']}"
                  + (f" ROOST_CA_FILE={fleet['ca']}" if fleet.get("ca") else ""))
    if fleet.get("anycast"):
        console.print(f"Anycast entry: http://APP.localhost:{fleet['anycast']['port']}/ sends each client to the "
                      "nearest live edge (say where the client is with the Fly-Client-Region header).")
    if fleet.get("netns"):
        console.print(f"Fleet network: {fleet['netns']['network']} (this computer is "
                      f"{fleet['netns']['operator']} on it); each host, edge and server in a namespace of its own.")
        if fleet.get("private_network"):
            console.print("Machines' private network between hosts: " + (
                "a WireGuard mesh (the agents' --wireguard-port)" if fleet["private_network"] == "wireguard"
                else "routes through each host (no WireGuard here: apt-get install wireguard-tools wireguard-go)"))
    elif fleet["proxies"]:
        first = fleet["proxies"][0]
        console.print(f"Apps answer at http://APP.localhost:{first['url'].rsplit(':', 1)[1]}/ "
                      f"(the {first['region']} edge; one edge per region).")
    if fleet.get("postgres"):
        console.print(f"Store: PostgreSQL {fleet['postgres']['url']} (password in "
                      f"{fleet['postgres']['dir']}/pgpass; data in {fleet['postgres']['dir']}/data).")
    if fleet.get("registry"):
        console.print(f"Image registry: {fleet['registry']['address']} (machines may use "
                      f"\"image\": \"{fleet['registry']['address']}/REPO:TAG\").")
    if driver == "process":
        console.print("Machines run as host processes (--driver process): they are not isolated from the host "
                      "or each other; --driver container isolates them (docs/images.md).")
    else:
        console.print("Machines run in containers (--driver container): each isolated, with its own address.")
    console.print("Stop everything with 'roost dev down'.")


def _container_needs(registry_port: int) -> str:
    """What this computer lacks for the container driver ("" if nothing)."""
    import shutil

    from roost.agent.drivers.container import runc_available

    missing = []
    if not runc_available():
        missing.append("root, runc, tini and nft")
    missing += [tool for tool in ("skopeo", "umoci") if shutil.which(tool) is None]
    if not registry_port:
        missing.append("the fleet registry (docker-registry, --registry-port)")
    return ", ".join(missing)


def _print_fleet(fleet: dict) -> None:  # type: ignore[type-arg]
    replicas = fleet_replicas(fleet)
    rows = []
    for i, server in enumerate(replicas):
        state = "up" if server.get("alive", True) else "DOWN"
        if len(replicas) > 1 and server.get("alive", True):
            state += ", leads" if server.get("leads") else ", follows"
        rows.append(["server" if len(replicas) == 1 else f"server {i + 1}", "-", server["url"], server["pid"], state])
    for h in fleet["hosts"]:
        state = h.get("status", "ok") if h.get("alive", True) else "DOWN"
        rows.append([f"host {h['id']}", h["region"], h["agent_url"], h["pid"], state])
    for p in fleet.get("proxies", []):
        rows.append([f"edge {p['region']}", p["region"], f"{p['url']}  (metrics {p['admin_url']}/metrics)", p["pid"],
                     "up" if p.get("alive", True) else "DOWN"])
    if fleet.get("anycast"):
        a = fleet["anycast"]
        rows.append(["anycast", "-", a["url"], a["pid"], "up" if a.get("alive", True) else "DOWN"])
    print_table(["COMPONENT", "REGION", "ENDPOINT", "PID", "STATUS"], rows)
    console.print(f"Token: {fleet['token']}")


@dev_app.command("anycast", hidden=True)
def anycast(
    listen: str = typer.Option("127.0.0.1:4399", "--listen"),
    edge: list[str] = typer.Option(..., "--edge", help="REGION=HOST:PORT, repeatable."),
    default_region: str = typer.Option(..., "--default-region"),
    rtt_file: Path = typer.Option(None, "--rtt-file"),
    simulate_rtt: bool = typer.Option(False, "--simulate-rtt",
                                      help="Clients feel the round trip to the edge they reach."),
) -> None:
    """Run the dev fleet's anycast entry (started by 'roost dev up')."""
    from roost.cli.common import parse_listen
    from roost.core.regions import RttTable
    from roost.dev.anycast import EdgeAddress, run

    edges = []
    for item in edge:
        region, _, address = item.partition("=")
        host, port = parse_listen(address)
        edges.append(EdgeAddress(region, host, port))
    host, port = parse_listen(listen)
    run(host, port, edges, default_region, RttTable.from_file(rtt_file) if rtt_file else RttTable(), simulate_rtt)


@dev_app.command("relay", hidden=True)
def relay(tap: list[str] = typer.Option(..., "--tap", help="REGION=TAP, repeatable.")) -> None:
    """Carry frames between a netns fleet's regions after their round-trip time (started by 'roost dev up')."""
    import asyncio
    import signal

    from roost.core.regions import estimated_rtt_ms
    from roost.dev.linkdelay import run as relay_frames

    taps = {}
    for item in tap:
        region, _, name = item.partition("=")
        if not is_known(region) or not name:
            raise CliError(f"--tap {item!r}: expected REGION=TAP with a known region")
        taps[region] = name

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await relay_frames(taps, lambda a, b: estimated_rtt_ms(a, b) / 2000.0, stop)

    asyncio.run(main())


@dev_app.command("status")
def status(data_dir: Path = DATA_OPT, json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Show the local fleet."""
    from roost.dev.fleet import status as fleet_status

    fleet = fleet_status(_data_dir(data_dir))
    if fleet is None:
        if json_out:
            print_json(None)
            return
        raise CliError("no local fleet is running; start one with 'roost dev up'")
    if json_out:
        print_json(fleet)
        return
    _print_fleet(fleet)


@dev_app.command("down")
def down(data_dir: Path = DATA_OPT, purge: bool = typer.Option(False, "--purge", help="Also delete its data.")) -> None:
    """Stop everything the local fleet started (by PID), machines included."""
    from roost.dev.fleet import down as fleet_down

    stopped = fleet_down(_data_dir(data_dir), purge=purge)
    console.print(f"Stopped {stopped['server']} server, {stopped['agents']} agents, {stopped['proxies']} proxies "
                  f"and {stopped['machines']} machine processes." + (" Data deleted." if purge else ""))
