"""`roost image push|list`: OCI images pushed to the fleet's registry (a directory becomes a layer on a base
image), or bundles of a directory kept by the server where the fleet has no registry."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from roost.cli.output import command_group, console, print_json, print_table, progress
from roost.client.api import Api
from roost.client.images import push

image_app = command_group(help="Push and list images.")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
    app.add_typer(image_app, name="images", hidden=True)


@image_app.command("push")
def push_cmd(
    directory: Path = typer.Argument(..., help="A directory, an OCI layout, or a 'docker save' tarball."),
    name: str = typer.Option(..., "--name", "-n", help="NAME[:TAG], e.g. hello:v1 or ghcr.io/org/app:latest."),
    cmd: str = typer.Option(None, "--cmd", help="Default command (else the Procfile's web entry)."),
    base: str = typer.Option(None, "--base",
                             help="Base image for a directory (default: Debian with Python 3, built once from "
                                  "Debian packages)."),
    bundle: bool = typer.Option(False, "--bundle", help="Push a bundle kept by the server, even if the fleet "
                                                        "has a registry (the process driver's format)."),
    json_out: bool = typer.Option(False, "--json", "-j"),
) -> None:
    """Push an image: to the fleet's registry (OCI), or as a bundle where the fleet has none."""
    with progress(f"Pushing {directory} as {name}..."):
        image = push(Api(), directory, name, shlex.split(cmd) if cmd else None, base=base, bundle=bundle)
    if json_out:
        print_json(image)
        return
    where = f" to {image['registry']}/{image['repository']}:{image['tag']}" if image.get("source") == "registry" else ""
    console.print(f"Pushed [bold]{image['ref']}[/bold]{where} {image['digest']} ({image['size']} bytes)"
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
