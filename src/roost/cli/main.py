"""Entry point: `roost ...`. Each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from roost.cli import (
    agent_cmd,
    apps_cmd,
    checks_cmd,
    config_cmd,
    cost_cmd,
    deploy_cmd,
    dev_cmd,
    drill_cmd,
    hosts_cmd,
    image_cmd,
    launch_cmd,
    logs_cmd,
    machine_cmd,
    proxy_cmd,
    scale_cmd,
    secrets_cmd,
    server_cmd,
    ssh_cmd,
    status_cmd,
    tls_cmd,
    tokens_cmd,
    volumes_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Roost: run apps as machines on your own fleet, with the resiliency features of Fly.io.")


def _version(value: bool) -> None:
    if value:
        from roost import __version__

        print(f"roost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="Print Roost's version and exit.")) -> None:
    """Roost: run apps as machines on your own fleet, with the resiliency features of Fly.io."""


for module in (server_cmd, agent_cmd, proxy_cmd, dev_cmd, apps_cmd, machine_cmd, image_cmd, logs_cmd, hosts_cmd,
               launch_cmd, deploy_cmd, status_cmd, scale_cmd, secrets_cmd, config_cmd, volumes_cmd, drill_cmd,
               tokens_cmd, tls_cmd, ssh_cmd, cost_cmd, checks_cmd):
    module.register(app)


def main() -> None:
    from roost.cli.output import run_cli

    # flyctl spells boolean flags --ha=false; Typer spells them --no-ha.
    argv = [{"--ha=false": "--no-ha", "--ha=true": "--ha"}.get(a, a) for a in sys.argv[1:]]
    run_cli(app, argv)


if __name__ == "__main__":
    main()
