"""The CLI's exit status carries a command's verdict (issue 12 case 9: a failed drill exited 0)."""

from __future__ import annotations

import pytest
import typer

from roost.cli.output import CliError, run_cli

app = typer.Typer()


@app.command()
def verdict(code: int) -> None:
    if code:
        raise typer.Exit(code)


@app.command()
def broken() -> None:
    raise CliError("something is wrong; fix it like this")


def test_a_commands_exit_code_reaches_the_shell() -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli(app, ["verdict", "1"])
    assert exit_.value.code == 1


def test_success_exits_normally() -> None:
    run_cli(app, ["verdict", "0"])  # returns: exit status 0


def test_a_user_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli(app, ["broken"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == ["Error: something is wrong; fix it like this"]


def test_roost_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from roost import __version__
    from roost.cli.main import app as roost

    run_cli(roost, ["--version"])  # returns: exit status 0
    assert capsys.readouterr().out.strip() == f"roost {__version__}"
