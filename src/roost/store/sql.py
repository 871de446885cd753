"""The Store on SQLAlchemy Core: SQLite by default (WAL, synchronous=FULL), PostgreSQL (psycopg 3) by URL.

Several servers may write one PostgreSQL at once: every commit takes the revision row's lock first
(`SELECT ... FOR UPDATE`), so revisions are handed out in commit order with no gap or repeat, and each commit
is one transaction. A connection lost mid-request surfaces as StoreUnavailable (503), and the next call
connects again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from roost.store import migrate
from roost.store.base import (
    JSON,
    ChangeRecord,
    Delete,
    Delta,
    Deposed,
    FeedEntry,
    Fence,
    Lease,
    Put,
    StoreError,
    StoreUnavailable,
)
from roost.store.schema import changes, leadership, meta, objects, tombstones

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
T = TypeVar("T")
CONNECT_TIMEOUT = 5  # seconds: an unreachable database is refused at start-up, not waited for
NOTIFY_CHANNEL = "roost_commits"


def parse_url(url: str) -> URL:
    """A store URL SQLAlchemy can open: sqlite:///PATH, or postgresql:// (postgres://, postgresql+psycopg://)
    on the psycopg 3 driver. Anything else is a StoreError naming the forms that work."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is not None and parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed is not None and parsed.drivername == "sqlite" and parsed.database:
        return parsed
    raise StoreError(f"unsupported store URL {_shown(url)!r}: use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DATABASE (the password from PGPASSFILE or PGPASSWORD)")


def _shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def _reason(exc: DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class SqlStore:
    def __init__(self, url: str) -> None:
        self.parsed = parse_url(url)
        self.url = self.parsed.render_as_string(hide_password=True)
        self.dialect = "sqlite" if self.parsed.drivername == "sqlite" else "postgresql"
        if self.dialect == "sqlite":
            self.engine: Engine = create_engine(self.parsed)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is off (isolation_level=None), so begin one ourselves:
            # without this every statement would commit on its own and a commit would not be atomic.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            from sqlalchemy.dialects.sqlite import insert as upsert_insert
        else:
            self.engine = create_engine(self.parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT,
                                                                   "application_name": "roost-server"})
            from sqlalchemy.dialects.postgresql import insert as upsert_insert  # type: ignore[assignment]
        self._upsert_insert = upsert_insert
        # One connection, used by one thread (the server's store thread); None after it was lost.
        self._conn: Connection | None = None
        try:
            with self._begin() as conn:
                self.schema_version = migrate.upgrade(conn)
        except StoreUnavailable as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the store at {self.url}: {exc.message}") from None
        except StoreError:
            self.engine.dispose()
            raise

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            try:
                self._conn = self.engine.connect()
            except DBAPIError as exc:
                raise StoreUnavailable(f"the store's database is unreachable ({_reason(exc)}); retry shortly") \
                    from None
        return self._conn

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One transaction; a lost connection becomes StoreUnavailable and is dropped, to be made again."""
        conn = self.conn
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                raise  # a constraint or a bug: the caller's to see
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
            raise StoreUnavailable(f"lost the store's database ({_reason(exc)}); retry shortly") from None

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._begin() as conn:
            return fn(conn)

    def load(self) -> tuple[int, dict[str, dict[str, JSON]]]:
        with self._begin() as conn:
            rev = int(conn.execute(select(meta.c.value).where(meta.c.key == "revision")).scalar() or 0)
            result: dict[str, dict[str, JSON]] = {}
            for kind, key, doc in conn.execute(select(objects.c.kind, objects.c.key, objects.c.doc)):
                result.setdefault(kind, {})[key] = json.loads(doc)
        return rev, result

    def commit(self, writes: Sequence[Put | Delete], feed: Sequence[FeedEntry], ts: float,
               fence: Fence | None = None) -> int:
        with self._begin() as conn:
            # The revision row's lock orders concurrent committers (PostgreSQL; SQLite's BEGIN IMMEDIATE
            # already admits one writer at a time).
            rev = int(conn.execute(select(meta.c.value).where(meta.c.key == "revision").with_for_update())
                      .scalar() or 0)
            if fence is not None:
                self._check_fence(conn, fence)
            seq = int(conn.execute(select(meta.c.value).where(meta.c.key == "seq")).scalar() or 0) + 1
            first = rev + 1
            last = rev + len(feed)  # a write nobody watches (secrets) takes no revision
            for w in writes:
                if isinstance(w, Put):
                    stmt = self._upsert_insert(objects).values(kind=w.kind, key=w.key, doc=_dumps(w.doc), rev=last,
                                                               seq=seq)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[objects.c.kind, objects.c.key],
                        set_={"doc": stmt.excluded.doc, "rev": stmt.excluded.rev, "seq": stmt.excluded.seq},
                    )
                    conn.execute(stmt)
                    conn.execute(delete(tombstones).where(tombstones.c.kind == w.kind, tombstones.c.key == w.key))
                else:
                    conn.execute(delete(objects).where(objects.c.kind == w.kind, objects.c.key == w.key))
                    grave = self._upsert_insert(tombstones).values(kind=w.kind, key=w.key, seq=seq)
                    conn.execute(grave.on_conflict_do_update(index_elements=[tombstones.c.kind, tombstones.c.key],
                                                             set_={"seq": grave.excluded.seq}))
            if feed:
                conn.execute(insert(changes), [
                    {"rev": first + i, "kind": f.kind, "key": f.key, "op": f.op,
                     "doc": None if f.doc is None else _dumps(f.doc), "ts": ts}
                    for i, f in enumerate(feed)
                ])
            conn.execute(update(meta).where(meta.c.key == "revision").values(value=str(last)))
            conn.execute(update(meta).where(meta.c.key == "seq").values(value=str(seq)))
            if self.dialect == "postgresql":  # delivered at commit: followers wake at once instead of polling
                conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(seq))))
        return last

    def listen(self, on_commit: Callable[[], None]) -> Callable[[], None]:
        """Call `on_commit` (from a thread of its own) after every commit anyone makes, as PostgreSQL's NOTIFY
        tells it; returns what stops listening. SQLite has one server: nothing to hear."""
        if self.dialect != "postgresql":
            return lambda: None
        stopped = threading.Event()
        conninfo = self.parsed.set(drivername="postgresql").render_as_string(hide_password=False)

        def hear() -> None:
            import psycopg

            while not stopped.is_set():
                try:
                    with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                         application_name="roost-server-listen") as conn:
                        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                        on_commit()  # whatever was committed while this listener was away
                        while not stopped.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=100):
                                on_commit()
                except Exception:  # the database went away: try again in a second (the poll covers the gap)
                    stopped.wait(1.0)

        threading.Thread(target=hear, name="roost-store-listen", daemon=True).start()
        return stopped.set

    def _check_fence(self, conn: Connection, fence: Fence) -> None:
        # FOR SHARE: a rival's acquire (FOR UPDATE) waits until this commit is over, so a term cannot end
        # between this check and the commit
        row = conn.execute(select(leadership).where(leadership.c.name == fence.name)
                           .with_for_update(read=True)).first()
        now = self._now(conn)
        if row is None or row.holder != fence.holder or int(row.term) != fence.term or row.expires_at <= now:
            raise Deposed()

    def _now(self, conn: Connection) -> float:
        """The database's clock (PostgreSQL's, shared by every replica; SQLite has one server: ours)."""
        if self.dialect == "postgresql":
            return float(conn.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar_one())
        return time.time()

    def delta(self, since_seq: int) -> Delta:
        with self._begin() as conn:
            counters = {str(k): v for k, v in conn.execute(select(meta.c.key, meta.c.value)
                                                          .where(meta.c.key.in_(("seq", "revision"))))}
            seq, revision = int(counters.get("seq", 0)), int(counters.get("revision", 0))
            horizon = int(conn.execute(select(meta.c.value).where(meta.c.key == "tombstones_after")).scalar() or 0)
            full = since_seq < horizon  # deletions it would need are forgotten: send everything instead
            since = 0 if full else since_seq
            puts = [(r.kind, r.key, json.loads(r.doc)) for r in conn.execute(
                select(objects.c.kind, objects.c.key, objects.c.doc)
                .where(objects.c.seq > since, objects.c.seq <= seq))]
            deletes = [] if full else [(r.kind, r.key) for r in conn.execute(
                select(tombstones.c.kind, tombstones.c.key)
                .where(tombstones.c.seq > since, tombstones.c.seq <= seq))]
        return Delta(seq, puts, deletes, full, revision)

    def acquire(self, name: str, holder: str, ttl: float) -> Lease:
        with self._begin() as conn:
            blank = self._upsert_insert(leadership).values(name=name, holder="", term=0, expires_at=0.0)
            conn.execute(blank.on_conflict_do_nothing(index_elements=[leadership.c.name]))
            row = conn.execute(select(leadership).where(leadership.c.name == name).with_for_update()).one()
            now = self._now(conn)
            held, term, expires = str(row.holder), int(row.term), float(row.expires_at)
            if held == holder and expires > now:
                expires = now + ttl  # renewed: the same term
            elif not held or expires <= now:
                held, term, expires = holder, term + 1, now + ttl  # taken: a new term
            else:
                return Lease(name, held, term, expires, now)  # someone else leads
            conn.execute(update(leadership).where(leadership.c.name == name)
                         .values(holder=held, term=term, expires_at=expires))
        return Lease(name, held, term, expires, now)

    def resign(self, name: str, holder: str) -> None:
        with self._begin() as conn:
            conn.execute(update(leadership).where(leadership.c.name == name, leadership.c.holder == holder)
                         .values(expires_at=0.0))

    def changes_since(self, rev: int, limit: int) -> list[ChangeRecord]:
        rows = self._read(lambda conn: conn.execute(
            select(changes).where(changes.c.rev > rev).order_by(changes.c.rev).limit(limit)).all())
        return [ChangeRecord(r.rev, r.kind, r.key, r.op, None if r.doc is None else json.loads(r.doc), r.ts)
                for r in rows]

    def oldest_revision(self) -> int:
        return int(self._read(lambda conn: conn.execute(select(func.min(changes.c.rev))).scalar()) or 0)

    def compact(self, keep: int) -> int:
        """Drop all but the newest `keep` change-log entries, and the tombstones of all but the newest `keep`
        commits; returns how many change-log entries were dropped."""
        with self._begin() as conn:
            seq = int(conn.execute(select(meta.c.value).where(meta.c.key == "seq")).scalar() or 0)
            if seq > keep:
                conn.execute(delete(tombstones).where(tombstones.c.seq <= seq - keep))
                self._put_meta(conn, "tombstones_after", str(seq - keep))
            newest = conn.execute(select(func.max(changes.c.rev))).scalar()
            if newest is None:
                return 0
            result = conn.execute(delete(changes).where(changes.c.rev <= int(newest) - keep))
            return int(result.rowcount or 0)

    def get_meta(self, key: str) -> str | None:
        value = self._read(lambda conn: conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar())
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        with self._begin() as conn:
            self._put_meta(conn, key, value)

    def _put_meta(self, conn: Connection, key: str, value: str) -> None:
        stmt = self._upsert_insert(meta).values(key=key, value=value)
        conn.execute(stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL for concurrent readers; synchronous=FULL so a commit is on disk before we acknowledge it.
    dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
