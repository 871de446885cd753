"""Apps' TLS certificates (Fly's `/v1/apps/{app}/certificates...`): the operator uploads a certificate and key
for a hostname (`custom`), the server checks that they belong together and cover that name, seals the key,
and the edges fetch every certificate (with its key opened, over the fleet's TLS, with an edge or operator
token) to terminate TLS for `handlers = ["tls", "http"]`."""

from __future__ import annotations

import re
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from roost.clock import SYSTEM, Clock
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.model import Certificate
from roost.server.sealing import Keyring
from roost.server.state import ClusterState

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
    def __init__(self, state: ClusterState, keyring: Keyring, clock: Clock = SYSTEM) -> None:
        self.state = state
        self.keyring = keyring
        self.clock = clock
        self.epoch = secrets.token_hex(4)  # a bundle version from before a restart never matches a new one

    def require_app(self, app: str) -> None:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")

    def _get(self, app: str, hostname: str) -> Certificate:
        self.require_app(app)
        cert = self.state.certificates.get(f"{app}/{hostname.lower()}")
        if cert is None:
            raise not_found(f"no certificate for {hostname!r} on app {app!r}")
        return cert

    def list(self, app: str, filter_: str = "", limit: int = 25) -> dict[str, Any]:
        self.require_app(app)
        now = self.clock.time()
        certs = sorted((c for c in self.state.certificates.values() if c.app == app and filter_ in c.hostname),
                       key=lambda c: c.hostname)
        return {"certificates": [c.summary(now) for c in certs[:limit]], "total_count": len(certs)}

    def show(self, app: str, hostname: str) -> dict[str, Any]:
        return self._get(app, hostname).detail(self.clock.time())

    async def add_custom(self, app: str, body: Any) -> dict[str, Any]:
        self.require_app(app)
        if not isinstance(body, dict):
            raise bad_request('body must be {"hostname": "...", "fullchain": "PEM", "private_key": "PEM"}')
        hostname = check_hostname(body.get("hostname"))
        chain, key = parse_pair(body.get("fullchain"), body.get("private_key"))
        leaf = chain[0]
        names = leaf_names(leaf)
        if not covers(names, hostname):
            raise RoostError(422, f"the certificate is for {', '.join(names) or 'no DNS name'}, not {hostname}")
        now = self.clock.time()
        if leaf.not_valid_after_utc.timestamp() <= now:
            raise RoostError(422, f"the certificate expired on {leaf.not_valid_after_utc.isoformat()}")
        taken = next((c for c in self.state.certificates.values() if c.hostname == hostname and c.app != app), None)
        if taken is not None:
            raise RoostError(409, f"hostname {hostname} already has a certificate on another app")
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        old = self.state.certificates.get(f"{app}/{hostname}")
        cert = Certificate(app, hostname, "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
                           self.keyring.seal(key_pem, f"cert:{app}/{hostname}"), "custom", names,
                           leaf.not_valid_after_utc.timestamp(), leaf.issuer.rfc4514_string(),
                           old.created_at if old else now, now)
        async with self.state.lock:
            await self.state.save(cert)
        return cert.detail(now)

    async def delete(self, app: str, hostname: str) -> dict[str, Any]:
        cert = self._get(app, hostname)
        async with self.state.lock:
            await self.state.save(deleted=[cert])
        return cert.detail(self.clock.time())

    def check(self, app: str, hostname: str) -> dict[str, Any]:
        """Fly re-checks DNS and validation here; a custom certificate has nothing to validate but its dates."""
        return {**self._get(app, hostname).detail(self.clock.time()), "dns_records": {}}

    async def forget_app(self, app: str) -> None:
        gone = [c for c in self.state.certificates.values() if c.app == app]
        if gone:
            async with self.state.lock:
                await self.state.save(deleted=gone)

    def bundle(self, since: str) -> dict[str, Any]:
        """Every certificate with its key opened, for the edges; nothing but the version if none changed."""
        version = f"{self.epoch}-{self.state.certificates_version}"
        if since == version:
            return {"version": version, "unchanged": True}
        return {"version": version, "certificates": [
            {"app": c.app, "hostname": c.hostname, "fullchain": c.fullchain,
             "private_key": self.keyring.open(c.key_sealed, f"cert:{c.app}/{c.hostname}")}
            for c in self.state.certificates.values()]}
