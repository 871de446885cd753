"""The edge's TLS certificates: the apps' own (fetched from the control plane, kept current) and the operator's
default one (`--tls-cert`, e.g. for `*.DOMAIN`), chosen per connection by the name the client asks for (SNI).
A name with no certificate ends the handshake with `unrecognized_name`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from typing import Any

import httpx

from roost.tls import Listener, Trust

log = logging.getLogger("roost.proxy.certs")
POLL_SECONDS = 2.0  # a new or removed certificate reaches the edges within this (plus one request)


def context_for(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A server context for one certificate. OpenSSL loads keys from files only: a private, short-lived one."""
    ctx = _base()
    fd, path = tempfile.mkstemp(prefix="roost-cert-", suffix=".pem")  # 0600 by mkstemp
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key_pem if key_pem.endswith("\n") else key_pem + "\n")
            fh.write(cert_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


def _base() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class CertStore:
    def __init__(self, default: Listener | None = None) -> None:
        self.default: ssl.SSLContext | None = None
        if default is not None:
            self.default = _base()
            self.default.load_cert_chain(str(default.cert), str(default.key))
        self.by_name: dict[str, ssl.SSLContext] = {}
        self.apps: dict[str, str] = {}  # hostname -> app
        self.challenges: dict[str, str] = {}  # ACME http-01 token -> key authorization, while an order runs
        self.version = ""
        self.on_change: Callable[[CertStore], None] = lambda _store: None

    def server_context(self) -> ssl.SSLContext:
        ctx = _base()
        if self.default is not None:
            ctx = self.default
        ctx.sni_callback = self._pick
        return ctx

    def pick(self, name: str | None) -> ssl.SSLContext | None:
        if name:
            name = name.lower().rstrip(".")
            exact = self.by_name.get(name)
            if exact is not None:
                return exact
            if "." in name:
                wild = self.by_name.get("*." + name.split(".", 1)[1])
                if wild is not None:
                    return wild
        return self.default

    def _pick(self, conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        chosen = self.pick(name)
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        if chosen is not self.default:
            conn.context = chosen
        return None

    def load(self, bundle: dict[str, Any]) -> None:
        """Take the control plane's bundle; a certificate that fails to load is logged and left out."""
        by_name: dict[str, ssl.SSLContext] = {}
        apps: dict[str, str] = {}
        for item in bundle.get("certificates") or []:
            try:
                by_name[str(item["hostname"])] = context_for(str(item["fullchain"]), str(item["private_key"]))
                apps[str(item["hostname"])] = str(item["app"])
            except (KeyError, ssl.SSLError, OSError) as exc:
                log.warning("certificate for %s left out: %s", item.get("hostname"), exc)
        self.by_name, self.apps = by_name, apps
        challenges = bundle.get("challenges")
        self.challenges = {str(k): str(v) for k, v in challenges.items()} if isinstance(challenges, dict) else {}
        self.version = str(bundle.get("version", ""))
        self.on_change(self)


class CertFollower:
    """Keeps a CertStore current from the control plane (GET /v1/certificates/bundle, answered with nothing
    but its version when nothing changed)."""

    def __init__(self, store: CertStore, server_url: str, token: str, trust: Trust) -> None:
        self.store = store
        self.url = server_url.rstrip("/") + "/v1/certificates/bundle"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.trust = trust

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(headers=self.headers, timeout=5, trust_env=False,
                                     transport=self.trust.async_transport()) as client:
            while not stop.is_set():
                try:
                    response = await client.get(self.url, params={"since": self.store.version})
                    if response.status_code == 200:
                        bundle = response.json()
                        if not bundle.get("unchanged"):
                            self.store.load(bundle)
                            log.info("certificates for %d hostnames", len(self.store.by_name))
                    else:
                        log.warning("fetching certificates: %s %s", response.status_code, response.text[:200])
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("fetching certificates: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)

