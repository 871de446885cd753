"""The Store interface: a durable document store with one ordered change log.

Every commit is atomic and durable when it returns (an acknowledged write survives SIGKILL and power
loss as far as fsync allows). Records are JSON documents keyed by (kind, key); the change log is what
the watch feed serves, each entry with its own increasing revision. The interface has no SQLite-only
notions so that a PostgreSQL implementation can satisfy it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(frozen=True)
class Put:
    kind: str
    key: str
    doc: JSON


@dataclass(frozen=True)
class Delete:
    kind: str
    key: str


@dataclass(frozen=True)
class FeedEntry:
    """What watchers are told: an object's public view after the change (None when deleted)."""

    kind: str
    key: str
    op: str  # "put" | "delete"
    doc: JSON | None


@dataclass(frozen=True)
class ChangeRecord:
    rev: int
    kind: str
    key: str
    op: str
    doc: JSON | None
    ts: float

    def to_json(self) -> JSON:
        return {"rev": self.rev, "kind": self.kind, "key": self.key, "op": self.op, "object": self.doc, "ts": self.ts}


class Store(Protocol):
    def load(self) -> tuple[int, dict[str, dict[str, JSON]]]:
        """(current revision, kind -> key -> doc) of everything stored."""

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float) -> int:
        """Apply writes and append feed entries in one durable transaction; returns the last revision."""

    def changes_since(self, rev: int, limit: int) -> list[ChangeRecord]:
        """Change-log entries with revision > rev, oldest first, at most `limit`."""

    def oldest_revision(self) -> int:
        """The lowest revision still in the change log (0 when empty): older ones were compacted."""

    def compact(self, keep: int) -> int:
        """Drop all but the newest `keep` change-log entries; returns how many were dropped."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """'sqlite:///path/roost.db' (default) or 'postgresql+psycopg://...' (same implementation)."""
    from roost.store.sql import SqlStore

    return SqlStore(url)
