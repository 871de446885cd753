"""`roost image push|list`: images are content-addressed bundles of a directory."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from roost.cli.output import console, print_json, print_table, progress
from roost.client.api import Api
from roost.client.images import push

image_app = typer.Typer(no_args_is_help=True, help="Push and list images.")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
    app.add_typer(image_app, name="images", hidden=True)


@image_app.command("push")
def push_cmd(
    directory: Path = typer.Argument(..., help="Directory to pack."),
    name: str = typer.Option(..., "--name", "-n", help="NAME[:TAG], e.g. hello:v1 or ghcr.io/org/app:latest."),
    cmd: str = typer.Option(None, "--cmd", help="Default command (else the Procfile's web entry)."),
    json_out: bool = typer.Option(False, "--json", "-j"),
) -> None:
    """Push a directory as an image (a content-addressed bundle)."""
    with progress(f"Pushing {directory} as {name}..."):
        image = push(Api(), directory, name, shlex.split(cmd) if cmd else None)
    if json_out:
        print_json(image)
        return
    console.print(f"Pushed [bold]{image['ref']}[/bold] {image['digest']} ({image['size']} bytes)"
                  + (f", command: {' '.join(image['cmd'])}" if image.get("cmd") else ", no default command"))


@image_app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """List images."""
    images = Api().get("/v1/images")
    if json_out:
        print_json(images)
        return
    print_table(["IMAGE", "DIGEST", "SIZE", "COMMAND", "PUSHED"],
                [[i["ref"], i["digest"][:19], i["size"], " ".join(i.get("cmd") or []), i["created_at"]]
                 for i in images])
