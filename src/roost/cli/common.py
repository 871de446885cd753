"""Shared CLI helpers: the Roost home, listen addresses, finding the server."""

from __future__ import annotations

from pathlib import Path

from roost.cli.output import CliError
from roost.client.api import DEFAULT_FLEET_DIR, DEFAULT_HOME, api_target, fleet_file

__all__ = ["DEFAULT_FLEET_DIR", "DEFAULT_HOME", "api_target", "fleet_file", "fleet_token", "parse_listen"]


def fleet_token(token: str | None, token_file: Path | None) -> str:
    """The token a component presents: from ROOST_API_TOKEN (or --token), else read from --token-file (so
    that it never has to sit on a command line, where `ps` shows it)."""
    if token:
        return token.strip()
    if token_file is not None:
        try:
            value = token_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if value:
            return value
        raise CliError(f"--token-file {token_file} is empty")
    raise CliError("no token: set ROOST_API_TOKEN or give --token-file PATH (the server's admin-token file)")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"invalid address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:4280")
    return host, int(port)
