"""`roost tls init|issue` (the fleet's CA, for server, agents and edges) and `roost certs add|list|show|remove`
(apps' certificates, which the edges present for their hostnames)."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import APP
from roost.cli.output import CliError, command_group, console, print_json, print_table
from roost.client.api import Api

tls_app = command_group(help="The fleet's CA: certificates for server, agents and edges.")
certs_app = command_group(help="An app's TLS certificates, presented by the edges.")


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
    app.add_typer(certs_app, name="certs")


@tls_app.command("init")
def init(directory: Path = typer.Argument(..., help="Where the CA lives: DIR/tls/ca.pem and ca.key (0600).")) -> None:
    """Make the fleet CA (once; an existing one is kept). Give every component DIR/tls/ca.pem as --ca."""
    from roost.fleet_ca import fleet_ca

    _, cert = fleet_ca(directory)
    console.print(f"fleet CA: {cert} (give it to every component as --ca; keep ca.key beside it private)",
                  highlight=False)


@tls_app.command("issue")
def issue(directory: Path = typer.Argument(..., help="The CA's directory (as for 'roost tls init')."),
          name: str = typer.Argument(..., help="A file name for it, e.g. agent-ams-1: DIR/tls/NAME.pem and .key"),
          addresses: list[str] = typer.Argument(..., help="The addresses and DNS names it is reached at.")) -> None:
    """A certificate from the fleet CA for a server or an agent (--tls-cert/--tls-key)."""
    from roost.fleet_ca import issue_files

    if not (directory / "tls" / "ca.pem").exists():
        raise CliError(f"no fleet CA in {directory}: run 'roost tls init {directory}' first")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CliError(f"invalid name {name!r}: letters, digits, '.', '_' and '-'")
    try:
        cert, key = issue_files(directory, name, addresses)
    except ValueError as exc:
        raise CliError(f"cannot issue a certificate for {' '.join(addresses)}: {exc}") from None
    console.print(f"--tls-cert {cert} --tls-key {key}", highlight=False)


@certs_app.command("add")
def add(hostname: str = typer.Argument(..., help="The name it is for, e.g. www.example.com"),
        app_: str = APP,
        fullchain: Path = typer.Option(None, "--fullchain", help="The certificate chain (PEM), leaf first."),
        private_key: Path = typer.Option(None, "--private-key", help="Its key (PEM)."),
        acme: bool = typer.Option(False, "--acme", help="Order it from the fleet's ACME CA instead (http-01)."),
        json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Give one of an app's hostnames a certificate: upload one (--fullchain, --private-key) or order one from
    the fleet's ACME CA (--acme); every edge presents it within seconds."""
    if acme == (fullchain is not None or private_key is not None) or (not acme and (not fullchain or not private_key)):
        raise CliError("give --fullchain and --private-key (a certificate you have), or --acme (order one)")
    if acme:
        made = Api().post(f"/v1/apps/{app_}/certificates/acme", json={"hostname": hostname})
    else:
        try:
            body = {"hostname": hostname, "fullchain": fullchain.read_text(), "private_key": private_key.read_text()}
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the certificate or key: {exc}") from None
        made = Api().post(f"/v1/apps/{app_}/certificates/custom", json=body)
    if json_out:
        print_json(made)
        return
    if acme:
        console.print(f"{hostname}: ordered from the ACME CA ('roost certs show {hostname} -a {app_}' shows how it "
                      "goes)", highlight=False)
        return
    console.print(f"{hostname}: {made['status']} (until {made['certificates'][0]['expires_at']})", highlight=False)


@certs_app.command("list")
def list_(app_: str = APP, json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """An app's certificates."""
    data = Api().get(f"/v1/apps/{app_}/certificates")
    if json_out:
        print_json(data)
        return
    print_table(["HOSTNAME", "STATUS", "SOURCE", "UPDATED"],
                [[c["hostname"], c["status"], "custom" if c["has_custom_certificate"] else "acme", c["updated_at"]]
                 for c in data["certificates"]])


@certs_app.command("show")
def show(hostname: str = typer.Argument(...), app_: str = APP,
         json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """What a certificate is for and until when."""
    cert = Api().get(f"/v1/apps/{app_}/certificates/{hostname}")
    if json_out:
        print_json(cert)
        return
    for key, value in cert.items():
        if not isinstance(value, dict | list):
            console.print(f"{key:<26} {value}", highlight=False)


@certs_app.command("remove")
def remove(hostname: str = typer.Argument(...), app_: str = APP) -> None:
    """Stop presenting a certificate (the edges drop it within seconds)."""
    Api().delete(f"/v1/apps/{app_}/certificates/{hostname}")
    console.print(f"removed the certificate for {hostname}", highlight=False)
