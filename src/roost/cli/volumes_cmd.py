"""`roost volumes list|create|destroy|fork|extend|snapshots`: a fixed-size filesystem on a host."""

from __future__ import annotations

from typing import Any

import typer

from roost.cli.appconfig import APP, say
from roost.cli.output import CliError, command_group, print_json, print_table
from roost.client.api import Api

volumes_app = command_group(help="Volumes: a fixed-size filesystem on one host, one machine at a time.")


def register(app: typer.Typer) -> None:
    app.add_typer(volumes_app, name="volumes")
    app.add_typer(volumes_app, name="volume", hidden=True)


@volumes_app.command("list")
def volumes_list(app_: str = APP, json_out: bool = typer.Option(False, "--json", "-j")
                 ) -> None:
    """An app's volumes."""
    data = Api().get(f"/v1/apps/{app_}/volumes")
    if json_out:
        print_json(data)
        return
    print_table(["ID", "NAME", "SIZE", "REGION", "HOST", "ATTACHED TO", "CREATED"],
                [[v["id"], v["name"], f"{v['size_gb']} GB", v["region"], v["zone"], v.get("attached_machine_id", ""),
                  v["created_at"]] for v in data])


@volumes_app.command("create")
def volumes_create(name: str = typer.Argument(...), app_: str = APP,
                   region: str = typer.Option(None, "--region", "-r"),
                   size: int = typer.Option(None, "--size", "-s",
                                            help="GB (default: 1, or the size of the snapshot's volume)."),
                   count: int = typer.Option(1, "--count", "-n", min=1, max=20),
                   snapshot_id: str = typer.Option(None, "--snapshot-id",
                                                   help="Restore this snapshot into the new volume."),
                   json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Create volumes (one per host: same-named volumes go to different hosts)."""
    api = Api()
    made = []
    for _ in range(count):
        body: dict[str, Any] = {"name": name}
        if size is not None or not snapshot_id:
            body["size_gb"] = size or 1
        if snapshot_id:
            body["snapshot_id"] = snapshot_id
        if region:
            body["region"] = region
        v = api.post(f"/v1/apps/{app_}/volumes", json=body)
        made.append(v)
        if not json_out:
            say(f"Created {v['id']} ({name}, {v['size_gb']} GB) in {v['region']} on host {v['zone']}")
    if json_out:
        print_json(made if count > 1 else made[0])


@volumes_app.command("destroy")
def volumes_destroy(volume_id: str = typer.Argument(...), app_: str = APP,
                    yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    """Destroy a volume (its data is gone; volumes are not replicated)."""
    if not yes and not typer.confirm(f"Destroy volume {volume_id}? Its data is not replicated anywhere."):
        raise CliError("not destroyed")
    Api().delete(f"/v1/apps/{app_}/volumes/{volume_id}")
    say(f"Destroyed {volume_id}")


@volumes_app.command("fork")
def volumes_fork(volume_id: str = typer.Argument(..., help="The volume to copy."), app_: str = APP,
                 name: str = typer.Option(None, "--name", help="The new volume's name (default: the source's)."),
                 json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """A new volume with a copy of another's files (on another host of its region where there is one)."""
    body: dict[str, Any] = {"source_volume_id": volume_id}
    if name:
        body["name"] = name
    v = Api().post(f"/v1/apps/{app_}/volumes", json=body)
    if json_out:
        print_json(v)
        return
    say(f"Forked {volume_id} into {v['id']} ({v['name']}, {v['size_gb']} GB) in {v['region']} on host {v['zone']}")


@volumes_app.command("extend")
def volumes_extend(volume_id: str = typer.Argument(...), app_: str = APP,
                   size: int = typer.Option(..., "--size", "-s", help="The new size in GB (a volume only grows)."),
                   json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Grow a volume."""
    result = Api().request("PUT", f"/v1/apps/{app_}/volumes/{volume_id}/extend", json={"size_gb": size})
    if json_out:
        print_json(result)
        return
    say(f"Extended {volume_id} to {result['volume']['size_gb']} GB")
    if result.get("needs_restart"):
        machine = result["volume"].get("attached_machine_id")
        say(f"Its filesystem grows when its machine next starts: roost machine restart {machine} -a {app_}"
            if machine else "Its filesystem grows when a machine next starts on it")


snapshots_app = command_group(help="A volume's snapshots: taken daily and on demand, kept snapshot_retention days.")
volumes_app.add_typer(snapshots_app, name="snapshots")


@snapshots_app.command("list")
def snapshots_list(volume_id: str = typer.Argument(...), app_: str = APP,
                   json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """A volume's snapshots, oldest first."""
    data = Api().get(f"/v1/apps/{app_}/volumes/{volume_id}/snapshots")
    if json_out:
        print_json(data)
        return
    if not data:
        say(f"volume {volume_id} has no snapshots yet")
        return
    print_table(["ID", "TYPE", "SIZE", "CREATED", "RETENTION"],
                [[s["id"], s.get("type", ""), f"{s['size']} B", s["created_at"], f"{s['retention_days']} days"]
                 for s in data])


@snapshots_app.command("create")
def snapshots_create(volume_id: str = typer.Argument(...), app_: str = APP,
                     json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Snapshot a volume now."""
    snapshot = Api().post(f"/v1/apps/{app_}/volumes/{volume_id}/snapshots")
    if json_out:
        print_json(snapshot)
        return
    say(f"Snapshot {snapshot['id']} of {volume_id}: {snapshot['size']} bytes")
