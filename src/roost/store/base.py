"""The Store interface: a durable document store with one ordered change log.

Every commit is atomic and durable when it returns (an acknowledged write survives SIGKILL and power
loss as far as fsync allows). Records are JSON documents keyed by (kind, key); the change log is what
the watch feed serves, each entry with its own increasing revision. The interface has no SQLite-only
notions so that a PostgreSQL implementation can satisfy it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from roost.core.errors import RoostError
from roost.detector.leadership import Fence as Fence  # the lease's types live with their pure judge
from roost.detector.leadership import Lease as Lease

JSON = dict[str, Any]


class StoreError(Exception):
    """The store cannot be opened (a wrong URL, an unreachable database, a schema newer than this code): the
    server refuses to start with this one line."""


class StoreUnavailable(RoostError):
    """The database went away during a request: nothing of the request was written (or, if the connection
    dropped during the commit itself, it may have been), and the caller may retry."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class Deposed(StoreUnavailable):
    """A commit made under a leadership term that is over (another server leads now, or the lease lapsed):
    refused, so a deposed leader's late decision changes nothing."""

    def __init__(self, message: str = "this server no longer leads the control plane; retry shortly") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Delta:
    """What other writers committed since a replica's last commit counter: objects written (their current
    docs) and deleted, bringing the replica to `seq`."""

    seq: int
    puts: list[tuple[str, str, JSON]]
    deletes: list[tuple[str, str]]
    full: bool = False  # the tombstones it needed were compacted: `puts` is everything, drop what it lacks
    revision: int = 0  # the change log's revision as of `seq`: publish its entries up to here, no further


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

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float,
               fence: Fence | None = None) -> int:
        """Apply writes and append feed entries in one durable transaction; returns the last revision. With a
        fence, the commit lands only while that lease is held in that term (else Deposed)."""

    def delta(self, since_seq: int) -> Delta:
        """Objects written and deleted by commits after `since_seq` (0: everything)."""

    def acquire(self, name: str, holder: str, ttl: float) -> Lease:
        """Take the lease `name` if it is free or lapsed (a new term), renew it if `holder` has it (same term);
        returns the lease as it now is, whoever holds it."""

    def listen(self, on_commit: Callable[[], None]) -> Callable[[], None]:
        """Call `on_commit` (from another thread) after commits by anyone; returns what stops it."""

    def resign(self, name: str, holder: str) -> None:
        """Give the lease up now, if `holder` has it (a clean shutdown: the next leader need not wait)."""

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
    """'sqlite:///path/roost.db' (default) or 'postgresql://user@host:port/db' (same implementation); raises
    StoreError when it cannot."""
    from roost.store.sql import SqlStore

    return SqlStore(url)
