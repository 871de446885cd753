"""Shared CLI helpers: the Roost home, listen addresses, finding the server."""

from __future__ import annotations

from roost.cli.output import CliError
from roost.client.api import DEFAULT_FLEET_DIR, DEFAULT_HOME, api_target, fleet_file

__all__ = ["DEFAULT_FLEET_DIR", "DEFAULT_HOME", "api_target", "fleet_file", "parse_listen"]


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"invalid address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:4280")
    return host, int(port)
