"""TLS between Roost's components: who trusts what, and the transports that carry it.

A component given a CA file (`--ca`, or `ROOST_CA_FILE`) trusts that CA alone (the fleet CA is pinned, not
added to the system's) and speaks only HTTPS to the others: an `http://` URL is refused before anything is
sent, so a token never crosses a link in clear text. Without a CA file, an `https://` URL is checked against
the system's CAs (operator-supplied certificates from a public CA)."""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from roost.failover import AsyncFailoverTransport, FailoverTransport

CA_ENV = "ROOST_CA_FILE"


class TlsError(ValueError):
    pass


@dataclass(frozen=True)
class Trust:
    """What a component trusts when it calls another: a pinned CA (and then HTTPS only), or the defaults."""

    ca: Path | None = None
    # The control plane's replicas (issue 18): requests to any of them go to one that answers
    servers: tuple[str, ...] = ()

    @property
    def pinned(self) -> bool:
        return self.ca is not None

    @functools.cached_property
    def _context(self) -> ssl.SSLContext:
        if self.ca is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot read the fleet CA {self.ca}: {exc}") from None

    def context(self) -> ssl.SSLContext:
        return self._context  # made once: loading a CA file costs a millisecond

    def check_url(self, url: str, what: str) -> str:
        """`url`, if this component may call it: with a pinned CA, HTTPS only."""
        if self.pinned and not url.startswith("https://"):
            raise TlsError(f"{what} {url} is plain HTTP, but this fleet speaks TLS (--ca {self.ca}): use https://")
        return url

    def with_servers(self, servers: tuple[str, ...]) -> Trust:
        return Trust(self.ca, servers)

    def transport(self, local_address: str | None = None) -> httpx.BaseTransport:
        inner = httpx.HTTPTransport(verify=self.context(), local_address=local_address)
        return FailoverTransport(inner, self.servers) if len(self.servers) > 1 else inner

    def async_transport(self, local_address: str | None = None,
                        limits: httpx.Limits = httpx.Limits()) -> httpx.AsyncBaseTransport:
        inner = httpx.AsyncHTTPTransport(verify=self.context(), local_address=local_address, limits=limits)
        return AsyncFailoverTransport(inner, self.servers) if len(self.servers) > 1 else inner


def trust_from(ca: Path | None) -> Trust:
    """The trust a component starts with: `--ca`, else ROOST_CA_FILE, else the system's CAs."""
    if ca is None and os.environ.get(CA_ENV):
        ca = Path(os.environ[CA_ENV])
    if ca is not None and not ca.is_file():
        raise TlsError(f"no CA file at {ca}: give the fleet CA's certificate (ca.pem), e.g. from 'roost tls init'")
    return Trust(ca)


@dataclass(frozen=True)
class Listener:
    """A component's own certificate, to listen with HTTPS (and nothing else)."""

    cert: Path
    key: Path

    def check(self) -> None:
        for path in (self.cert, self.key):
            if not path.is_file():
                raise TlsError(f"no such file {path}: give --tls-cert and --tls-key (PEM), e.g. from 'roost tls issue'")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use {self.cert} with {self.key}: {exc}") from None
