"""A Store in memory, for tests of the control plane's shells on a virtual clock: the same contract as the
SQL store (atomic commits, one ordered change log, compaction, commit counter, leases), without a disk or a
thread. Its clock is a callable, so a lease lapses on the virtual clock."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

from roost.store.base import JSON, ChangeRecord, Delete, Delta, Deposed, FeedEntry, Fence, Lease, Put


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.revision = 0
        self.seq = 0
        self.objects: dict[str, dict[str, JSON]] = {}
        self.written: dict[tuple[str, str], int] = {}  # (kind, key) -> the commit that last wrote or deleted it
        self.log: list[ChangeRecord] = []
        self.meta: dict[str, str] = {}
        self.leases: dict[str, Lease] = {}
        self.clock = clock

    def load(self) -> tuple[int, dict[str, dict[str, JSON]]]:
        return self.revision, copy.deepcopy(self.objects)

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float,
               fence: Fence | None = None) -> int:
        if fence is not None:
            lease = self.leases.get(fence.name)
            if lease is None or lease.term != fence.term or not lease.held_by(fence.holder) \
                    or lease.expires_at <= self.clock():
                raise Deposed()
        self.seq += 1
        for w in writes:
            if isinstance(w, Put):
                self.objects.setdefault(w.kind, {})[w.key] = copy.deepcopy(w.doc)
            else:
                self.objects.get(w.kind, {}).pop(w.key, None)
            self.written[(w.kind, w.key)] = self.seq
        first = self.revision + 1
        self.log += [ChangeRecord(first + i, f.kind, f.key, f.op, copy.deepcopy(f.doc), ts)
                     for i, f in enumerate(feed)]
        self.revision += len(feed)
        return self.revision

    def delta(self, since_seq: int) -> Delta:
        changed = [k for k, seq in self.written.items() if seq > since_seq]
        puts = [(kind, key, copy.deepcopy(self.objects[kind][key])) for kind, key in changed
                if key in self.objects.get(kind, {})]
        deletes = [(kind, key) for kind, key in changed if key not in self.objects.get(kind, {})]
        return Delta(self.seq, puts, deletes, revision=self.revision)

    def acquire(self, name: str, holder: str, ttl: float) -> Lease:
        now = self.clock()
        lease = self.leases.get(name) or Lease(name, "", 0, 0.0, now)
        if lease.holder == holder and lease.expires_at > now:
            lease = Lease(name, holder, lease.term, now + ttl, now)
        elif not lease.holder or lease.expires_at <= now:
            lease = Lease(name, holder, lease.term + 1, now + ttl, now)
        else:
            return Lease(name, lease.holder, lease.term, lease.expires_at, now)
        self.leases[name] = lease
        return lease

    def listen(self, on_commit: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # the tests call follow() themselves

    def resign(self, name: str, holder: str) -> None:
        lease = self.leases.get(name)
        if lease is not None and lease.holder == holder:
            self.leases[name] = Lease(name, holder, lease.term, 0.0, self.clock())

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
