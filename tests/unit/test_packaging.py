"""The systemd units run commands that exist and read the config file they name (issue 19)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from roost.cli.main import app
from roost.cli.output import run_cli

UNITS = sorted((Path(__file__).parents[2] / "packaging" / "systemd").glob("*.service"))


def test_there_is_a_unit_per_long_running_component():
    assert [u.name for u in UNITS] == ["roost-agent.service", "roost-proxy.service", "roost-server.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_units_command_takes_its_config_file(unit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit)
    argv = shlex.split(parser["Service"]["ExecStart"])
    component = unit.stem.removeprefix("roost-")
    assert argv[0].endswith("/roost") and argv[1:] == [component, "--config", f"/etc/roost/{component}.toml"]
    assert parser["Service"]["Restart"] == "always" and parser["Install"]["WantedBy"] == "multi-user.target"
    run_cli(app, [component, "--help"])
    assert "--config" in capsys.readouterr().out
