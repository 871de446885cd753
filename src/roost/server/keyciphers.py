"""Secret keys' cryptography (Fly's `secretkeys`: keys an app's machines use through the API, never holding them).

Make a key of a type, its public half, and the operations each type allows; no I/O. The server seals the key
material at rest (server/secretkeys.py). The types and what they do are Fly's (fly-go's SECRETKEY_TYPE_*):

- `hs256`, `hs384`, `hs512`: HMAC-SHA-2; sign and verify.
- `nacl_auth`: libsodium's crypto_auth (HMAC-SHA-512-256); sign and verify.
- `nacl_sign`: Ed25519; sign and verify; the public key is shown.
- `xaes256gcm`: XAES-256-GCM (C2SP), AES-256-GCM with a 24-byte random nonce; encrypt and decrypt with
  associated data. The ciphertext is nonce || sealed.
- `nacl_secretbox`: XSalsa20-Poly1305; encrypt and decrypt. The ciphertext is nonce || box.
- `nacl_box`: X25519 sealed boxes (anyone with the public key encrypts; the app decrypts); the public key is
  shown.

Ciphers come from well-kept libraries: `cryptography` (OpenSSL) and PyNaCl (libsodium).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roost.core.errors import bad_request

HMAC_TYPES = {"hs256": hashlib.sha256, "hs384": hashlib.sha384, "hs512": hashlib.sha512}
SIGNING_TYPES = (*HMAC_TYPES, "nacl_auth", "nacl_sign")
CIPHER_TYPES = ("xaes256gcm", "nacl_secretbox", "nacl_box")
TYPES = (*SIGNING_TYPES, *CIPHER_TYPES)
# The size a key of each type has (what a caller who brings their own key must give).
KEY_BYTES = {"hs256": 32, "hs384": 48, "hs512": 64, "nacl_auth": 32, "nacl_sign": 32, "xaes256gcm": 32,
             "nacl_secretbox": 32, "nacl_box": 32}
MAX_DATA_BYTES = 1024 * 1024  # what one call may encrypt, sign or verify


@dataclass(frozen=True)
class SecretKey:
    type: str
    material: bytes

    @property
    def public_key(self) -> bytes | None:
        if self.type == "nacl_sign":
            return bytes(nacl.signing.SigningKey(self.material).verify_key)
        if self.type == "nacl_box":
            return bytes(nacl.public.PrivateKey(self.material).public_key)
        return None


def check_type(kind: object) -> str:
    if not isinstance(kind, str) or kind not in TYPES:
        raise bad_request(f"type: expected one of {', '.join(TYPES)}")
    return kind


def generate(kind: str) -> SecretKey:
    return SecretKey(check_type(kind), os.urandom(KEY_BYTES[kind]))


def from_bytes(kind: str, material: bytes) -> SecretKey:
    check_type(kind)
    if len(material) != KEY_BYTES[kind]:
        raise bad_request(f"value: a {kind} key is {KEY_BYTES[kind]} bytes, not {len(material)}")
    return SecretKey(kind, material)


def sign(key: SecretKey, message: bytes) -> bytes:
    if key.type in HMAC_TYPES:
        return hmac.new(key.material, message, HMAC_TYPES[key.type]).digest()
    if key.type == "nacl_auth":
        return hmac.new(key.material, message, hashlib.sha512).digest()[:32]
    if key.type == "nacl_sign":
        return nacl.signing.SigningKey(key.material).sign(message).signature
    raise bad_request(f"a {key.type} key encrypts and decrypts; signing keys are {', '.join(SIGNING_TYPES)}")


def verify(key: SecretKey, message: bytes, signature: bytes) -> bool:
    if key.type == "nacl_sign":
        try:
            nacl.signing.VerifyKey(key.public_key or b"").verify(message, signature)
            return True
        except nacl.exceptions.BadSignatureError:
            return False
    return hmac.compare_digest(sign(key, message), signature)


def encrypt(key: SecretKey, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    if key.type == "xaes256gcm":
        nonce = os.urandom(24)
        return nonce + AESGCM(_xaes_key(key.material, nonce)).encrypt(nonce[12:], plaintext, associated_data)
    if associated_data:
        raise bad_request(f"associated_data: a {key.type} key takes none (xaes256gcm does)")
    if key.type == "nacl_secretbox":
        return bytes(nacl.secret.SecretBox(key.material).encrypt(plaintext))
    if key.type == "nacl_box":
        return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(key.material).public_key).encrypt(plaintext))
    raise bad_request(f"a {key.type} key signs and verifies; encryption keys are {', '.join(CIPHER_TYPES)}")


def decrypt(key: SecretKey, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
    try:
        if key.type == "xaes256gcm":
            if len(ciphertext) < 24 + 16:
                raise bad_request("ciphertext: too short to be from this key")
            nonce = ciphertext[:24]
            return AESGCM(_xaes_key(key.material, nonce)).decrypt(nonce[12:], ciphertext[24:], associated_data)
        if associated_data:
            raise bad_request(f"associated_data: a {key.type} key takes none (xaes256gcm does)")
        if key.type == "nacl_secretbox":
            return bytes(nacl.secret.SecretBox(key.material).decrypt(ciphertext))
        if key.type == "nacl_box":
            return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(key.material)).decrypt(ciphertext))
    except (InvalidTag, nacl.exceptions.CryptoError):
        raise bad_request("ciphertext: it does not open with this key (altered, or another key's)") from None
    raise bad_request(f"a {key.type} key signs and verifies; encryption keys are {', '.join(CIPHER_TYPES)}")


def _xaes_key(key: bytes, nonce: bytes) -> bytes:
    """XAES-256-GCM's derived key (C2SP xaes-256-gcm): two CMAC-style blocks over the nonce's first half."""
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    lblock = int.from_bytes(aes.update(bytes(16)), "big")
    k1 = (lblock << 1) & ((1 << 128) - 1)
    if lblock >> 127:
        k1 ^= 0x87
    derived = b""
    for counter in (1, 2):
        block = bytes([0, counter]) + b"X" + bytes([0]) + nonce[:12]
        derived += aes.update((int.from_bytes(block, "big") ^ k1).to_bytes(16, "big"))
    return derived
