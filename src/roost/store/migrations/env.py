"""Alembic's environment: it migrates the connection the store hands it (inside the store's transaction)."""

from __future__ import annotations

from alembic import context

context.configure(connection=context.config.attributes["connection"], transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
