import pytest
import sqlalchemy.exc

from roost.store import Delete, FeedEntry, Put, open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'roost.db'}")
    yield s
    s.close()


def test_commit_load_and_change_log(store, tmp_path):
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


def test_reopen_keeps_everything_and_migrations_run_once(store, tmp_path):
    store.commit([Put("app", "a", {"name": "a"})], [FeedEntry("app", "a", "put", {})], 1.0)
    store.close()
    again = open_store(f"sqlite:///{tmp_path / 'roost.db'}")
    try:
        revision, docs = again.load()
        assert revision == 1 and docs["app"]["a"] == {"name": "a"}
        assert again.schema_version == 1
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


def test_sqlite_is_wal_and_fully_synchronous(store):
    mode = store.conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    sync = store.conn.exec_driver_sql("PRAGMA synchronous").scalar()
    assert mode == "wal" and sync == 2


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
