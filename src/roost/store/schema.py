"""The control plane's tables (SQLAlchemy Core). Their history is the Alembic revisions under migrations/."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, Text

metadata = MetaData()

objects = Table(
    "objects", metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("rev", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False, server_default="0", index=True),  # the commit that wrote it
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

# A deleted object, remembered by the commit that deleted it, so that a replica catching up learns of it.
tombstones = Table(
    "tombstones", metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("seq", BigInteger, nullable=False, index=True),
)

# Who leads the control plane, until when (seconds since the epoch, by the database's clock), in which term.
leadership = Table(
    "leadership", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("term", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),
)
