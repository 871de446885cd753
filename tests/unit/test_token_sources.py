"""Components take their token from the environment or a file, never only from the command line (where `ps`
shows it); without one they say what to do in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from roost.cli.common import fleet_token
from roost.cli.output import CliError


def test_a_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text("s3cret\n")
    assert fleet_token("from-env", path) == "from-env"
    assert fleet_token(None, path) == "s3cret"
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        if bad.name == "empty":
            bad.write_text("")
        with pytest.raises(CliError):
            fleet_token(None, bad)


def test_an_agent_without_a_token_says_how_to_give_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ROOST_API_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "roost", "agent", "--server", "http://127.0.0.1:1",
                             "--region", "ams"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "ROOST_API_TOKEN" in result.stderr and "--token-file" in result.stderr
