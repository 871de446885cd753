"""`roost checks list`: every machine's health checks and how they stand, as `fly checks list`."""

from __future__ import annotations

import typer

from roost.cli.appconfig import APP
from roost.cli.output import command_group, console, print_json, print_table
from roost.client.api import Api

checks_app = command_group(help="Health checks of an app's machines.")


def register(app: typer.Typer) -> None:
    app.add_typer(checks_app, name="checks")


@checks_app.command("list")
def checks_list(app_: str = APP, json_out: bool = typer.Option(False, "--json", "-j"),
                check: str = typer.Option(None, "--check-name", help="Only the checks of this name.")) -> None:
    """Each machine's checks: name, status, machine, region, last update and output."""
    machines = Api().get(f"/v1/apps/{app_}/machines")
    rows = [{"name": c.get("name"), "status": c.get("status"), "machine": m["id"], "region": m.get("region"),
             "updated_at": c.get("updated_at"), "output": c.get("output", "")}
            for m in machines for c in m.get("checks") or [] if check is None or c.get("name") == check]
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print(f"app {app_!r} has no health checks" + (f" named {check!r}" if check else ""),
                      highlight=False)
        return
    print_table(["NAME", "STATUS", "MACHINE", "REGION", "LAST UPDATED", "OUTPUT"],
                [[r["name"], r["status"], r["machine"], r["region"], r["updated_at"],
                  str(r["output"] or "").strip().replace("\n", " ")[:80]] for r in rows])
