"""`roost tokens create|list|revoke`: API tokens besides the admin token (deploy tokens per app, read-only
and org-wide ones). A token is printed once, when made; the server keeps only its digest."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, load_config, say
from roost.cli.output import CliError, command_group, print_json, print_table
from roost.client.api import Api

tokens_app = command_group(help="API tokens: deploy (one app), machine-exec (one app), read-only, org, edge.")
KINDS = ("deploy", "machine-exec", "readonly", "org", "edge")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(kind: str = typer.Argument(..., help="deploy | machine-exec | readonly | org | edge"),
                  app_: str = APP_OPT,
                  config: Path = CONFIG_OPT,
                  expiry: str = typer.Option("", "--expiry", "-x", help="Lifetime, e.g. 720h (default: none)."),
                  name: str = typer.Option("", "--name", "-n", help="A name to tell it apart in 'tokens list'."),
                  json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Make a token and print it (once: only its digest is kept)."""
    if kind not in KINDS:
        raise CliError(f"unknown token kind {kind!r}: use {', '.join(KINDS)}")
    app = ""
    if kind in ("deploy", "machine-exec"):
        app = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    made = Api().post("/v1/tokens", json={"kind": kind, "app": app, "name": name, "expiry": expiry or None})
    if json_out:
        print_json(made)
        return
    say(f"{kind} token {made['id']}{' for ' + app if app else ''}"
        f"{', expires ' + made['expires_at'] if made.get('expires_at') else ''}. Store it now; it is not shown again:")
    print(made["token"])


@tokens_app.command("list")
def tokens_list(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Every token (never their secrets), revoked ones included."""
    tokens = Api().get("/v1/tokens")["tokens"]
    if json_out:
        print_json(tokens)
        return
    print_table(["ID", "KIND", "APP", "NAME", "CREATED", "EXPIRES", "REVOKED"],
                [[t["id"], t["kind"], t["app"] or "", t["name"], t["created_at"], t["expires_at"] or "",
                  t["revoked_at"] or ""] for t in tokens])


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="The token's id, from 'roost tokens list'.")) -> None:
    """Revoke a token: refused from the next request on."""
    Api().delete(f"/v1/tokens/{token_id}")
    say(f"Revoked token {token_id}.")
