"""Secrets sealed at rest: AES-256-GCM with keys kept outside the database, in a keyring file (0600).

A sealed value is `v1:<key id>:<base64(nonce | ciphertext | tag)>`, bound to its app and name (the
associated data), so a sealed value copied to another app or name does not open. Digests shown by the API
are HMAC-SHA256 under a key of their own: they tell two values apart without identifying a weak one.

Rotation adds a key and makes it current; the server re-seals every secret under it when it starts, and
older keys stay in the ring (so a database restored from an older backup still opens) until removed by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets as _random
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roost.core.errors import RoostError
from roost.private_files import write_private

FORMAT = "v1"


class SealError(RoostError):
    def __init__(self, message: str) -> None:
        super().__init__(500, message)


@dataclass
class Keyring:
    current: str
    keys: dict[str, bytes] = field(default_factory=dict)
    digest_key: bytes = b""

    # ---- the file ----

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        if path.exists():
            return cls.load(path)
        ring = cls.fresh()
        ring.save(path)
        return ring

    @classmethod
    def fresh(cls) -> Keyring:
        kid = _new_id()
        return cls(kid, {kid: AESGCM.generate_key(bit_length=256)}, _random.token_bytes(32))

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            doc = json.loads(path.read_text())
            keys = {kid: base64.b64decode(value) for kid, value in doc["keys"].items()}
            ring = cls(doc["current"], keys, base64.b64decode(doc["digest_key"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SealError(f"cannot read the secrets keyring {path}: {exc}") from None
        if ring.current not in ring.keys or any(len(k) != 32 for k in ring.keys.values()):
            raise SealError(f"the secrets keyring {path} is damaged (no current 256-bit key)")
        return ring

    def save(self, path: Path) -> None:
        doc = {"current": self.current, "digest_key": base64.b64encode(self.digest_key).decode(),
               "keys": {kid: base64.b64encode(key).decode() for kid, key in self.keys.items()}}
        write_private(path, json.dumps(doc, indent=2))

    def rotate(self) -> str:
        """A new current key (the old ones stay, to open what they sealed); returns its id."""
        kid = _new_id()
        self.keys[kid] = AESGCM.generate_key(bit_length=256)
        self.current = kid
        return kid

    # ---- sealing ----

    def seal(self, value: str, slot: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, value.encode(), slot.encode())
        return f"{FORMAT}:{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, slot: str) -> str:
        try:
            fmt, kid, data = sealed.split(":", 2)
            raw = base64.b64decode(data)
        except ValueError:
            raise SealError(f"a sealed secret of {slot} is damaged") from None
        if fmt != FORMAT or kid not in self.keys:
            raise SealError(f"a secret of {slot} was sealed with key {kid!r}, which is not in the keyring")
        try:
            return AESGCM(self.keys[kid]).decrypt(raw[:12], raw[12:], slot.encode()).decode()
        except InvalidTag:
            raise SealError(f"a sealed secret of {slot} does not open (damaged, or moved from elsewhere)") from None

    def sealed_with_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{FORMAT}:{self.current}:")

    def digest(self, value: str) -> str:
        return hmac.new(self.digest_key, value.encode(), hashlib.sha256).hexdigest()[:16]


def _new_id() -> str:
    return _random.token_hex(4)
