"""Shared CLI helpers: the Roost home, listen addresses, finding the server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from roost.cli.output import CliError

DEFAULT_HOME = Path(os.environ.get("ROOST_HOME", Path.home() / ".roost"))
DEFAULT_FLEET_DIR = DEFAULT_HOME / "dev"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"invalid address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:4280")
    return host, int(port)


def fleet_file(data_dir: Path | None = None) -> Path:
    return (data_dir or Path(os.environ.get("ROOST_DEV_DIR", DEFAULT_FLEET_DIR))) / "fleet.json"


def api_target() -> tuple[str, str]:
    """(server URL, token) from ROOST_API_URL/ROOST_API_TOKEN, else from the running dev fleet."""
    url = os.environ.get("ROOST_API_URL")
    token = os.environ.get("ROOST_API_TOKEN")
    if url and token:
        return url.rstrip("/"), token
    path = fleet_file()
    if path.exists():
        try:
            fleet = json.loads(path.read_text())
            return (url or fleet["server"]["url"]).rstrip("/"), token or fleet["token"]
        except (ValueError, KeyError) as exc:
            raise CliError(f"{path} is damaged ({exc}); run 'roost dev down' and 'roost dev up' again") from None
    raise CliError("no Roost server found: set ROOST_API_URL and ROOST_API_TOKEN, or start a local fleet "
                   "with 'roost dev up'")
