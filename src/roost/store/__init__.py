"""Durable, revisioned storage of the control plane's records."""

from roost.store.base import (
    ChangeRecord,
    Delete,
    Delta,
    Deposed,
    FeedEntry,
    Fence,
    Lease,
    Put,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)

__all__ = ["ChangeRecord", "Delete", "Delta", "Deposed", "FeedEntry", "Fence", "Lease", "Put", "Store",
           "StoreError", "StoreUnavailable", "open_store"]
