"""`roost cost -a APP [--since 24h] [--json]`: what an app's machines cost, and what stopping them saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, load_config, say
from roost.cli.output import print_json, print_table
from roost.client.api import Api


def register(app: typer.Typer) -> None:
    @app.command("cost")
    def cost(app_: str = APP_OPT, config: Path = CONFIG_OPT,
             since: str = typer.Option(None, "--since", help="Only the last DURATION (24h, 7d); default: all the "
                                                             "ledger keeps (45 days)."),
             json_out: bool = typer.Option(False, "--json", "-j", help="The whole report as JSON.")) -> None:
        """What the app's machines cost: started time at the guest's price, stopped, suspended and standby time
        as root filesystem storage only, and what that saved against running them all the time."""
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        report = Api().get(f"/v1/apps/{name}/cost", params={"since": since} if since else None)
        if json_out:
            print_json(report)
            return
        money = _money(report["currency"])
        rows = [[m["id"], m["process_group"] or "-", m["region"], _size(m["size"]), _hours(m["seconds"]["started"]),
                 _hours(m["seconds"]["stopped"] + m["seconds"]["suspended"] + m["seconds"]["standby"]),
                 money(m["compute"]), money(m["rootfs"] + m["volumes"]), money(m["total"]), money(m["saved"])]
                for m in report["machines"]]
        window = f"since {report['since']}" if report["since"] else "all the ledger keeps"
        if not rows:
            say(f"No machine of {name} existed in the window ({window}).")
            return
        print_table(["MACHINE", "GROUP", "REGION", "SIZE", "STARTED", "NOT STARTED", "COMPUTE", "STORAGE", "TOTAL",
                     "SAVED"], rows, title=f"{name}: {window} until {report['until']}")
        for group, b in report["process_groups"].items():
            say(f"group {group or '-'}: {money(b['total'])} (saved {money(b['saved'])})")
        t = report["total"]
        say(f"app {name}: {money(t['total'])}, of which compute {money(t['compute'])}, root filesystems "
            f"{money(t['rootfs'])}, volumes {money(t['volumes'])}; always on it would have cost "
            f"{money(t['always_on'])}: autostop saved {money(t['saved'])}")


def _money(currency: str) -> Any:
    symbol = "$" if currency == "USD" else f"{currency} "
    return lambda value: f"{symbol}{value:.6f}" if value < 0.01 else f"{symbol}{value:.2f}"


def _hours(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 3600 else f"{seconds / 3600:.1f}h"


def _size(size: dict[str, Any]) -> str:
    if not size:
        return "-"
    return f"{size.get('cpu_kind', 'shared')}-{size.get('cpus', 1)}x/{size.get('memory_mb', 256)}MB"
