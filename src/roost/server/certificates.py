"""Apps' TLS certificates (Fly's `/v1/apps/{app}/certificates...`): the operator uploads a certificate and key
for a hostname (`custom`), or the server orders one from an ACME CA (`acme`, see acme_issuer.py, renewed 30
days before it expires); either way the pair is checked (the key is the certificate's, the name is covered),
the key sealed, and the edges fetch every certificate (with its key opened, over the fleet's TLS, with an
edge or operator token) to terminate TLS for `handlers = ["tls", "http"]`, together with the http-01
challenges of orders in progress."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from roost.clock import SYSTEM, Clock
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.model import Certificate
from roost.server.acme_issuer import AcmeError, AcmeIssuer
from roost.server.sealing import Keyring
from roost.server.state import ClusterState
from roost.tasks import spawn

log = logging.getLogger("roost.server.certificates")
RENEW_BEFORE = 30 * 86400  # as Let's Encrypt advises: a month of margin
RENEW_CHECK_SECONDS = 3600.0

HOSTNAME_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_PEM = 64 * 1024


def check_hostname(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 253 or not HOSTNAME_RE.match(value.lower()):
        raise bad_request(f"hostname: not a DNS name: {value!r} (e.g. www.example.com or *.example.com)")
    return value.lower()


def covers(names: list[str], hostname: str) -> bool:
    """Whether a certificate for `names` is valid for `hostname` (one wildcard label, as TLS clients match)."""
    for name in (n.lower() for n in names):
        if name == hostname:
            return True
        if name.startswith("*.") and "." in hostname and hostname.split(".", 1)[1] == name[2:] \
                and not hostname.startswith("*."):
            return True
    return False


def parse_pair(fullchain: Any, private_key: Any) -> tuple[list[x509.Certificate], Any]:
    """The certificates of a PEM chain and its key, checked to belong together; a 422-worthy message if not."""
    if not isinstance(fullchain, str) or not isinstance(private_key, str) or not fullchain or not private_key:
        raise bad_request("fullchain and private_key: PEM text, both required")
    if len(fullchain) > MAX_PEM or len(private_key) > MAX_PEM:
        raise bad_request(f"fullchain and private_key: at most {MAX_PEM // 1024} KiB each")
    try:
        chain = x509.load_pem_x509_certificates(fullchain.encode())
    except ValueError:
        raise RoostError(422, "fullchain: not a PEM certificate chain") from None
    try:
        key = serialization.load_pem_private_key(private_key.encode(), None)
    except (ValueError, TypeError):
        raise RoostError(422, "private_key: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise RoostError(422, "private_key: an RSA, EC or Ed25519 key is needed")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise RoostError(422, "private_key is not the key of the first certificate in fullchain")
    return chain, key


def leaf_names(leaf: x509.Certificate) -> list[str]:
    try:
        return [str(n) for n in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                .value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return []


class CertificateService:
    def __init__(self, state: ClusterState, keyring: Keyring, clock: Clock = SYSTEM,
                 acme: AcmeIssuer | None = None) -> None:
        self.state = state
        self.keyring = keyring
        self.clock = clock
        self.acme = acme
        self.epoch = secrets.token_hex(4)  # a bundle version from before a restart never matches a new one
        self.challenges: dict[str, str] = {}  # http-01 token -> key authorization, while an order runs
        self.challenges_version = 0
        self.orders: dict[str, dict[str, Any]] = {}  # "APP/HOSTNAME" -> {"status", "error"} of ACME orders
        self._tasks: set[asyncio.Task[None]] = set()

    def require_app(self, app: str) -> None:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")

    def _get(self, app: str, hostname: str) -> Certificate:
        self.require_app(app)
        cert = self.state.certificates.get(f"{app}/{hostname.lower()}")
        if cert is None:
            raise not_found(f"no certificate for {hostname!r} on app {app!r}")
        return cert

    def _order_detail(self, app: str, hostname: str) -> dict[str, Any] | None:
        order = self.orders.get(f"{app}/{hostname.lower()}")
        if order is None:
            return None
        return {"hostname": hostname.lower(), "configured": False, "status": order["status"],
                "acme_requested": True, "dns_provider": "", "certificates": [],
                "validation_errors": [{"message": order["error"]}] if order.get("error") else []}

    def list(self, app: str, filter_: str = "", limit: int = 25) -> dict[str, Any]:
        self.require_app(app)
        now = self.clock.time()
        certs = sorted((c for c in self.state.certificates.values() if c.app == app and filter_ in c.hostname),
                       key=lambda c: c.hostname)
        return {"certificates": [c.summary(now) for c in certs[:limit]], "total_count": len(certs)}

    def show(self, app: str, hostname: str) -> dict[str, Any]:
        self.require_app(app)
        if f"{app}/{hostname.lower()}" not in self.state.certificates:
            pending = self._order_detail(app, hostname)
            if pending is not None:
                return pending
        return self._get(app, hostname).detail(self.clock.time())

    async def add_custom(self, app: str, body: Any) -> dict[str, Any]:
        self.require_app(app)
        if not isinstance(body, dict):
            raise bad_request('body must be {"hostname": "...", "fullchain": "PEM", "private_key": "PEM"}')
        hostname = check_hostname(body.get("hostname"))
        return await self._store(app, hostname, body.get("fullchain"), body.get("private_key"), "custom")

    async def _store(self, app: str, hostname: str, fullchain: Any, private_key: Any, source: str) -> dict[str, Any]:
        chain, key = parse_pair(fullchain, private_key)
        leaf = chain[0]
        names = leaf_names(leaf)
        if not covers(names, hostname):
            raise RoostError(422, f"the certificate is for {', '.join(names) or 'no DNS name'}, not {hostname}")
        now = self.clock.time()
        if leaf.not_valid_after_utc.timestamp() <= now:
            raise RoostError(422, f"the certificate expired on {leaf.not_valid_after_utc.isoformat()}")
        self._not_taken(app, hostname)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        old = self.state.certificates.get(f"{app}/{hostname}")
        cert = Certificate(app, hostname, "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
                           self.keyring.seal(key_pem, f"cert:{app}/{hostname}"), source, names,
                           leaf.not_valid_after_utc.timestamp(), leaf.issuer.rfc4514_string(),
                           old.created_at if old else now, now)
        async with self.state.lock:
            await self.state.save(cert)
        return cert.detail(now)

    def _not_taken(self, app: str, hostname: str) -> None:
        taken = next((c for c in self.state.certificates.values() if c.hostname == hostname and c.app != app), None)
        if taken is not None or any(k.split("/", 1)[1] == hostname and not k.startswith(app + "/")
                                    for k in self.orders):
            raise RoostError(409, f"hostname {hostname} already has a certificate on another app")

    async def request_acme(self, app: str, body: Any) -> dict[str, Any]:
        """Order a certificate from the ACME CA for one of the app's hostnames; it is issued in the background
        (GET .../certificates/HOSTNAME shows how it goes)."""
        self.require_app(app)
        if not isinstance(body, dict):
            raise bad_request('body must be {"hostname": "..."}')
        hostname = check_hostname(body.get("hostname"))
        if hostname.startswith("*."):
            raise RoostError(422, "a wildcard certificate needs a dns-01 challenge, which Roost does not answer; "
                                  "upload one with POST /v1/apps/APP/certificates/custom")
        if self.acme is None:
            raise RoostError(422, "this fleet has no ACME issuer (roost server --acme-directory URL); upload "
                                  "the certificate with POST /v1/apps/APP/certificates/custom (roost certs add)")
        self._not_taken(app, hostname)
        if self.orders.get(f"{app}/{hostname}", {}).get("status") != "pending":
            self._order(app, hostname)
        return self._order_detail(app, hostname) or {}

    def _order(self, app: str, hostname: str) -> None:
        self.orders[f"{app}/{hostname}"] = {"status": "pending", "error": ""}
        task = spawn(self._issue(app, hostname), f"acme {hostname}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _issue(self, app: str, hostname: str) -> None:
        assert self.acme is not None
        loop = asyncio.get_running_loop()

        def publish(token: str, validation: str) -> None:
            loop.call_soon_threadsafe(self._set_challenge, token, validation)

        def withdraw(token: str) -> None:
            loop.call_soon_threadsafe(self._set_challenge, token, None)

        key = f"{app}/{hostname}"
        try:
            fullchain, key_pem = await asyncio.to_thread(self.acme.issue, hostname, publish, withdraw, time.sleep)
            if app in self.state.apps:
                await self._store(app, hostname, fullchain, key_pem, "acme")
            self.orders.pop(key, None)
            log.info("ACME certificate for %s (app %s)", hostname, app)
        except (AcmeError, RoostError) as exc:
            message = exc.message if isinstance(exc, RoostError) else str(exc)
            self.orders[key] = {"status": "failed", "error": message}
            log.warning("%s", message)

    def _set_challenge(self, token: str, validation: str | None) -> None:
        if validation is None:
            self.challenges.pop(token, None)
        else:
            self.challenges[token] = validation
        self.challenges_version += 1

    async def renew_loop(self, stop: asyncio.Event) -> None:
        """Order again every ACME certificate within RENEW_BEFORE of its end (custom ones are the operator's)."""
        while not stop.is_set():
            if self.acme is not None:
                now = self.clock.time()
                for cert in list(self.state.certificates.values()):
                    if cert.source == "acme" and cert.not_after - now < RENEW_BEFORE \
                            and self.orders.get(cert.key, {}).get("status") != "pending":
                        self._order(cert.app, cert.hostname)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RENEW_CHECK_SECONDS)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def delete(self, app: str, hostname: str) -> dict[str, Any]:
        cert = self._get(app, hostname)
        async with self.state.lock:
            await self.state.save(deleted=[cert])
        return cert.detail(self.clock.time())

    def check(self, app: str, hostname: str) -> dict[str, Any]:
        """Fly re-checks DNS and validation here; a custom certificate has nothing to validate but its dates."""
        return {**self._get(app, hostname).detail(self.clock.time()), "dns_records": {}}

    async def forget_app(self, app: str) -> None:
        for key in [k for k in self.orders if k.startswith(app + "/")]:
            self.orders.pop(key, None)
        gone = [c for c in self.state.certificates.values() if c.app == app]
        if gone:
            async with self.state.lock:
                await self.state.save(deleted=gone)

    def bundle(self, since: str) -> dict[str, Any]:
        """Every certificate with its key opened, and the http-01 answers of orders in progress, for the edges;
        nothing but the version if none changed."""
        version = f"{self.epoch}-{self.state.certificates_version}-{self.challenges_version}"
        if since == version:
            return {"version": version, "unchanged": True}
        return {"version": version, "challenges": dict(self.challenges), "certificates": [
            {"app": c.app, "hostname": c.hostname, "fullchain": c.fullchain,
             "private_key": self.keyring.open(c.key_sealed, f"cert:{c.app}/{c.hostname}")}
            for c in self.state.certificates.values()]}
