"""Every command's --help prints help, exit 0: a help string read as Rich markup once crashed
`roost machine run --help` with a traceback, and nothing ran --help."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from roost.cli.main import app
from roost.cli.output import cli_command


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # Typer 0.29 carries its own copy of click, so a group is known by its commands, not by click's class.
    found = [prefix]
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            found.extend(_paths(sub, (*prefix, name)))
    return found


COMMANDS = _paths(cli_command(app))


def test_the_tree_is_walked() -> None:
    # A walk that found nothing would pass every case below.
    assert len(COMMANDS) > 60
    assert ("machine", "run") in COMMANDS
    assert ("volumes", "create") in COMMANDS


def _help(path: tuple[str, ...]) -> str:
    """What `roost PATH --help` prints, through the same command the `roost` program runs."""
    with CliRunner().isolation() as (_, _, output):
        try:
            cli_command(app).main(args=[*path, "--help"], prog_name="roost")
        except SystemExit as exc:
            assert exc.code in (0, None), output.getvalue().decode()
        return output.getvalue().decode()


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "roost")
def test_help_works(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert text.startswith("Usage: roost"), text
    # Values are named as flyctl and click name them (`--app APP`), not by Typer's type labels.
    assert "<str>" not in text and "<int>" not in text and "list[str]" not in text, text


def test_help_shows_brackets_literally() -> None:
    # `[/PROTO]` in machine run's --port help is text, not a closing markup tag.
    text = _help(("machine", "run"))
    assert "[EXT:]INT[/PROTO][:HANDLERS]" in text
    assert "Usage: roost machine run [OPTIONS] IMAGE [COMMAND]..." in text
    assert "-a, --app APP" in text
