"""Storage backends behind the :class:`Store` protocol, and :func:`open_store` to pick one."""

from __future__ import annotations

import re

from durable.errors import StoreError
from durable.stores.base import (
    CallbackRow,
    CallbackStatus,
    Checkpoint,
    ExecutionRow,
    Finish,
    Lease,
    ListQuery,
    NewCallback,
    NewChild,
    Store,
)
from durable.stores.memory import MemoryStore
from durable.stores.sqlite import SQLiteStore

__all__ = [
    "CallbackRow",
    "CallbackStatus",
    "Checkpoint",
    "ExecutionRow",
    "Finish",
    "Lease",
    "ListQuery",
    "MemoryStore",
    "NewCallback",
    "NewChild",
    "SQLiteStore",
    "Store",
    "open_store",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(url: str) -> Store:
    """Build (not yet open) the store that ``url`` names.

    Args:
        url: a file path (``"orders.db"``), ``"sqlite:///relative.db"``,
            ``"sqlite:////absolute/path.db"``, or ``":memory:"`` / ``"memory://"`` for an
            in-process store.

    Raises:
        StoreError: for PostgreSQL (not available in this version) and unknown schemes.

    Example::

        store = open_store("sqlite:///orders.db")   # SQLiteStore("orders.db")
    """
    if url in (":memory:", "memory://", "sqlite://", "sqlite:///:memory:"):
        return MemoryStore()
    match = _SCHEME.match(url)
    if match is None:
        return SQLiteStore(url)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise StoreError(f"a SQLite URL needs three slashes (sqlite:///path.db): {url!r}")
        return SQLiteStore(url[len("sqlite:///") :])
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise StoreError("the PostgreSQL store is not available in this version of durable")
    # Name the scheme only: the rest of a URL may hold a password.
    raise StoreError(f"unknown store URL scheme {scheme!r} (use a path, sqlite:/// or :memory:)")
