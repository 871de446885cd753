"""The app a command acts on: -a, else $FLY_APP or $ROOST_APP, else the fly.toml in the current directory
(flyctl's order), for every command that takes -a."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roost.cli.appconfig import _app_from_context, app_name
from roost.cli.main import app
from roost.cli.output import CliError, cli_command


def _app_options(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, p) for p in command.params if "--app" in getattr(p, "opts", [])]
    for name, sub in getattr(command, "commands", {}).items():
        found += _app_options(sub, (*path, name))
    return found


def test_no_command_demands_a_flag_for_the_app() -> None:
    options = _app_options(cli_command(app))
    assert len(options) > 40
    demanding = [" ".join(path) for path, p in options if p.required]
    assert demanding == [], f"these commands demand -a instead of reading $FLY_APP or fly.toml: {demanding}"


def test_the_order_is_flag_then_environment_then_fly_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("FLY_APP", "ROOST_APP"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(CliError, match="pass -a APP, set FLY_APP"):
        _app_from_context(None)
    (tmp_path / "fly.toml").write_text('app = "from-toml"\n')
    assert _app_from_context(None) == "from-toml"
    monkeypatch.setenv("ROOST_APP", "from-roost-env")
    assert _app_from_context(None) == "from-roost-env"
    monkeypatch.setenv("FLY_APP", "from-fly-env")
    assert _app_from_context(None) == "from-fly-env"
    assert _app_from_context("from-flag") == "from-flag"
    assert app_name(None, None) == "from-fly-env" and app_name("flag", None) == "flag"
