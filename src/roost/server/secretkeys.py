"""An app's secret keys (Fly's `/secretkeys`): made or given, sealed at rest with the app's secrets, and used
through the API (sign, verify, encrypt, decrypt) so that the key itself never leaves the server. Only a
public half (Ed25519, X25519) is ever shown. The cryptography is in server/keyciphers.py."""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

from roost.core.errors import RoostError, bad_request, not_found
from roost.core.model import AppSecrets, rfc3339
from roost.server import keyciphers as sk
from roost.server.sealing import Keyring
from roost.server.secrets import NAME
from roost.server.state import ClusterState

MAX_KEYS = 100  # per app


class SecretKeyService:
    def __init__(self, state: ClusterState, keyring: Keyring) -> None:
        self.state = state
        self.keyring = keyring

    def _secrets(self, app: str) -> AppSecrets:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        return self.state.secrets.get(app) or AppSecrets(app)

    def _entry(self, app: str, name: str, min_version: Any = None) -> dict[str, Any]:
        secrets = self._secrets(app)
        _at_least(secrets, min_version)
        entry = secrets.keys.get(name)
        if entry is None:
            raise not_found(f"secret key {name!r} not found in app {app!r}")
        return entry

    def _key(self, app: str, name: str, min_version: Any = None) -> sk.SecretKey:
        entry = self._entry(app, name, min_version)
        material = base64.b64decode(self.keyring.open(str(entry["sealed"]), f"{app}/secretkey/{name}"))
        return sk.SecretKey(str(entry["type"]), material)

    async def reseal(self) -> int:
        """Keys sealed under an older keyring key, sealed again under the current one; returns how many."""
        count = 0
        for app, secrets in list(self.state.secrets.items()):
            stale = [name for name, entry in secrets.keys.items()
                     if not self.keyring.sealed_with_current(str(entry["sealed"]))]
            if not stale:
                continue
            async with self.state.lock:
                current = copy.deepcopy(self.state.secrets[app])
                for name in stale:
                    slot = f"{app}/secretkey/{name}"
                    entry = current.keys[name]
                    entry["sealed"] = self.keyring.seal(self.keyring.open(str(entry["sealed"]), slot), slot)
                await self.state.save(current)
            count += len(stale)
        return count

    def list(self, app: str, types: str | None = None, min_version: Any = None) -> dict[str, Any]:
        secrets = self._secrets(app)
        _at_least(secrets, min_version)
        wanted = {t for t in (types or "").split(",") if t}
        for kind in wanted:
            sk.check_type(kind)
        return {"secret_keys": [_view(name, entry) for name, entry in sorted(secrets.keys.items())
                                if not wanted or entry["type"] in wanted]}

    def get(self, app: str, name: str, min_version: Any = None) -> dict[str, Any]:
        return _view(name, self._entry(app, name, min_version))

    async def set(self, app: str, name: str, body: Any, generate: bool) -> dict[str, Any]:
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 256:
            raise bad_request(f"secret key name {name!r}: letters, digits and underscores, not starting with a digit")
        if not isinstance(body, dict):
            raise bad_request('body must be {"type": "hs256"} (generate) or {"type": ..., "value": [bytes]}')
        kind = sk.check_type(body.get("type"))
        key = sk.generate(kind) if generate else sk.from_bytes(kind, _bytes(body.get("value"), "value"))
        async with self.state.lock:
            current = copy.deepcopy(self._secrets(app))
            if name not in current.keys and len(current.keys) >= MAX_KEYS:
                raise bad_request(f"app {app!r} has {MAX_KEYS} secret keys already: delete one first")
            now = time.time()
            created = current.keys.get(name, {}).get("created_at", now)
            public = key.public_key
            current.keys[name] = {
                "type": kind, "created_at": created, "updated_at": now,
                "sealed": self.keyring.seal(base64.b64encode(key.material).decode(), f"{app}/secretkey/{name}"),
                **({"public_key": base64.b64encode(public).decode()} if public else {})}
            current.version += 1
            await self.state.save(current)
        return {**_view(name, current.keys[name]), "version": current.version}

    async def delete(self, app: str, name: str) -> dict[str, Any]:
        async with self.state.lock:
            current = copy.deepcopy(self._secrets(app))
            if name not in current.keys:
                raise not_found(f"secret key {name!r} not found in app {app!r}")
            del current.keys[name]
            current.version += 1
            await self.state.save(current)
        return {"version": current.version}

    def use(self, app: str, name: str, operation: str, body: Any, min_version: Any = None) -> dict[str, Any] | None:
        """sign, verify (None when the signature holds), encrypt or decrypt with the named key."""
        if not isinstance(body, dict):
            raise bad_request(f"body must be a JSON object for {operation}")
        key = self._key(app, name, min_version)
        if operation == "sign":
            return {"signature": list(sk.sign(key, _bytes(body.get("plaintext"), "plaintext")))}
        if operation == "verify":
            if not sk.verify(key, _bytes(body.get("plaintext"), "plaintext"), _bytes(body.get("signature"),
                                                                                  "signature")):
                raise bad_request("signature: it does not verify with this key")
            return None
        aad = _bytes(body.get("associated_data") or [], "associated_data")
        if operation == "encrypt":
            return {"ciphertext": list(sk.encrypt(key, _bytes(body.get("plaintext"), "plaintext"), aad))}
        return {"plaintext": list(sk.decrypt(key, _bytes(body.get("ciphertext"), "ciphertext"), aad))}


def _view(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"name": name, "type": entry["type"], "created_at": rfc3339(entry["created_at"]),
                            "updated_at": rfc3339(entry["updated_at"])}
    if entry.get("public_key"):
        view["public_key"] = list(base64.b64decode(entry["public_key"]))
    return view


def _at_least(secrets: AppSecrets, min_version: Any) -> None:
    """Fly's `min_version`: answer only from secrets at least this new (one store here: it is, or it never was)."""
    if min_version in (None, ""):
        return
    try:
        wanted = int(min_version)
    except (TypeError, ValueError):
        raise bad_request("min_version: expected a whole number") from None
    if wanted > secrets.version:
        raise RoostError(409, f"min_version {wanted}: the app's secrets are at version {secrets.version}")


def _bytes(value: Any, field: str) -> bytes:
    """Fly's JSON bytes: an array of integers 0-255 (a base64 string is accepted too)."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise bad_request(f"{field}: expected an array of bytes (0-255) or base64") from None
    elif isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255
                                         for b in value):
        raw = bytes(value)
    else:
        raise bad_request(f"{field}: expected an array of bytes (0-255)")
    if len(raw) > sk.MAX_DATA_BYTES:
        raise bad_request(f"{field}: at most {sk.MAX_DATA_BYTES} bytes")
    return raw
