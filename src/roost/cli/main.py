"""Entry point: `roost ...`. Each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from roost.cli import (
    agent_cmd,
    apps_cmd,
    dev_cmd,
    hosts_cmd,
    image_cmd,
    logs_cmd,
    machine_cmd,
    proxy_cmd,
    server_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Roost: run apps as machines on your own fleet, with the resiliency features of Fly.io.")
for module in (server_cmd, agent_cmd, proxy_cmd, dev_cmd, apps_cmd, machine_cmd, image_cmd, logs_cmd, hosts_cmd):
    module.register(app)


def main() -> None:
    from roost.cli.output import run_cli

    run_cli(app, sys.argv[1:])


if __name__ == "__main__":
    main()
