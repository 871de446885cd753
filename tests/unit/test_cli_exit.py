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


@pytest.mark.parametrize(("args", "says"), [
    (["--listen", "0.0.0.0:4300"], "--listen 0.0.0.0:4300 listens on every address: say which one"),
    (["--listen", "127.0.0.1:4300", "--advertise", "0.0.0.0"], "--advertise 0.0.0.0: a wildcard address"),
    (["--listen", "127.0.0.1:4300", "--advertise", "10.0.0.5:4300"], "expected an IP address or host name, "
                                                                     "without a port"),
    (["--listen", "127.0.0.1:4300", "--wireguard-port", "51820"], "it needs --driver container and --private-net"),
    (["--listen", "127.0.0.1:4300", "--wireguard-port", "99999"], "a UDP port is 1-65535"),
])
def test_an_agent_says_where_it_is_reached_or_is_refused_in_one_line(
        args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 19: an agent on 0.0.0.0 (or behind NAT) advertises the address others reach it at."""
    from roost.cli.main import app as roost

    with pytest.raises(SystemExit) as exit_:
        run_cli(roost, ["agent", "--server", "https://127.0.0.1:1", "--region", "ams", *args])
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


def test_an_edge_on_every_address_says_where_clients_reach_it(capsys: pytest.CaptureFixture[str]) -> None:
    from roost.cli.main import app as roost

    with pytest.raises(SystemExit) as exit_:
        run_cli(roost, ["proxy", "--server", "https://127.0.0.1:1", "--region", "ams", "--token", "t",
                        "--listen", "0.0.0.0:8080"])
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--advertise ADDRESS" in lines[0], lines


@pytest.mark.parametrize(("args", "says"), [
    (["--lease", "0"], "--lease must be more than 0"),
    (["--lease-margin", "-1"], "--lease-margin at least 0"),
    (["--lease", "1", "--peer-probe-timeout", "2"], "--peer-probe-timeout must be more than 0 and at most --lease"),
])
def test_the_servers_fencing_timings_are_checked_in_one_line(
        args: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from roost.cli.main import app as roost

    with pytest.raises(SystemExit) as exit_:
        run_cli(roost, ["server", "--data-dir", f"{tmp_path}/d", *args])
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
