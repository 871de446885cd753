"""`roost apps ...`."""

from __future__ import annotations

import typer

from roost.cli.output import CliError, command_group, console, print_json, print_table
from roost.client.api import Api

apps_app = command_group(help="Create, list and destroy apps.")


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
    app.add_typer(apps_app, name="app", hidden=True)


@apps_app.command("create")
def create(
    name: str = typer.Argument(..., help="App name: lowercase letters, digits, dashes."),
    org: str = typer.Option("personal", "--org", "-o"),
    primary_region: str = typer.Option("", "--primary-region", "--region", "-r", help="The app's primary region."),
    json_out: bool = typer.Option(False, "--json", "-j"),
) -> None:
    """Create an app."""
    app = Api().post("/v1/apps", json={"app_name": name, "org_slug": org, "primary_region": primary_region})
    if json_out:
        print_json(app)
    else:
        console.print(f"New app created: [bold]{name}[/bold]")


@apps_app.command("list")
def list_apps(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """List apps."""
    apps = Api().get("/v1/apps")["apps"]
    if json_out:
        print_json(apps)
        return
    print_table(["NAME", "ORG", "STATUS", "PRIMARY REGION", "MACHINES", "VOLUMES", "CREATED"],
                [[a["name"], a["organization"]["slug"], a["status"], a.get("primary_region", ""), a["machine_count"],
                  a["volume_count"], a.get("created_at", "")] for a in apps])


@apps_app.command("destroy")
def destroy(name: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    """Destroy an app with all its machines and volumes."""
    if not yes and not typer.confirm(f"Destroy app {name} and all its machines and volumes?"):
        raise CliError("not destroyed")
    Api().delete(f"/v1/apps/{name}")
    console.print(f"Destroyed app {name}")
