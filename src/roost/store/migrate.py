"""Bring a store's schema up to date with Alembic (SQLite and PostgreSQL alike), refusing a schema newer than
this code knows: an older Roost must not write into tables a newer one has changed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from roost.store.base import StoreError

SCRIPTS = Path(__file__).parent / "migrations"


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest revision this code has."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(conn: Connection) -> str | None:
    """The revision the database is at (None: no Alembic history yet)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection) -> str:
    """Migrate to the newest revision inside the caller's transaction; returns it."""
    config = _config(conn)
    script = ScriptDirectory.from_config(config)
    known = {r.revision for r in script.walk_revisions()}
    unknown = [r for r in MigrationContext.configure(conn).get_current_heads() if r not in known]
    if unknown:
        raise StoreError(f"the database's schema is at revision {', '.join(unknown)}, newer than this Roost "
                         f"knows (up to {head()}): run a newer Roost, or point --store at another database")
    command.upgrade(config, "head")
    return head()
