"""`roost secrets set|list|unset`: app secrets, given to machines as environment variables."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, key_values, load_config, say
from roost.cli.output import command_group, print_json, print_table
from roost.client.api import Api

secrets_app = command_group(help="App secrets, given to machines as environment variables.")


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")


@secrets_app.command("set")
def secrets_set(pairs: list[str] = typer.Argument(..., help="NAME=VALUE ..."), app_: str = APP_OPT,
                config: Path = CONFIG_OPT,
                stage: bool = typer.Option(False, "--stage", help="Store only; apply with the next deploy.")) -> None:
    """Set secrets; running machines restart to pick them up unless --stage."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    values = key_values(pairs, "secret", "NAME")
    api = Api()
    api.post(f"/v1/apps/{name}/secrets", json={"values": values})
    say(f"Set {', '.join(sorted(values))} on {name}.")
    if not stage:
        _restart_running(api, name)


def _restart_running(api: Api, name: str) -> None:
    for m in api.get(f"/v1/apps/{name}/machines"):
        if m["state"] == "started" and not (m.get("config") or {}).get("standbys"):
            api.post(f"/v1/apps/{name}/machines/{m['id']}/restart")
            api.wait_state(name, m["id"], "started", 120)
            say(f"  restarted {m['id']}")


@secrets_app.command("list")
def secrets_list(app_: str = APP_OPT, config: Path = CONFIG_OPT,
                 json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Secret names and digests (never values)."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    data = Api().get(f"/v1/apps/{name}/secrets")["secrets"]
    if json_out:
        print_json(data)
        return
    print_table(["NAME", "DIGEST", "UPDATED"], [[s["name"], s["digest"], s["updated_at"]] for s in data])


@secrets_app.command("unset")
def secrets_unset(names: list[str] = typer.Argument(...), app_: str = APP_OPT, config: Path = CONFIG_OPT,
                  stage: bool = typer.Option(False, "--stage")) -> None:
    """Remove secrets; running machines restart unless --stage."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    api = Api()
    for secret in names:
        api.delete(f"/v1/apps/{name}/secrets/{secret}")
    say(f"Unset {', '.join(names)} on {name}.")
    if not stage:
        _restart_running(api, name)
