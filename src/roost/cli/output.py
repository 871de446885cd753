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

from roost.core.errors import RoostError

# Piped output is not wrapped at 80 columns: tables stay one row per line for grep and scripts.
console = Console(width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 250)


class CliError(Exception):
    """A user error: printed as one line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def run_cli(app: typer.Typer, argv: Sequence[str]) -> None:
    try:
        app(args=list(argv), prog_name="roost", standalone_mode=False)
    except CliError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(exc.code)
    except RoostError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        err_console.print(f"[red]Error:[/red] {exc.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


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
