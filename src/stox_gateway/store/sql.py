"""The store's entry point: `SqlStore(url, ...)` is the adapter for the URL's database.

`core.py` holds the database-neutral store, `hooks.py` names the hooks; `sqlite.py` and
`postgres.py` fill them in; `adapter_for` is the one place that picks.
"""

from __future__ import annotations

from stox_gateway.store.core import SqlStore, adapter_for, adapter_for_backend
from stox_gateway.store.postgres import PostgresStore
from stox_gateway.store.sqlite import SqliteStore

__all__ = [
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "adapter_for",
    "adapter_for_backend",
]
