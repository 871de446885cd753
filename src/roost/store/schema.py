"""Tables and versioned migrations. Each migration runs once, in order, recorded in schema_migrations."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", BigInteger, primary_key=True),
    Column("name", String(200), nullable=False),
)

objects = Table(
    "objects", metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("rev", BigInteger, nullable=False),
)

changes = Table(
    "changes", metadata,
    Column("rev", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(200), nullable=False),
    Column("op", String(8), nullable=False),
    Column("doc", Text, nullable=True),
    Column("ts", Float, nullable=False),
)

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def _v1_initial(conn: Connection) -> None:
    for table in (objects, changes, meta):
        table.create(conn, checkfirst=True)
    conn.execute(insert(meta).values(key="revision", value="0"))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "objects, change log, meta", _v1_initial),
]


def migrate(conn: Connection) -> int:
    """Bring the schema up to date; returns the version now in place."""
    schema_migrations.create(conn, checkfirst=True)
    current = conn.execute(select(func.max(schema_migrations.c.version))).scalar() or 0
    for version, name, step in MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(insert(schema_migrations).values(version=version, name=name))
            current = version
    return int(current)
