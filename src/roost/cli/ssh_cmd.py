"""`roost ssh console -a APP [-s] [--machine ID] [-C CMD]`: an interactive shell in one of the app's machines,
through the control plane and the machine's host agent (a WebSocket each way; the shell runs on a terminal
in the machine). Exits with the shell's exit code."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
from typing import Any
from urllib.parse import quote

import typer

from roost.cli.appconfig import APP
from roost.cli.output import CliError, command_group
from roost.client.api import Api, api_target, api_trust
from roost.failover import parse_servers

ssh_app = command_group(help="Shells in machines.")


def register(app: typer.Typer) -> None:
    app.add_typer(ssh_app, name="ssh")


def _pick(app: str, machine: str | None, select: bool) -> str:
    machines = [m for m in Api().get(f"/v1/apps/{app}/machines") if m["state"] == "started"]
    if machine:
        return machine
    if not machines:
        raise CliError(f"app {app!r} has no started machine to open a console in; start one first")
    if not select or len(machines) == 1:
        return str(machines[0]["id"])
    for i, m in enumerate(machines, 1):
        typer.echo(f"{i}. {m['id']} {m['name']} ({m['region']}, {m['private_ip']})", err=True)
    choice = typer.prompt("Machine", default="1", err=True)
    if not choice.isdigit() or not 1 <= int(choice) <= len(machines):
        raise CliError(f"pick a number from 1 to {len(machines)}")
    return str(machines[int(choice) - 1]["id"])


@ssh_app.command("console")
def console(
    app: str = APP,
    select: bool = typer.Option(False, "--select", "-s", help="Choose the machine from a list."),
    machine: str = typer.Option(None, "--machine", help="Machine id (default: the first started one)."),
    command: str = typer.Option(None, "--command", "-C", help="Run this instead of a shell."),
) -> None:
    """Open a shell in a machine (as `fly ssh console`)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
    from websockets.sync.client import connect

    machine_id = _pick(app, machine, select)
    urls, token = api_target()
    argv = shlex.split(command) if command else []
    query = "&".join(f"cmd={quote(a, safe='')}" for a in argv)
    ws: Any = None
    last = ""
    for url in parse_servers(urls) or (urls,):  # the control plane's replicas, in turn, until one answers
        ws_url = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + \
            f"/v1/apps/{app}/machines/{machine_id}/console" + (f"?{query}" if query else "")
        try:
            ws = connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"},
                         ssl=api_trust().context() if ws_url.startswith("wss://") else None, open_timeout=15)
            break
        except InvalidStatus as exc:
            raise CliError(f"the server refused the console ({exc.response.status_code}): check the token") \
                from None
        except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
            last = f"cannot open a console at {url}: {exc}"
    if ws is None:
        raise CliError(last)
    code = _session(ws, ConnectionClosed)
    raise typer.Exit(code)


def _session(ws: Any, closed: type[Exception]) -> int:
    """Pump the terminal both ways until the shell ends; returns its exit code."""
    stdin = sys.stdin.buffer
    interactive = sys.stdin.isatty()
    saved = None
    if interactive:
        import json
        import termios
        import tty

        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
        with contextlib.suppress(OSError):
            size = os.get_terminal_size()
            ws.send(json.dumps({"resize": [size.lines, size.columns]}))

    def typing() -> None:
        with contextlib.suppress(closed, OSError, ValueError):
            while data := os.read(stdin.fileno(), 4096):
                ws.send(data)
            ws.send(b"\x04")  # the input ended: end of file for the shell too

    threading.Thread(target=typing, daemon=True).start()
    try:
        with contextlib.suppress(closed):
            for message in ws:
                out = message if isinstance(message, bytes) else message.encode()
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    code, reason = ws.protocol.close_code, ws.protocol.close_reason or ""
    if code == 1000 and reason.startswith("exit "):
        return int(reason[5:]) if reason[5:].lstrip("-").isdigit() else 0
    if code and code >= 4000:
        raise CliError(reason or f"the console was refused ({code - 4000})")
    return 0 if code == 1000 else 1
