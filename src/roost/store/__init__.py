"""Durable, revisioned storage of the control plane's records."""

from roost.store.base import ChangeRecord, Delete, FeedEntry, Put, Store, open_store

__all__ = ["ChangeRecord", "Delete", "FeedEntry", "Put", "Store", "open_store"]
