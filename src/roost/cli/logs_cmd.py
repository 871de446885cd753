"""`roost logs -a APP [--machine ID] [-f]`."""

from __future__ import annotations

import json

import httpx
import typer

from roost.cli.output import CliError, console
from roost.client.api import Api


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs(
        app_name: str = typer.Option(..., "--app", "-a"),
        machine: str = typer.Option(None, "--machine", "--instance", "-i", help="Only this machine."),
        lines: int = typer.Option(100, "--lines", "-n", help="How many recent lines."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output."),
        no_tail: bool = typer.Option(False, "--no-tail", help="Print the recent lines and exit (default)."),
    ) -> None:
        """Show machine output (stdout and stderr)."""
        del no_tail
        api = Api()
        params = {"lines": lines}
        if machine:
            params["machine"] = machine  # type: ignore[assignment]
        if not follow:
            for item in api.get(f"/v1/apps/{app_name}/logs", params=params):
                _print(item)
            return
        params["follow"] = "true"  # type: ignore[assignment]
        try:
            with api.http.stream("GET", f"/v1/apps/{app_name}/logs", params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(response.json().get("error", response.text))
                for line in response.iter_lines():
                    if line.strip():
                        _print(json.loads(line))
        except httpx.HTTPError as exc:
            raise CliError(f"log stream ended: {exc}") from None


def _print(item: dict) -> None:  # type: ignore[type-arg]
    console.print(f"[dim]{item['region']} {item['machine_id']}[/dim] {item['message']}", highlight=False,
                  markup="[" not in item["message"])
