"""`roost agent`: run a host agent."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from roost.cli.common import (
    CA_HELP,
    DEFAULT_HOME,
    TLS_CERT_HELP,
    TLS_KEY_HELP,
    advertised_address,
    fleet_token,
    log_format_option,
    parse_listen,
    servers_of,
    tls_setup,
    use_log_format,
)
from roost.cli.config_file import config_option
from roost.cli.output import CliError
from roost.core.ids import HOST_ID_RE
from roost.core.regions import is_known


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent(
        config: Path = config_option(),
        log_format: str = log_format_option(),
        server: str = typer.Option(..., "--server",
                                   help="Control plane URL, e.g. https://127.0.0.1:4280; replicas: URL,URL,..."),
        token: str = typer.Option(None, "--token", envvar="ROOST_API_TOKEN",
                                  help="The fleet token (better from ROOST_API_TOKEN or --token-file: "
                                       "a command line shows in ps)."),
        token_file: Path = typer.Option(None, "--token-file", help="A file holding the fleet token."),
        join_token: str = typer.Option(None, "--join-token", envvar="ROOST_JOIN_TOKEN",
                                       help="Join the fleet with this one-time token ('roost hosts join-token') "
                                            "and keep a credential of this host's own instead of the fleet token."),
        region: str = typer.Option(..., "--region", help="This host's region code, e.g. ams."),
        host_id: str = typer.Option("", "--host-id", help="Stable host id (default: hostname + address)."),
        listen: str = typer.Option("127.0.0.1:4281", "--listen", help="This host's address and agent port."),
        advertise: str = typer.Option("", "--advertise",
                                      help="The address the control plane, edges and other hosts reach this host "
                                           "at (needed with --listen 0.0.0.0:PORT or behind NAT; default: "
                                           "--listen's). The control plane checks it at join."),
        cpus: int = typer.Option(os.cpu_count() or 1, "--cpus", help="CPUs this host offers."),
        memory_mb: int = typer.Option(4096, "--memory-mb", help="Memory this host offers, MB."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Where machines, images and records live."),
        heartbeat_interval: float = typer.Option(0.25, "--heartbeat-interval", help="Seconds between heartbeats."),
        driver: str = typer.Option("process", "--driver",
                                   help="container (runc: each machine isolated, with its own network), process "
                                        "(machines are host processes: no isolation) or fake (tests)."),
        machine_net: str = typer.Option("10.213.0.0/24", "--machine-net",
                                        help="The container driver's subnet for this host's machines; give each "
                                             "host of a fleet its own (docs/images.md)."),
        private_net: str = typer.Option("", "--private-net",
                                        help="The fleet's whole machine range (holding every host's --machine-net): "
                                             "machines route it through this host to machines on other hosts "
                                             "(needs IP forwarding and routes between hosts; "
                                             "docs/private-network.md). Empty: machines reach this host only."),
        wireguard_port: int = typer.Option(0, "--wireguard-port",
                                           help="Join the fleet's WireGuard mesh on this UDP port (e.g. 51820): "
                                                "the private network between hosts, encrypted, set up by Roost "
                                                "(needs --private-net; wireguard-tools, and the kernel's module or "
                                                "wireguard-go). 0: routes between hosts are the operator's."),
        dns_port: int = typer.Option(53, "--dns-port",
                                     help="Port of the .internal resolver on the machine subnet's gateway "
                                          "(container driver; machines use it on 53; 0: none)."),
        registry_auth: Path = typer.Option(None, "--registry-auth", envvar="ROOST_REGISTRY_AUTH",
                                           help="Registry credentials, in ~/.docker/config.json's format (auths)."),
        insecure_registry: list[str] = typer.Option([], "--insecure-registry",
                                                    help="A registry (HOST:PORT) reached over plain HTTP "
                                                         "(loopback registries always are); repeatable."),
        no_cgroups: bool = typer.Option(False, "--no-cgroups", help="Do not use cgroups even where allowed."),
        no_fence_keeper: bool = typer.Option(
            False, "--no-fence-keeper",
            help="Do not run the fence keeper (a separate process that stops watched machines when this agent "
                 "is frozen or dead past its lease); without it a frozen agent's machines may run beside their "
                 "standbys."),
        tls_cert: Path = typer.Option(None, "--tls-cert", help=TLS_CERT_HELP),
        tls_key: Path = typer.Option(None, "--tls-key", help=TLS_KEY_HELP),
        ca: Path = typer.Option(None, "--ca", help=CA_HELP),
    ) -> None:
        """Run a host agent: register the host, heartbeat, and run machines."""
        use_log_format(log_format)
        from roost.agent.main import UNSPECIFIED, AgentConfig, default_host_id, run
        from roost.registry import RegistryAccess

        if not is_known(region):
            raise CliError(f"unknown region {region!r}; see 'roost platform regions' for the codes")
        host, port = parse_listen(listen)
        if advertise:
            advertise = advertised_address(advertise)
        elif host in UNSPECIFIED:
            raise CliError(f"--listen {listen} listens on every address: say which one the control plane and "
                           "other hosts reach this host at with --advertise ADDRESS")
        host_id = host_id or default_host_id(advertise or host)
        if not HOST_ID_RE.match(host_id):
            raise CliError(f"invalid --host-id {host_id!r}: letters, digits, '.', '_' and '-'")
        if driver not in ("container", "process", "fake"):
            raise CliError(f"unknown --driver {driver!r}: use container, process or fake")
        if driver == "container":
            from roost.agent.drivers.container import runc_available
            from roost.agent.netns import HostNetwork, NetworkError

            if not runc_available():
                raise CliError("--driver container needs root, runc, tini and nft "
                               "(apt-get install runc tini nftables); or use --driver process, "
                               "which does not isolate machines")
            try:
                HostNetwork(host_id, machine_net, private_net)
            except NetworkError as exc:
                raise CliError(f"--machine-net/--private-net: {exc}") from None
        if wireguard_port:
            from roost.agent.wireguard import available

            if not 0 < wireguard_port < 65536:
                raise CliError(f"--wireguard-port {wireguard_port}: a UDP port is 1-65535 (0: no mesh)")
            if driver != "container" or not private_net:
                raise CliError("--wireguard-port joins machines' private network across hosts: it needs "
                               "--driver container and --private-net")
            why = available()
            if why is not None:
                raise CliError(f"--wireguard-port: {why}")
        if not 0 <= dns_port <= 65535:
            raise CliError(f"--dns-port {dns_port}: a port is 1-65535, or 0 for no .internal resolver")
        if registry_auth is not None and not registry_auth.is_file():
            raise CliError(f"--registry-auth {registry_auth}: no such file")
        if cpus < 1 or memory_mb < 64 or heartbeat_interval <= 0:
            raise CliError("--cpus must be >= 1, --memory-mb >= 64 and --heartbeat-interval > 0")
        tls, trust = tls_setup(tls_cert, tls_key, ca)
        server, trust = servers_of(trust, server, "--server")
        if trust.pinned and tls is None:
            raise CliError("a fleet that speaks TLS calls its agents with TLS: give --tls-cert and --tls-key too")
        data_dir = data_dir or DEFAULT_HOME / "agents" / host_id
        joined = bool(join_token) or (data_dir / "credential.json").exists()
        run(AgentConfig(
            server_url=server, token=(token or "") if joined else fleet_token(token, token_file), region=region,
            host_id=host_id, join_token=join_token or "",
            listen_host=host, listen_port=port, advertise=advertise,
            cpus=cpus, memory_mb=memory_mb, data_dir=data_dir,
            heartbeat_interval=heartbeat_interval, driver=driver, cgroups=not no_cgroups, tls=tls, trust=trust,
            fence_keeper=not no_fence_keeper, dns_port=dns_port,
            machine_net=machine_net, private_net=private_net, wireguard_port=wireguard_port,
            registry=RegistryAccess(registry_auth, frozenset(insecure_registry)),
        ))

