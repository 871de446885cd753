"""`--config FILE` for server, agent and proxy (issue 19): the file's keys are the command's flags; the command
line wins; typos and public files holding tokens are refused in one line. Through the real `roost` CLI, stopped
by its own validation before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.cli.main import app
from roost.cli.output import run_cli


def roost(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_cli(app, list(argv))
    return int(exit_.value.code or 0), capsys.readouterr().err.strip()


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_files_settings_reach_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write(tmp_path / "agent.toml", 'region = "zzz"\nheartbeat-interval = 0.5\n')
    code, err = roost(capsys, "agent", "--config", str(conf), "--server", "http://127.0.0.1:1")
    assert code == 1 and "unknown region 'zzz'" in err  # from the file


def test_the_command_line_wins_over_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write(tmp_path / "agent.toml", 'region = "zzz"\n')
    code, err = roost(capsys, "agent", "--config", str(conf), "--server", "http://127.0.0.1:1", "--region", "ams",
                      "--driver", "bogus")
    assert code == 1 and "unknown --driver 'bogus'" in err  # the region check passed: ams from the flag


def test_a_required_flag_may_come_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write(tmp_path / "proxy.toml", 'server = "http://127.0.0.1:1"\nregion = "zzz"\n')
    code, err = roost(capsys, "proxy", "--config", str(conf))
    assert code == 1 and "zzz" in err and "Missing option" not in err


def test_unknown_keys_bad_toml_and_missing_files_are_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    typo = write(tmp_path / "typo.toml", 'listen = "127.0.0.1:1"\nheartbeat-intervall = 1\n')
    code, err = roost(capsys, "server", "--config", str(typo))
    assert code == 1 and "unknown setting 'heartbeat-intervall' for 'roost server'" in err and "listen" in err
    bad = write(tmp_path / "bad.toml", "listen = \n")
    code, err = roost(capsys, "server", "--config", str(bad))
    assert code == 1 and "not valid TOML" in err and len(err.splitlines()) == 1
    code, err = roost(capsys, "server", "--config", str(tmp_path / "none.toml"))
    assert code == 1 and "no such file" in err
    table = write(tmp_path / "table.toml", "[listen]\nhost = 1\n")
    code, err = roost(capsys, "server", "--config", str(table))
    assert code == 1 and "must be a value, not a table" in err


def test_a_file_holding_a_token_must_be_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = write(tmp_path / "proxy.toml", 'server = "http://127.0.0.1:1"\ntoken = "secret"\nregion = "zzz"\n',
                   mode=0o644)
    code, err = roost(capsys, "proxy", "--config", str(shared))
    assert code == 1 and f"chmod 600 {shared}" in err
    os.chmod(shared, 0o600)
    code, err = roost(capsys, "proxy", "--config", str(shared))
    assert code == 1 and "zzz" in err  # accepted, and on to the command's own checks


def test_a_setting_is_named_by_its_flag_even_where_the_parameter_is_not(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`roost proxy --id` is the parameter `proxy_id`: the file says `id`, as the flag does (the guide's proxy.toml)."""
    conf = write(tmp_path / "proxy.toml", 'server = "http://127.0.0.1:1"\nid = "edge-ewr"\nregion = "zzz"\n')
    code, err = roost(capsys, "proxy", "--config", str(conf))
    assert code == 1 and "zzz" in err  # accepted, and on to the command's own checks
    hidden = write(tmp_path / "typo.toml", 'server = "http://127.0.0.1:1"\nidd = "x"\n')
    code, err = roost(capsys, "proxy", "--config", str(hidden))
    assert code == 1 and "settable: admin, advertise, ca, connect-timeout" in err
    assert " id," in err and "worker-index" not in err
