"""`--config FILE` for the long-running components (server, agent, proxy): a TOML file whose keys are the
command's flags (`listen = "0.0.0.0:4280"`, `heartbeat-interval = 0.25`, `dns-port = 53`). Flags given on the
command line win over the file; the file wins over the built-in defaults. Unknown keys are refused, so a typo
is not silently ignored, and a file that holds a token must be private (0600), as every token file is."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import typer

from roost.cli.output import CliError

SECRET_KEYS = frozenset({"token", "join_token"})
MAX_CONFIG_BYTES = 1 << 20


def settings(path: Path, command: Any) -> dict[str, Any]:
    """The file's settings as the command's parameter names; CliError (one line) for anything wrong."""
    try:
        info = path.stat()
        if info.st_size > MAX_CONFIG_BYTES:
            raise CliError(f"--config {path}: larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"--config {path}: not valid TOML ({exc})") from None
    # typer carries its own copy of click: options are known by kind, not by class
    # a setting is named by the option's long flag without its dashes (`id` for --id), or by its parameter name
    names: dict[str, str] = {}
    for p in command.params:
        if getattr(p, "param_type_name", "") != "option" or not p.name or p.name == "config":
            continue
        for flag in p.opts:
            if flag.startswith("--"):
                names[flag[2:]] = p.name
        names.setdefault(p.name.replace("_", "-"), p.name)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = names.get(key) or names.get(key.replace("_", "-"))
        if name is None:
            flags = ", ".join(sorted({f[2:] for p in command.params if getattr(p, "param_type_name", "") == "option"
                                      and p.name != "config" and not getattr(p, "hidden", False)
                                      for f in p.opts if f.startswith("--")}))
            raise CliError(f"--config {path}: unknown setting {key!r} for 'roost {command.name}'; settable: {flags}")
        if isinstance(value, dict):
            raise CliError(f"--config {path}: {key!r} must be a value, not a table")
        out[name] = value
    if SECRET_KEYS & out.keys() and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(f"--config {path} holds a token but others may read it: chmod 600 {path}")
    return out


def _load(ctx: Any, _param: Any, value: Path | None) -> Path | None:
    if value is not None and not ctx.resilient_parsing:
        ctx.default_map = {**(ctx.default_map or {}), **settings(value, ctx.command)}
    return value


def config_option() -> Any:
    """The `--config FILE` option: read before every other option, so that the file supplies their defaults."""
    return typer.Option(None, "--config", is_eager=True, callback=_load, envvar="ROOST_CONFIG",
                        help="A TOML file of this command's flags (key = flag name, e.g. listen = \"0.0.0.0:4280\"); "
                             "flags on the command line win.")
