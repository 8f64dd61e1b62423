"""Storage backends behind the :class:`Store` protocol, and :func:`open_store` to pick one."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

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

    A ``sqlite:///`` URL may end with options of :class:`SQLiteStore`:
    ``?writer=thread`` (or ``process``, or ``auto``, the default), ``?synchronous=NORMAL``,
    ``?busy_timeout=10`` (joined with ``&``).

    Raises:
        StoreError: for PostgreSQL (not available in this version), unknown schemes and
            unknown or invalid URL options.

    Example::

        store = open_store("sqlite:///orders.db")   # SQLiteStore("orders.db")
        store = open_store("sqlite:///orders.db?writer=process")
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
        path, _, query = url[len("sqlite:///") :].partition("?")
        options = _sqlite_options(url, query)
        if path == ":memory:":
            if options:
                raise StoreError(f"an in-memory store takes no SQLite options: {url!r}")
            return MemoryStore()
        return SQLiteStore(path, **options)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise StoreError("the PostgreSQL store is not available in this version of durable")
    # Name the scheme only: the rest of a URL may hold a password.
    raise StoreError(f"unknown store URL scheme {scheme!r} (use a path, sqlite:/// or :memory:)")


_SQLITE_OPTIONS = ("writer", "synchronous", "busy_timeout")


def _sqlite_options(url: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in _SQLITE_OPTIONS:
            known = ", ".join(_SQLITE_OPTIONS)
            raise StoreError(f"unknown SQLite URL option {name!r} in {url!r} (known: {known})")
        options[name] = value
    try:
        if "busy_timeout" in options:
            options["busy_timeout"] = float(options["busy_timeout"])
        SQLiteStore(":memory:", **options)  # checks the values before anything opens
    except ValueError as exc:
        raise StoreError(f"invalid SQLite URL option in {url!r}: {exc}") from None
    return options
