"""`roost proxy` (run an edge) and `roost ips list` (an app's addresses on the edges)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from roost.cli.appconfig import APP
from roost.cli.common import (
    CA_HELP,
    advertised_address,
    fleet_token,
    log_format_option,
    parse_listen,
    servers_of,
    tls_setup,
    use_log_format,
)
from roost.cli.config_file import config_option
from roost.cli.output import CliError, command_group, print_json, print_table
from roost.client.api import Api
from roost.core.regions import is_known

ips_app = command_group(help="An app's addresses on the edges (its TCP services).")


def register(app: typer.Typer) -> None:
    app.add_typer(ips_app, name="ips")

    @app.command("proxy")
    def proxy(
        config: Path = config_option(),
        log_format: str = log_format_option(),
        server: str = typer.Option(..., "--server", help="Control plane URL; several replicas: URL,URL,..."),
        token: str = typer.Option(None, "--token", envvar="ROOST_API_TOKEN",
                                  help="The fleet token (better from ROOST_API_TOKEN or --token-file: "
                                       "a command line shows in ps)."),
        token_file: Path = typer.Option(None, "--token-file", help="A file holding the fleet token."),
        region: str = typer.Option(..., "--region", help="This edge's region."),
        listen: str = typer.Option("127.0.0.1:4400", "--listen", help="HTTP listen address."),
        advertise: str = typer.Option("", "--advertise",
                                      help="The address clients reach this edge at, as the control plane lists it "
                                           "(needed with --listen 0.0.0.0:PORT or behind NAT; default: --listen's)."),
        admin: str = typer.Option("", "--admin", help="Admin address for /metrics, /healthz, /routes."),
        domain: str = typer.Option("localhost", "--domain", help="Apps answer at APP.DOMAIN."),
        tcp_prefix: str = typer.Option("127.100", "--tcp-prefix",
                                       help="First two octets of this edge's block of per-app TCP addresses."),
        idle_interval: float = typer.Option(300.0, "--idle-interval",
                                            help="Seconds between idle-loop passes (autostop)."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Where the routing snapshot is kept."),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes sharing the port."),
        worker_index: int = typer.Option(0, "--worker-index", hidden=True),
        proxy_id: str = typer.Option("", "--id", help="Edge id (default proxy-REGION)."),
        route_timeout: float = typer.Option(15.0, "--route-timeout",
                                            help="How long a request waits for a machine (start, limits)."),
        upstream_timeout: float = typer.Option(60.0, "--upstream-timeout",
                                               help="How long a machine has to send its response head."),
        header_timeout: float = typer.Option(30.0, "--header-timeout",
                                             help="Seconds a request head has from its first byte."),
        idle_timeout: float = typer.Option(75.0, "--idle-timeout",
                                           help="Seconds a keep-alive connection may wait for its next request."),
        max_conns_per_client: int = typer.Option(1024, "--max-conns-per-client", min=1,
                                                 help="Open connections one client address may hold (429 past it)."),
        connect_timeout: float = typer.Option(
            0.0, "--connect-timeout", min=0.0,
            help="Seconds a connect to a machine may take; 0: per address, from measured connect times "
                 "(0.15 s to 2 s)."),
        route_to_suspect_hosts: bool = typer.Option(
            False, "--route-to-suspect-hosts",
            help="Keep sending traffic to hosts the control plane suspects until it declares them dead (Fly's "
                 "way); by default they get traffic only if nothing else can serve."),
        rtt_file: Path = typer.Option(None, "--rtt-file", help="JSON {\"ams-ewr\": ms, ...} overriding RTTs."),
        simulate_rtt: bool = typer.Option(False, "--simulate-rtt",
                                          help="Add the RTT when forwarding to another region (dev fleet)."),
        ca: Path = typer.Option(None, "--ca", help=CA_HELP),
        tls_port: int = typer.Option(0, "--tls-port", min=0, max=65535,
                                     help="Terminate TLS for apps on this port (handlers tls+http; 0: off)."),
        tls_cert: Path = typer.Option(None, "--tls-cert",
                                      help="Default certificate for names no app has one for (e.g. *.DOMAIN)."),
        tls_key: Path = typer.Option(None, "--tls-key", help="The key of --tls-cert."),
    ) -> None:
        """Run an edge proxy: routing, balancing, autostart/autostop, retries."""
        use_log_format(log_format)
        from roost.proxy.forwarding import HttpSettings
        from roost.proxy.main import ProxyConfig, run

        if not is_known(region):
            raise CliError(f"unknown region {region!r}; see 'roost platform regions'")
        parts = tcp_prefix.split(".")
        if len(parts) != 2 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
            raise CliError(f"invalid --tcp-prefix {tcp_prefix!r}: two octets, e.g. 127.100")
        for name, value in (("--idle-interval", idle_interval), ("--header-timeout", header_timeout),
                            ("--idle-timeout", idle_timeout), ("--route-timeout", route_timeout),
                            ("--upstream-timeout", upstream_timeout)):
            if not value > 0:
                raise CliError(f"{name} must be a positive number of seconds")
        tls_default, trust = tls_setup(tls_cert, tls_key, ca)
        server, trust = servers_of(trust, server, "--server")
        host, port = parse_listen(listen)
        if advertise:
            advertise = advertised_address(advertise)
        elif host in ("0.0.0.0", "::"):
            raise CliError(f"--listen {listen} listens on every address: say which one clients reach this edge at "
                           "with --advertise ADDRESS")
        admin_host, admin_port = parse_listen(admin) if admin else ("127.0.0.1", 0)
        argv = [a for a in sys.argv[2:]]
        run(ProxyConfig(server_url=server, token=fleet_token(token, token_file), region=region,
                        listen_host=host, listen_port=port, advertise=advertise,
                        admin_host=admin_host, admin_port=admin_port, domain=domain, tcp_prefix=tcp_prefix,
                        idle_interval=idle_interval, data_dir=data_dir, workers=workers, worker_index=worker_index,
                        proxy_id=proxy_id, rtt_file=rtt_file, simulate_rtt=simulate_rtt,
                        http=HttpSettings(route_timeout=route_timeout, upstream_timeout=upstream_timeout,
                                          header_timeout=header_timeout, idle_timeout=idle_timeout,
                                          max_conns_per_client=max_conns_per_client,
                                          connect_timeout=connect_timeout,
                                          avoid_suspect_hosts=not route_to_suspect_hosts), trust=trust,
                        tls_port=tls_port, tls_default=tls_default),
            argv)


@ips_app.command("list")
def list_ips(app: str = APP, json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """An app's TCP addresses, one per edge (region)."""
    api = Api()
    ips = api.get(f"/v1/apps/{app}/ip_assignments")["ips"]
    proxies = {p["region"]: p for p in api.get("/v1/proxies")}
    if json_out:
        print_json(ips)
        return
    print_table(["ADDRESS", "REGION", "HTTP (Host header)", "CREATED"],
                [[i["ip"], i["region"], f"{proxies.get(i['region'], {}).get('url', '')} "
                  f"Host: {app}.{proxies.get(i['region'], {}).get('domain', 'localhost')}", i["created_at"]]
                 for i in ips])
