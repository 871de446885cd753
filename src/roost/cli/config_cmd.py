"""`roost config validate|show`: fly.toml checked and translated as a deploy would."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import CONFIG_OPT, config_path, load_config, say
from roost.cli.output import CliError, command_group, print_json
from roost.config.flytoml import ConfigError
from roost.config.machines import machine_config, process_groups

config_app = command_group(help="fly.toml: validate and show.")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("validate")
def config_validate(config: Path = CONFIG_OPT) -> None:
    """Load fly.toml as flyctl does; report errors, unknown and unsupported keys."""
    path = config_path(config)
    cfg = load_config(path)
    assert cfg is not None
    for group in process_groups(cfg):
        try:
            machine_config(cfg, group)
        except ConfigError as exc:
            raise CliError(exc.message) from None
    say(f"{path} is valid ({len(cfg.warnings)} warning{'s' if len(cfg.warnings) != 1 else ''}); "
        f"process groups: {', '.join(process_groups(cfg))}")


@config_app.command("show")
def config_show(config: Path = CONFIG_OPT, group: str = typer.Option(None, "--process-group", "-g"),
                json_out: bool = typer.Option(True, "--json/--toml-doc")) -> None:
    """The machine config each process group gets from fly.toml."""
    cfg = load_config(config_path(config))
    assert cfg is not None
    groups = [group] if group else process_groups(cfg)
    try:
        out = {g: machine_config(cfg, g, image="<image at deploy>") for g in groups}
    except ConfigError as exc:
        raise CliError(exc.message) from None
    if json_out:
        print_json(out)
    else:
        print_json(cfg.doc)
