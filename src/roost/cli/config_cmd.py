"""`roost config validate|show`: fly.toml checked and translated as a deploy would."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import CONFIG_OPT, config_path, load_config, say
from roost.cli.output import CliError, command_group, err_console, print_json
from roost.client.api import Api
from roost.config.flytoml import ConfigError, collecting, load_text
from roost.config.locate import locate
from roost.config.machines import machine_config, process_groups
from roost.core.errors import RoostError
from roost.core.regions import REGIONS

config_app = command_group(help="fly.toml: validate and show.")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("validate")
def config_validate(config: Path = CONFIG_OPT, json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Check fly.toml as a deploy would and list every problem, each with its line; exit 1 if any."""
    path = config_path(config)
    if not path.exists():
        raise CliError(f"{path} not found: run 'roost launch' to create one, or pass -c PATH")
    text = path.read_text()
    problems: list[str] = []
    cfg = None
    try:
        cfg = load_text(text, str(path), regions=_known_regions())
    except ConfigError as exc:
        problems = list(exc.problems)
    groups: list[str] = []
    if cfg is not None:
        groups = process_groups(cfg)
        for group in groups:
            with collecting(problems):
                machine_config(cfg, group)
    found = [{"line": locate(text, p), "message": p} for p in dict.fromkeys(problems)]
    warnings = cfg.warnings if cfg is not None else []
    if json_out:
        print_json({"path": str(path), "valid": not found, "problems": found, "warnings": warnings,
                    "process_groups": groups})
    else:
        for warning in warnings:
            err_console.print(f"[yellow]Warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
        for problem in found:
            where = f"{path}:{problem['line']}" if problem["line"] else str(path)
            err_console.print(f"{where}: {problem['message']}", highlight=False, soft_wrap=True)
        if not found:
            say(f"{path} is valid ({len(warnings)} warning{'s' if len(warnings) != 1 else ''}); "
                f"process groups: {', '.join(groups)}")
    if found:
        if not json_out:
            err_console.print(f"[red]Error:[/red] {len(found)} problem{'s' if len(found) != 1 else ''} in {path}",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _known_regions() -> set[str]:
    """Fly's region codes, and the regions of this fleet's hosts when its server answers (quickly)."""
    known = set(REGIONS)
    try:
        known |= {h["region"] for h in Api(timeout=2).get("/v1/hosts")}
    except (CliError, RoostError, OSError):
        pass  # no fleet here, or not allowed to list hosts: Fly's codes alone
    return known


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
