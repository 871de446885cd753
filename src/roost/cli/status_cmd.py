"""`roost status`: the app, its image, and per process group its machines (like fly status)."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, group_of, load_config, say
from roost.cli.output import print_json, print_table
from roost.client.api import Api


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(app_: str = APP_OPT, config: Path = CONFIG_OPT,
               json_out: bool = typer.Option(False, "--json", "-j")) -> None:
        """The app, its image, and per process group its machines (like fly status)."""
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        api = Api()
        info = api.get(f"/v1/apps/{name}")
        machines = api.get(f"/v1/apps/{name}/machines")
        releases = api.get(f"/v1/apps/{name}/releases")
        if json_out:
            print_json({"app": info, "releases": releases[:1], "machines": machines})
            return
        image = releases[0]["image"] if releases else "-"
        say(f"App         {info['name']}\nPrimary     {info.get('primary_region') or '-'}\n"
            f"Image       {image}\nRelease     {('v' + str(releases[0]['version'])) if releases else '-'}")
        if not machines:
            say("No machines.")
            return
        rows = []
        for m in sorted(machines, key=lambda m: (group_of(m), m["region"], m["id"])):
            checks = m.get("checks") or []
            passing = sum(1 for c in checks if c["status"] == "passing")
            mark = "†" if (m.get("config") or {}).get("standbys") else ""
            note = (m.get("roost") or {}).get("note") or ""
            rows.append([group_of(m) or "-", m["id"] + mark, (m.get("config") or {}).get("metadata", {})
                         .get("fly_release_version", ""), m["region"], m.get("host_id"), m["state"],
                         f"{passing} passing / {len(checks)}" if checks else "", m["host_status"], note,
                         m["updated_at"]])
        print_table(["PROCESS", "ID", "VERSION", "REGION", "HOST", "STATE", "CHECKS", "HOST STATUS", "NOTE",
                     "LAST UPDATED"], rows)
        if any((m.get("config") or {}).get("standbys") for m in machines):
            say("† Standby machine (it will take over only in case of host hardware failure)")
