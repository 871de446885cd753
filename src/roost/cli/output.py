"""How the CLI talks to people: tables, JSON, spinners, and one clear line per error."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import typer
from rich.console import Console
from rich.table import Table

from roost.client.errors import UserError
from roost.core.errors import RoostError

# Piped output is not wrapped at 80 columns: tables stay one row per line for grep and scripts.
console = Console(width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 250)


# The CLI's name for the client's one-line user error.
CliError = UserError


def cli_command(app: typer.Typer) -> Any:
    """The app as one click command whose help names each value (`--app APP`, `IMAGE`, `COMMAND...`), as
    flyctl's and click's help do, instead of Typer's type labels (`--app <str>`, `{image}`)."""
    command = typer.main.get_command(app)
    _name_values(command)
    return command


class _NamedArgument(typer.core.TyperArgument):
    """An argument shown as click shows it: `IMAGE`, `[COMMAND]...`, without a type label."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name

    def _rich_display_name(self) -> str:
        return f"{self.display_name_raw}..." if self.nargs != 1 else self.display_name_raw

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _name_values(command: Any) -> None:
    for param in command.params:
        if param.metavar is not None or getattr(param, "is_flag", False) or not param.name:
            continue
        param.metavar = param.name.upper().rstrip("_")
        if type(param) is typer.core.TyperArgument:
            param.__class__ = _NamedArgument
    for sub in getattr(command, "commands", {}).values():
        _name_values(sub)


def run_cli(app: typer.Typer, argv: Sequence[str]) -> None:
    try:
        # Outside standalone mode click *returns* the code of a `typer.Exit(n)` instead of raising it:
        # dropping it made a failed drill exit 0.
        code = cli_command(app).main(args=list(argv), prog_name="roost", standalone_mode=False)
    except (CliError, RoostError) as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "code", 1))
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("Aborted.")
        sys.exit(130)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # Usage errors (click's, or typer's own copy of them): one line, and where to read more.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err_console.print(f"[red]Error:[/red] {exc.format_message()}{where}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code or 2))
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def command_group(help: str) -> typer.Typer:
    """A sub-command group. Help is plain text, never Rich markup: a help string holding `[/PROTO]` once
    crashed `--help` with a MarkupError."""
    return typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=help)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    table = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


@contextmanager
def progress(message: str) -> Iterator[None]:
    if sys.stderr.isatty():
        with err_console.status(message):
            yield
    else:
        yield
