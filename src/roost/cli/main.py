"""Entry point: `roost ...`. Each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from roost.cli import agent_cmd, server_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Roost: run apps as machines on your own fleet, with the resiliency features of Fly.io.")
server_cmd.register(app)
agent_cmd.register(app)


def main() -> None:
    from roost.cli.output import run_cli

    run_cli(app, sys.argv[1:])


if __name__ == "__main__":
    main()
