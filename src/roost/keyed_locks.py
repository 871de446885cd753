"""One asyncio lock per key (a machine, an image digest): made on first use, forgotten when the key is gone,
so that operations on one key run one at a time and operations on different keys do not wait for each other."""

from __future__ import annotations

import asyncio


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def busy(self, key: str) -> bool:
        lock = self._locks.get(key)
        return bool(lock and lock.locked())

    def forget(self, key: str) -> None:
        self._locks.pop(key, None)
