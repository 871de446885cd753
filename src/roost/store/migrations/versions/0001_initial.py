"""Objects, the change log and meta (the store's first schema, once a hand-written migration list).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The tables as this revision made them (schema.py holds today's shape; a revision never changes).
_first = sa.MetaData()
_objects = sa.Table("objects", _first,
                    sa.Column("kind", sa.String(32), primary_key=True),
                    sa.Column("key", sa.String(200), primary_key=True),
                    sa.Column("doc", sa.Text, nullable=False),
                    sa.Column("rev", sa.BigInteger, nullable=False))
_changes = sa.Table("changes", _first,
                    sa.Column("rev", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("kind", sa.String(32), nullable=False),
                    sa.Column("key", sa.String(200), nullable=False),
                    sa.Column("op", sa.String(8), nullable=False),
                    sa.Column("doc", sa.Text, nullable=True),
                    sa.Column("ts", sa.Float, nullable=False))
_meta = sa.Table("meta", _first,
                 sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.Text, nullable=False))


def upgrade() -> None:
    bind = op.get_bind()
    # checkfirst: a database made before Alembic (its own schema_migrations at version 1) is adopted as is
    _first.create_all(bind, checkfirst=True)
    if bind.execute(sa.select(_meta.c.value).where(_meta.c.key == "revision")).first() is None:
        bind.execute(sa.insert(_meta).values(key="revision", value="0"))


def downgrade() -> None:
    _first.drop_all(op.get_bind())
