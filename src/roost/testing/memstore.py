"""A Store in memory, for tests of the control plane's shells on a virtual clock: the same contract as the
SQL store (atomic commits, one ordered change log, compaction), without a disk or a thread."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from roost.store.base import JSON, ChangeRecord, Delete, FeedEntry, Put


class MemoryStore:
    def __init__(self) -> None:
        self.revision = 0
        self.objects: dict[str, dict[str, JSON]] = {}
        self.log: list[ChangeRecord] = []
        self.meta: dict[str, str] = {}

    def load(self) -> tuple[int, dict[str, dict[str, JSON]]]:
        return self.revision, copy.deepcopy(self.objects)

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float) -> int:
        for w in writes:
            if isinstance(w, Put):
                self.objects.setdefault(w.kind, {})[w.key] = copy.deepcopy(w.doc)
            else:
                self.objects.get(w.kind, {}).pop(w.key, None)
        first = self.revision + 1
        self.log += [ChangeRecord(first + i, f.kind, f.key, f.op, copy.deepcopy(f.doc), ts)
                     for i, f in enumerate(feed)]
        self.revision += len(feed)
        return self.revision

    def changes_since(self, rev: int, limit: int) -> list[ChangeRecord]:
        return [c for c in self.log if c.rev > rev][:limit]

    def oldest_revision(self) -> int:
        return self.log[0].rev if self.log else 0

    def compact(self, keep: int) -> int:
        dropped = max(0, len(self.log) - keep)
        del self.log[:dropped]
        return dropped

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value

    def close(self) -> None:
        return None
