"""The store on both databases (the same tests): SQLite, the embedded default, and PostgreSQL, where several
servers write at once (issue 18)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import sqlalchemy
import sqlalchemy.exc

from roost.store import Delete, Deposed, FeedEntry, Fence, Put, StoreError, StoreUnavailable, migrate, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roost.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def test_commit_load_and_change_log(store):
    rev = store.commit([Put("app", "a", {"name": "a"})], [FeedEntry("app", "a", "put", {"name": "a"})], 1.0)
    assert rev == 1
    rev = store.commit([Put("machine", "m1", {"id": "m1"}), Put("machine", "m2", {"id": "m2"})],
                       [FeedEntry("machine", "m1", "put", {"id": "m1"}),
                        FeedEntry("machine", "m2", "put", {"id": "m2"})],
                       2.0)
    assert rev == 3
    store.commit([Delete("machine", "m1")], [FeedEntry("machine", "m1", "delete", None)], 3.0)
    revision, docs = store.load()
    assert revision == 4
    assert set(docs["machine"]) == {"m2"}
    changes = store.changes_since(1, 10)
    assert [c.rev for c in changes] == [2, 3, 4]
    assert changes[-1].op == "delete" and changes[-1].doc is None


def test_reopen_keeps_everything_and_migrations_run_once(store, store_url):
    store.commit([Put("app", "a", {"name": "a"})], [FeedEntry("app", "a", "put", {})], 1.0)
    store.close()
    again = open_store(store_url)
    try:
        revision, docs = again.load()
        assert revision == 1 and docs["app"]["a"] == {"name": "a"}
        assert again.schema_version == migrate.head()
    finally:
        again.close()


def test_compaction_keeps_the_newest(store):
    for i in range(10):
        store.commit([Put("app", f"a{i}", {})], [FeedEntry("app", f"a{i}", "put", {})], float(i))
    assert store.compact(3) == 7
    assert store.oldest_revision() == 8
    assert [c.rev for c in store.changes_since(0, 100)] == [8, 9, 10]


def test_meta(store):
    assert store.get_meta("x") is None
    store.set_meta("x", "1")
    store.set_meta("x", "2")
    assert store.get_meta("x") == "2"


def test_a_commit_is_atomic(store):
    """A failure in the middle of a commit leaves nothing of it behind (one transaction, not per statement)."""
    store.commit([Put("app", "a", {"n": 1})], [FeedEntry("app", "a", "put", {})], 1.0)
    # Plant a change-log row at the next revision: the next commit's object write succeeds, then its
    # change-log insert collides; the object write must roll back with it.
    with store.conn.begin():
        store.conn.exec_driver_sql(
            "INSERT INTO changes (rev, kind, key, op, doc, ts) VALUES (2, 'x', 'y', 'put', NULL, 0)")
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.commit([Put("app", "c", {"n": 3})], [FeedEntry("app", "c", "put", {})], 1.0)
    revision, docs = store.load()
    assert revision == 1
    assert set(docs["app"]) == {"a"}


def test_several_writers_get_every_revision_once(store, store_url):
    """Two stores on one database (two servers) committing at once: revisions are handed out in commit order,
    with no repeat and no gap, and every object write lands."""
    other = open_store(store_url)
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def write(name: str, s) -> None:
        try:
            for i in range(60):
                feed = [FeedEntry("machine", f"{name}{i}", "put", {}), FeedEntry("app", name, "put", {})]
                got[name].append(s.commit([Put("machine", f"{name}{i}", {"i": i})], feed, float(i)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=("a", store)), threading.Thread(target=write, args=("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    assert not errors
    assert sorted(got["a"] + got["b"]) == list(range(2, 241, 2))  # each commit took two revisions
    revision, docs = store.load()
    assert revision == 240 and len(docs["machine"]) == 120
    assert [c.rev for c in store.changes_since(0, 1000)] == list(range(1, 241))


def test_sqlite_is_wal_and_fully_synchronous(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'roost.db'}")
    try:
        mode = store.conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        sync = store.conn.exec_driver_sql("PRAGMA synchronous").scalar()
        assert mode == "wal" and sync == 2
    finally:
        store.close()


def test_a_database_from_before_alembic_is_adopted(tmp_path):
    """The hand-written migration list's schema (schema_migrations at version 1) becomes Alembic's first
    revision, its records untouched."""
    url = f"sqlite:///{tmp_path / 'roost.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        for statement in (
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL)",
            "INSERT INTO schema_migrations VALUES (1, 'objects, change log, meta')",
            "CREATE TABLE objects (kind VARCHAR(32), key VARCHAR(200), doc TEXT NOT NULL, rev BIGINT NOT NULL, "
            "PRIMARY KEY (kind, key))",
            "CREATE TABLE changes (rev BIGINT PRIMARY KEY, kind VARCHAR(32) NOT NULL, key VARCHAR(200) NOT NULL, "
            "op VARCHAR(8) NOT NULL, doc TEXT, ts FLOAT NOT NULL)",
            "CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO meta VALUES ('revision', '7')",
            """INSERT INTO objects VALUES ('app', 'old', '{"name": "old"}', 7)""",
        ):
            conn.exec_driver_sql(statement)
    engine.dispose()
    store = open_store(url)
    try:
        revision, docs = store.load()
        assert revision == 7 and docs == {"app": {"old": {"name": "old"}}}
        assert store.commit([Put("app", "new", {})], [FeedEntry("app", "new", "put", {})], 1.0) == 8
        tables = set(sqlalchemy.inspect(store.conn).get_table_names())
        assert "schema_migrations" not in tables and "alembic_version" in tables
    finally:
        store.close()


def test_a_schema_newer_than_the_code_is_refused(store_url):
    store = open_store(store_url)
    with store.conn.begin():
        store.conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    with pytest.raises(StoreError, match=r"schema is at revision 9999, newer than this Roost knows"):
        open_store(store_url)


@pytest.mark.parametrize("url", ["mysql://root@localhost/roost", "sqlite://", "not a url", "postgresql+asyncpg://x"])
def test_an_unsupported_url_is_refused_with_the_forms_that_work(url):
    with pytest.raises(StoreError, match=r"unsupported store URL .*use sqlite:///PATH or postgresql://"):
        open_store(url)


def test_an_unreachable_database_is_refused_in_one_line_without_its_password(postgres_cluster):
    from tests.ports import free_port

    with pytest.raises(StoreError) as caught:
        open_store(f"postgresql://roost:hunter2@127.0.0.1:{free_port()}/roost")
    message = str(caught.value)
    assert message.startswith("cannot open the store at postgresql+psycopg://roost:***@127.0.0.1:")
    assert "hunter2" not in message and "\n" not in message


def test_a_lost_connection_is_a_503_and_the_next_call_reconnects(postgres_cluster, postgres_url):
    store = open_store(postgres_url)
    try:
        store.commit([Put("app", "a", {})], [FeedEntry("app", "a", "put", {})], 1.0)
        backend = store.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        store.conn.rollback()
        with psycopg.connect(host="127.0.0.1", port=postgres_cluster.port, user="roost", dbname="postgres",
                             autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(StoreUnavailable) as caught:
            store.commit([Put("app", "b", {})], [FeedEntry("app", "b", "put", {})], 2.0)
        assert caught.value.status == 503 and "retry" in caught.value.message
        assert store.commit([Put("app", "c", {})], [FeedEntry("app", "c", "put", {})], 3.0) == 2
        assert set(store.load()[1]["app"]) == {"a", "c"}  # the failed commit wrote nothing
    finally:
        store.close()


def test_a_replica_catches_up_on_what_others_wrote_and_deleted(store, store_url):
    store.commit([Put("app", "a", {"n": 1}), Put("app", "b", {"n": 1})], [FeedEntry("app", "a", "put", {})], 1.0)
    seen = store.delta(0)
    assert seen.seq == 1 and sorted(k for _, k, _ in seen.puts) == ["a", "b"] and seen.deletes == []
    other = open_store(store_url)  # another server writes
    try:
        other.commit([Put("app", "a", {"n": 2})], [], 2.0)  # a private write takes no revision, but a commit
        other.commit([Delete("app", "b")], [FeedEntry("app", "b", "delete", None)], 3.0)
        other.commit([Put("secrets", "s", {"x": 1})], [], 4.0)
        other.commit([Delete("secrets", "s")], [], 5.0)
    finally:
        other.close()
    later = store.delta(seen.seq)
    assert later.seq == 5 and not later.full
    assert later.puts == [("app", "a", {"n": 2})]
    assert sorted(later.deletes) == [("app", "b"), ("secrets", "s")]
    assert store.delta(later.seq) == type(later)(5, [], [], revision=2)


def test_a_replica_too_far_behind_gets_everything(store):
    for i in range(6):
        store.commit([Put("app", f"a{i}", {})], [FeedEntry("app", f"a{i}", "put", {})], float(i))
    store.commit([Delete("app", "a0")], [FeedEntry("app", "a0", "delete", None)], 9.0)  # commit 7
    store.compact(2)  # tombstones of commits 1..5 forgotten
    assert store.delta(6).deletes == [("app", "a0")]  # still remembered for a replica at 6
    behind = store.delta(1)
    assert behind.full and behind.deletes == []
    assert sorted(k for _, k, _ in behind.puts) == [f"a{i}" for i in range(1, 6)]


def test_one_leader_at_a_time_and_a_deposed_leaders_commit_is_refused(store, store_url):
    first = store.acquire("control-plane", "replica-1", 0.5)
    assert first.holder == "replica-1" and first.term == 1 and first.live
    other = open_store(store_url)
    try:
        refused = other.acquire("control-plane", "replica-2", 0.5)
        assert refused.holder == "replica-1" and refused.term == 1  # it leads; nobody takes over
        assert store.acquire("control-plane", "replica-1", 0.5).term == 1  # renewing keeps the term
        store.commit([Put("app", "by-1", {})], [], 1.0, fence=Fence("replica-1", 1))
        time.sleep(0.6)  # replica-1 stops renewing: the lease lapses
        taken = other.acquire("control-plane", "replica-2", 5.0)
        assert taken.holder == "replica-2" and taken.term == 2
        with pytest.raises(Deposed):  # replica-1's late decision, made in term 1
            store.commit([Put("app", "late", {})], [], 2.0, fence=Fence("replica-1", 1))
        other.commit([Put("app", "by-2", {})], [], 3.0, fence=Fence("replica-2", 2))
        assert set(store.load()[1]["app"]) == {"by-1", "by-2"}
        other.resign("control-plane", "replica-2")
        assert store.acquire("control-plane", "replica-1", 5.0).term == 3  # at once, not after 5 s
    finally:
        other.close()
