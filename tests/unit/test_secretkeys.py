"""Secret keys' cryptography (server/keyciphers.py): each of Fly's types does what it says, and nothing else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roost.core.errors import RoostError
from roost.server import keyciphers as sk


@pytest.mark.parametrize(("key", "aad", "expected"), [
    # C2SP's XAES-256-GCM test vectors (c2sp.org/XAES-256-GCM)
    (bytes([1]) * 32, b"", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"),
    (bytes([3]) * 32, b"c2sp.org/XAES-256-GCM", "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"),
])
def test_xaes_matches_the_specifications_vectors(key: bytes, aad: bytes, expected: str) -> None:
    nonce = b"ABCDEFGHIJKLMNOPQRSTUVWX"
    assert AESGCM(sk._xaes_key(key, nonce)).encrypt(nonce[12:], b"XAES-256-GCM", aad).hex() == expected


@pytest.mark.parametrize("kind", sk.CIPHER_TYPES)
def test_ciphers_round_trip_and_refuse_tampering(kind: str) -> None:
    key = sk.generate(kind)
    sealed = sk.encrypt(key, b"attack at dawn")
    assert b"attack" not in sealed and sk.decrypt(key, sealed) == b"attack at dawn"
    assert sk.encrypt(key, b"attack at dawn") != sealed, "a fresh nonce every time"
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(RoostError, match="does not open"):
        sk.decrypt(key, tampered)
    with pytest.raises(RoostError, match="does not open"):
        sk.decrypt(sk.generate(kind), sealed)
    with pytest.raises(RoostError, match="encrypts and decrypts"):
        sk.sign(key, b"x")


def test_xaes_binds_the_associated_data() -> None:
    key = sk.generate("xaes256gcm")
    sealed = sk.encrypt(key, b"row 7", b"table=users")
    assert sk.decrypt(key, sealed, b"table=users") == b"row 7"
    with pytest.raises(RoostError, match="does not open"):
        sk.decrypt(key, sealed, b"table=admins")
    with pytest.raises(RoostError, match="takes none"):
        sk.encrypt(sk.generate("nacl_secretbox"), b"x", b"aad")


@pytest.mark.parametrize("kind", sk.SIGNING_TYPES)
def test_signatures_verify_and_catch_changes(kind: str) -> None:
    key = sk.generate(kind)
    signature = sk.sign(key, b"deploy v42")
    assert sk.verify(key, b"deploy v42", signature)
    assert not sk.verify(key, b"deploy v43", signature)
    assert not sk.verify(sk.generate(kind), b"deploy v42", signature)
    with pytest.raises(RoostError, match="signs and verifies"):
        sk.encrypt(key, b"x")


def test_known_answers_for_hmac_and_ed25519() -> None:
    # RFC 4231 test case 2 (HMAC-SHA-256, key "Jefe") needs a 4-byte key; Fly's keys are fixed-size, so the
    # check is against Python's hmac with the same key instead, and Ed25519 against RFC 8032 test 1.
    import hashlib
    import hmac

    key = sk.from_bytes("hs256", bytes(range(32)))
    assert sk.sign(key, b"msg") == hmac.new(bytes(range(32)), b"msg", hashlib.sha256).digest()
    ed = sk.from_bytes("nacl_sign", bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert ed.public_key == bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert sk.sign(ed, b"").hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")


def test_public_keys_only_for_the_asymmetric_types() -> None:
    assert sk.generate("nacl_box").public_key is not None and len(sk.generate("nacl_sign").public_key or b"") == 32
    assert all(sk.generate(k).public_key is None for k in ("hs256", "xaes256gcm", "nacl_secretbox", "nacl_auth"))


def test_bad_types_and_sizes_are_refused() -> None:
    with pytest.raises(RoostError, match="type: expected one of"):
        sk.generate("rsa4096")
    with pytest.raises(RoostError, match="is 32 bytes, not 5"):
        sk.from_bytes("hs256", b"short")
