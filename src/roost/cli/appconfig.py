"""What the fly.toml commands share: finding fly.toml and the app, and how they talk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from roost.cli.output import CliError, console, err_console
from roost.config.flytoml import AppConfig, ConfigError, load_text

APP_ENV = ("FLY_APP", "ROOST_APP")  # as flyctl: -a, else $FLY_APP, else fly.toml's app
CONFIG_OPT = typer.Option(None, "--config", "-c", help="Path to fly.toml (default: ./fly.toml).")
APP_OPT = typer.Option(None, "--app", "-a", help="App name (default: $FLY_APP or $ROOST_APP, else fly.toml's app).")
NO_APP = "no app name: pass -a APP, set FLY_APP, or run this in a directory whose fly.toml names the app"


def _app_from_env() -> str:
    return next((os.environ[v] for v in APP_ENV if os.environ.get(v)), "")


def _app_from_context(value: str | None) -> str:
    """For commands without --config: -a, else $FLY_APP/$ROOST_APP, else the app of ./fly.toml."""
    if value:
        return value
    from_env = _app_from_env()
    if from_env:
        return from_env
    cfg = load_config(Path("fly.toml").resolve(), required=False)
    if cfg is None or not cfg.app:
        raise CliError(NO_APP)
    return cfg.app


# -a for a command that reads no fly.toml of its own: resolved when the command line is read.
APP = typer.Option(None, "--app", "-a", callback=_app_from_context,
                   help="App name (default: $FLY_APP or $ROOST_APP, else ./fly.toml's app).")


def config_path(value: Path | None) -> Path:
    return (value or Path("fly.toml")).resolve()


def load_config(path: Path, required: bool = True) -> AppConfig | None:
    if not path.exists():
        if required:
            raise CliError(f"{path} not found: run 'roost launch' to create one, or pass -c PATH")
        return None
    try:
        cfg = load_text(path.read_text(), str(path))
    except ConfigError as exc:
        raise CliError(exc.message) from None
    for warning in cfg.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    return cfg


def app_name(app: str | None, cfg: AppConfig | None) -> str:
    name = app or _app_from_env() or (cfg.app if cfg else "")
    if not name:
        raise CliError(NO_APP)
    return name


def say(message: str) -> None:
    console.print(message, highlight=False)


def group_of(m: dict[str, Any]) -> str:
    return str(((m.get("config") or {}).get("metadata") or {}).get("fly_process_group", ""))


def key_values(items: list[str], what: str, key: str = "KEY") -> dict[str, str]:
    """NAME=VALUE arguments as a dict; one that is not gets a one-line error naming it."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"invalid {what} {item!r}: expected {key}=VALUE")
        out[name] = value
    return out
