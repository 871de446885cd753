"""Shared CLI helpers: the Roost home, listen addresses, finding the server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from roost import logsetup
from roost.cli.output import CliError
from roost.client.api import DEFAULT_FLEET_DIR, DEFAULT_HOME, api_target, fleet_file
from roost.failover import parse_servers
from roost.tls import Listener, TlsError, Trust, trust_from

__all__ = ["DEFAULT_FLEET_DIR", "DEFAULT_HOME", "advertised_address", "api_target", "fleet_file", "fleet_token",
           "parse_listen", "tls_setup"]

TLS_CERT_HELP = "This component's certificate (PEM): it then listens with HTTPS only."
TLS_KEY_HELP = "The key of --tls-cert (PEM, keep it 0600)."
CA_HELP = "The fleet CA (ca.pem) to trust alone, pinned; then every URL must be https:// (or set ROOST_CA_FILE)."


def tls_setup(cert: Path | None, key: Path | None, ca: Path | None) -> tuple[Listener | None, Trust]:
    """A component's own certificate (if it listens with TLS) and whom it trusts, checked before it starts."""
    try:
        trust = trust_from(ca)
        if (cert is None) != (key is None):
            raise CliError("give both --tls-cert and --tls-key, or neither")
        listener = Listener(cert, key) if cert is not None and key is not None else None
        if listener is not None:
            listener.check()
    except TlsError as exc:
        raise CliError(str(exc)) from None
    return listener, trust


def check_url(trust: Trust, url: str, what: str) -> str:
    try:
        return trust.check_url(url, what)
    except TlsError as exc:
        raise CliError(str(exc)) from None


def servers_of(trust: Trust, value: str, what: str) -> tuple[str, Trust]:
    """`--server URL[,URL...]`: the first URL, and a trust that fails over among all of them (issue 18)."""
    servers = parse_servers(value)
    if not servers:
        raise CliError(f"{what} needs a URL, e.g. https://127.0.0.1:4280 (several: URL,URL,... for replicas)")
    for url in servers:
        check_url(trust, url, what)
    return servers[0], trust.with_servers(servers)


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


def advertised_address(value: str) -> str:
    """An --advertise address (agents, edges): an IP address (not a wildcard) or a host name, without a port."""
    import ipaddress
    import re

    text = value.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", text) or ":" in text:
            raise CliError(f"--advertise {value!r}: expected an IP address or host name, without a port "
                           "(the port is --listen's)") from None
        return text
    if ip.is_unspecified:
        raise CliError(f"--advertise {value}: a wildcard address reaches nobody; give this host's own address")
    return f"[{ip}]" if ip.version == 6 else str(ip)


def log_format_option() -> Any:
    return typer.Option("text", "--log-format", envvar="ROOST_LOG_FORMAT",
                        help="How this component logs to stderr: text, or json (one object per line).")


def use_log_format(value: str) -> None:
    """Check --log-format and hand it to the component (and the processes it starts) through the environment."""
    try:
        os.environ[logsetup.ENV] = logsetup.check(value)
    except ValueError as exc:
        raise CliError(f"--log-format: {exc}") from None
