"""`roost logs -a APP [-f] [--machine ID] [--region R] [--since 10m] [--json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.markup import escape

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, load_config
from roost.cli.output import CliError, console
from roost.client.api import Api


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs(
        app_: str = APP_OPT,
        config: Path = CONFIG_OPT,
        machine: str = typer.Option(None, "--machine", "--instance", "-i", help="Only this machine (id or name)."),
        region: str = typer.Option(None, "--region", "-r", help="Only machines in this region."),
        lines: int = typer.Option(None, "--lines", "-n", help="How many recent lines (default 100; 10000 with "
                                                               "--since)."),
        since: str = typer.Option(None, "--since", help="Only lines newer than this: a duration (10m, 2h) or an "
                                                        "RFC 3339 time."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output as it is written."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line (timestamp, machine_id, "
                                                            "region, stream, message)."),
        no_tail: bool = typer.Option(False, "--no-tail", help="Print the recent lines and exit (default)."),
    ) -> None:
        """Show machine output (stdout and stderr) of an app's machines, merged in time order."""
        del no_tail
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        if lines is not None and lines < 0:
            raise CliError("--lines must be 0 or more")
        params: dict[str, str | int] = {"lines": lines if lines is not None else (10000 if since else 100)}
        for key, value in (("machine", machine), ("region", region), ("since", since)):
            if value:
                params[key] = value
        show = _print_json if as_json else _print
        api = Api()
        if not follow:
            for item in api.get(f"/v1/apps/{name}/logs", params=params):
                show(item)
            return
        params["follow"] = "true"
        try:
            # The server sends an empty line every 15 s: a minute of silence means the stream is gone.
            with api.http.stream("GET", f"/v1/apps/{name}/logs", params=params,
                                 timeout=httpx.Timeout(60.0, connect=10.0)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(response.json().get("error", response.text))
                for line in response.iter_lines():
                    if line.strip():
                        show(json.loads(line))
        except httpx.HTTPError as exc:
            raise CliError(f"log stream ended: {exc}") from None


def _print(item: dict[str, Any]) -> None:
    stream = " [red]stderr[/red]" if item.get("stream") == "stderr" else ""
    message = escape(str(item["message"]))
    console.print(f"[dim]{item.get('timestamp') or '-'} {item['region']} {item['machine_id']}[/dim]{stream} {message}",
                  highlight=False, soft_wrap=True)
    sys.stdout.flush()  # a follower reads each line as it comes, through a pipe too


def _print_json(item: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(item) + "\n")
    sys.stdout.flush()
