"""The Store on SQLAlchemy Core: SQLite by default (WAL, synchronous=FULL), PostgreSQL by URL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine

from roost.store.base import JSON, ChangeRecord, Delete, FeedEntry, Put
from roost.store.schema import changes, meta, migrate, objects

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is off (isolation_level=None), so begin one ourselves:
            # without this every statement would commit on its own and a commit would not be atomic.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            from sqlalchemy.dialects.sqlite import insert as upsert_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as upsert_insert  # type: ignore[assignment]
        self._upsert_insert = upsert_insert
        # One connection, used by one thread (the server's store thread): SQLite allows one writer anyway.
        self.conn = self.engine.connect()
        with self.conn.begin():
            self.schema_version = migrate(self.conn)

    def load(self) -> tuple[int, dict[str, dict[str, JSON]]]:
        with self.conn.begin():
            rev = int(self.conn.execute(select(meta.c.value).where(meta.c.key == "revision")).scalar() or 0)
            result: dict[str, dict[str, JSON]] = {}
            for kind, key, doc in self.conn.execute(select(objects.c.kind, objects.c.key, objects.c.doc)):
                result.setdefault(kind, {})[key] = json.loads(doc)
        return rev, result

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float) -> int:
        with self.conn.begin():
            rev = int(self.conn.execute(select(meta.c.value).where(meta.c.key == "revision")).scalar() or 0)
            first = rev + 1
            last = rev + len(feed)  # a write nobody watches (secrets) takes no revision
            for w in writes:
                if isinstance(w, Put):
                    stmt = self._upsert_insert(objects).values(kind=w.kind, key=w.key, doc=_dumps(w.doc), rev=last)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[objects.c.kind, objects.c.key],
                        set_={"doc": stmt.excluded.doc, "rev": stmt.excluded.rev},
                    )
                    self.conn.execute(stmt)
                else:
                    self.conn.execute(delete(objects).where(objects.c.kind == w.kind, objects.c.key == w.key))
            if feed:
                self.conn.execute(insert(changes), [
                    {"rev": first + i, "kind": f.kind, "key": f.key, "op": f.op,
                     "doc": None if f.doc is None else _dumps(f.doc), "ts": ts}
                    for i, f in enumerate(feed)
                ])
            self.conn.execute(update(meta).where(meta.c.key == "revision").values(value=str(last)))
        return last

    def changes_since(self, rev: int, limit: int) -> list[ChangeRecord]:
        with self.conn.begin():
            rows = self.conn.execute(
                select(changes).where(changes.c.rev > rev).order_by(changes.c.rev).limit(limit)
            ).all()
        return [ChangeRecord(r.rev, r.kind, r.key, r.op, None if r.doc is None else json.loads(r.doc), r.ts)
                for r in rows]

    def oldest_revision(self) -> int:
        with self.conn.begin():
            return int(self.conn.execute(select(func.min(changes.c.rev))).scalar() or 0)

    def compact(self, keep: int) -> int:
        with self.conn.begin():
            newest = self.conn.execute(select(func.max(changes.c.rev))).scalar()
            if newest is None:
                return 0
            result = self.conn.execute(delete(changes).where(changes.c.rev <= int(newest) - keep))
            return int(result.rowcount or 0)

    def get_meta(self, key: str) -> str | None:
        with self.conn.begin():
            value = self.conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        with self.conn.begin():
            stmt = self._upsert_insert(meta).values(key=key, value=value)
            self.conn.execute(stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL for concurrent readers; synchronous=FULL so a commit is on disk before we acknowledge it.
    dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
