"""Secrets sealed at rest (server/sealing.py, server/secrets.py): what is stored does not contain the value,
opens only in its own slot and with a key of the ring, survives rotation, and digests are keyed."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from roost.core.model import App
from roost.server.sealing import Keyring, SealError
from roost.server.secrets import SecretService
from roost.server.state import ClusterState
from roost.server.watch import WatchHub
from roost.testing.memstore import MemoryStore


def test_a_sealed_value_opens_only_in_its_own_slot() -> None:
    ring = Keyring.fresh()
    sealed = ring.seal("hunter2", "web/DB_PASSWORD")
    assert "hunter2" not in sealed and ring.open(sealed, "web/DB_PASSWORD") == "hunter2"
    with pytest.raises(SealError):
        ring.open(sealed, "other/DB_PASSWORD")  # copied to another app: does not open
    with pytest.raises(SealError):
        Keyring.fresh().open(sealed, "web/DB_PASSWORD")  # another ring's keys
    assert ring.seal("hunter2", "web/DB_PASSWORD") != sealed  # a fresh nonce every time


def test_rotation_keeps_old_values_open_and_marks_them_stale() -> None:
    ring = Keyring.fresh()
    old = ring.seal("v", "a/X")
    ring.rotate()
    assert ring.open(old, "a/X") == "v" and not ring.sealed_with_current(old)
    assert ring.sealed_with_current(ring.seal("v", "a/X"))


def test_digests_are_keyed() -> None:
    one, two = Keyring.fresh(), Keyring.fresh()
    assert one.digest("1234") == one.digest("1234") != two.digest("1234")
    assert one.digest("1234") != hashlib.sha256(b"1234").hexdigest()[:16]  # 03ac674216f3e15c


def test_the_keyring_file_is_its_owners_and_a_damaged_one_says_so(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    ring = Keyring.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Keyring.load_or_create(path)
    assert again.open(ring.seal("x", "a/B"), "a/B") == "x"
    path.write_text("{not json")
    with pytest.raises(SealError, match="cannot read the secrets keyring"):
        Keyring.load(path)


async def test_the_store_holds_only_sealed_values_and_old_clear_ones_are_resealed() -> None:
    store = MemoryStore()
    state = ClusterState(store, WatchHub())
    state.load()
    await state.save(App(name="web", id="app_web", org_slug="personal", created_at=0.0))
    ring = Keyring.fresh()
    service = SecretService(state, ring)
    await service.set("web", {"DB_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(store.objects) and service.env("web") == {"DB_PASSWORD": "hunter2"}
    # A value stored in clear before sealing existed, and one sealed under a key since rotated:
    secrets = state.secrets["web"]
    secrets.values["OLD"] = {"value": "clear", "digest": "x", "created_at": 1.0, "updated_at": 1.0}
    ring.rotate()
    assert await service.reseal() == 2
    assert "clear" not in repr(store.objects) and "hunter2" not in repr(store.objects)
    assert service.env("web") == {"DB_PASSWORD": "hunter2", "OLD": "clear"}
    assert await service.reseal() == 0
