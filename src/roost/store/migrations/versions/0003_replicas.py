"""What several servers on one database need: a commit counter that every commit moves (objects stamped with
it, deletions remembered as tombstones), so a replica can catch up on what others wrote; and the leadership
lease, whose term fences a deposed leader's late writes.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_tables = sa.MetaData()
_tombstones = sa.Table("tombstones", _tables,
                       sa.Column("kind", sa.String(32), primary_key=True),
                       sa.Column("key", sa.String(200), primary_key=True),
                       sa.Column("seq", sa.BigInteger, nullable=False, index=True))
_leadership = sa.Table("leadership", _tables,
                       sa.Column("name", sa.String(64), primary_key=True),
                       sa.Column("holder", sa.String(200), nullable=False),
                       sa.Column("term", sa.BigInteger, nullable=False),
                       sa.Column("expires_at", sa.Float, nullable=False))

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("objects") as batch:  # batch: SQLite cannot ALTER a column in place
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_objects_seq", "objects", ["seq"])
    _tables.create_all(bind)
    op.execute("INSERT INTO meta (key, value) VALUES ('seq', '0')")


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key = 'seq'")
    _tables.drop_all(op.get_bind())
    op.drop_index("ix_objects_seq", "objects")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("seq")
