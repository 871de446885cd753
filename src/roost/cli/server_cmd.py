"""`roost server`: run the control plane."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.common import (
    CA_HELP,
    DEFAULT_HOME,
    TLS_CERT_HELP,
    TLS_KEY_HELP,
    log_format_option,
    parse_listen,
    tls_setup,
    use_log_format,
)
from roost.cli.config_file import config_option
from roost.cli.output import CliError
from roost.core.cost import PriceError, Prices, load_prices
from roost.core.regions import is_known
from roost.core.units import parse_go_duration


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        config: Path = config_option(),
        log_format: str = log_format_option(),
        data_dir: Path = typer.Option(DEFAULT_HOME / "server", "--data-dir",
                                      help="Where the store, images and token live."),
        listen: str = typer.Option("127.0.0.1:4280", "--listen", help="HOST:PORT for the Machines API."),
        region: str = typer.Option("ams", "--region", help="Default region for machines that name none."),
        store: str = typer.Option("", "--store", envvar="ROOST_STORE",
                                  help="Store URL: sqlite:///PATH (default: roost.db in the data dir) or "
                                       "postgresql://USER@HOST:PORT/DB (password from PGPASSFILE or "
                                       "PGPASSWORD, not the command line)."),
        advertise: str = typer.Option("", "--advertise",
                                      help="With several replicas: the URL the others reach this one at (default: "
                                           "the --listen address)."),
        heartbeat_interval: float = typer.Option(0.25, help="Expected agent heartbeat interval, seconds."),
        suspect_after: float = typer.Option(0.75, help="Seconds without a heartbeat before a host is suspect."),
        dead_after: float = typer.Option(1.5, help="Seconds without a heartbeat before a host is unreachable."),
        lease: float = typer.Option(1.0, "--lease",
                                    help="Seconds a host may go without contact (control plane or most peers) "
                                         "before it stops its watched machines (fencing)."),
        lease_margin: float = typer.Option(0.5, "--lease-margin",
                                           help="A standby starts lease + margin after its host's last heartbeat."),
        peer_probe_timeout: float = typer.Option(0.3, "--peer-probe-timeout",
                                                 help="Seconds one host's probe of another waits (WAN: 3 RTTs)."),
        secrets_key: Path = typer.Option(None, "--secrets-key",
                                         help="The keyring that seals secrets (default: secrets.key in the data "
                                              "dir); keep it apart from database backups."),
        rotate_secrets_key: bool = typer.Option(False, "--rotate-secrets-key",
                                                help="Add a new sealing key and re-seal every secret with it."),
        tls_cert: Path = typer.Option(None, "--tls-cert", help=TLS_CERT_HELP),
        tls_key: Path = typer.Option(None, "--tls-key", help=TLS_KEY_HELP),
        ca: Path = typer.Option(None, "--ca", help=CA_HELP),
        acme_directory: str = typer.Option("", "--acme-directory",
                                           help="An ACME CA's directory URL: apps' certificates are ordered there "
                                                "(http-01, answered by the edges), e.g. Let's Encrypt's."),
        acme_ca: Path = typer.Option(None, "--acme-ca", help="Trust this CA for the ACME directory (e.g. pebble's)."),
        acme_email: str = typer.Option("", "--acme-email", help="Contact address for the ACME account."),
        registry_auth: Path = typer.Option(None, "--registry-auth", envvar="ROOST_REGISTRY_AUTH",
                                           help="Registry credentials, in ~/.docker/config.json's format (auths)."),
        insecure_registry: list[str] = typer.Option([], "--insecure-registry",
                                                    help="A registry (HOST:PORT) reached over plain HTTP "
                                                         "(loopback registries always are); repeatable."),
        registry: str = typer.Option("", "--registry",
                                     help="The fleet's own registry (HOST:PORT): 'roost image push' and "
                                          "'roost deploy' push there."),
        allow_registry: list[str] = typer.Option([], "--allow-registry",
                                                 help="Machines may use images only from registries matching "
                                                      "this pattern (e.g. '127.0.0.1:*'); repeatable; "
                                                      "default: any registry."),
        prices: Path = typer.Option(None, "--prices",
                                    help="A price table (TOML: [compute] shared_cpu, performance_cpu, memory_gb; "
                                         "[storage] rootfs_gb, volume_gb; dollars per 30-day month) for "
                                         "'roost cost' (default: Fly's public prices)."),
        snapshot_interval: str = typer.Option("24h", "--snapshot-interval",
                                              help="How often each volume with auto_backup_enabled is snapshotted "
                                                   "(Fly: daily); snapshots are kept snapshot_retention days."),
        snapshot_copy: bool = typer.Option(True, "--snapshot-copy/--no-snapshot-copy",
                                           help="Keep a second copy of each snapshot on another host of its "
                                                "region, so losing a host loses no snapshot."),
    ) -> None:
        """Run the control plane: the Machines API, store, scheduler, failure detector and watch feed."""
        use_log_format(log_format)
        from roost.detector.fencing import LeaseConfig
        from roost.detector.membership import DetectorConfig
        from roost.server.main import ServerConfig, run

        if not is_known(region):
            raise CliError(f"unknown region {region!r}; see 'roost platform regions' for the codes")
        if not 0 < heartbeat_interval <= suspect_after <= dead_after:
            raise CliError("need 0 < --heartbeat-interval <= --suspect-after <= --dead-after")
        if not (0 < lease <= 3600 and 0 <= lease_margin <= 3600):
            raise CliError("--lease must be more than 0 and --lease-margin at least 0 (seconds, at most 3600)")
        if not 0 < peer_probe_timeout <= min(lease, 30):
            raise CliError("--peer-probe-timeout must be more than 0 and at most --lease (and 30 s): a probe that "
                           "outlasts the lease cannot keep a host's contact")
        host, port = parse_listen(listen)
        tls, trust = tls_setup(tls_cert, tls_key, ca)
        if advertise and not advertise.startswith("https://" if tls else "http://"):
            raise CliError(f"--advertise {advertise!r} must be an {'https' if tls else 'http'}:// URL of this server")
        from roost.server.acme_issuer import AcmeConfig

        if acme_directory and not acme_directory.startswith("https://"):
            raise CliError("--acme-directory must be an https:// URL (RFC 8555)")
        if acme_ca is not None and not acme_ca.is_file():
            raise CliError(f"--acme-ca {acme_ca}: no such file")
        acme = AcmeConfig(acme_directory, acme_ca, acme_email) if acme_directory else None
        if registry_auth is not None and not registry_auth.is_file():
            raise CliError(f"--registry-auth {registry_auth}: no such file")
        from roost.registry import RegistryAccess
        from roost.store import StoreError

        try:
            every = parse_go_duration(snapshot_interval)
        except ValueError:
            raise CliError(f"--snapshot-interval: invalid duration {snapshot_interval!r} (e.g. 24h, 30m)") from None
        if every < 1:
            raise CliError("--snapshot-interval: at least 1s")
        table = Prices()
        if prices is not None:
            try:
                table = load_prices(prices.read_text(), str(prices))
            except OSError as exc:
                raise CliError(f"--prices {prices}: {exc.strerror or exc}") from None
            except PriceError as exc:
                raise CliError(f"--prices {exc}") from None

        try:
            run(ServerConfig(data_dir=data_dir, listen_host=host, listen_port=port, default_region=region,
                             store_url=store, detector=DetectorConfig(heartbeat_interval, suspect_after, dead_after),
                             lease=LeaseConfig(lease, lease_margin, peer_probe_timeout),
                             secrets_key=secrets_key, rotate_secrets_key=rotate_secrets_key, tls=tls, trust=trust,
                             acme=acme, registry=RegistryAccess(registry_auth, frozenset(insecure_registry)),
                             allowed_registries=tuple(allow_registry), registry_address=registry,
                             advertise_url=advertise.rstrip("/"), prices=table, snapshot_interval=every,
                             snapshot_copy=snapshot_copy))
        except StoreError as exc:
            raise CliError(str(exc)) from None
