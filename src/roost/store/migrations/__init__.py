"""Alembic's migration environment and revisions for the store (run by roost.store.migrate, not by hand)."""
