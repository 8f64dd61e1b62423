"""What the SQLite store's writer runs on its connection: one batch in one transaction.

Synchronous code only (no asyncio, no aiosqlite), shared by the writer thread of
:class:`~durable.stores.sqlite.SQLiteStore` and its optional writer process
(:mod:`durable.stores._sqlite_writer_process`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from durable.errors import LeaseLostError, StoreError
from durable.stores import _sqlite_schema as sql
from durable.stores.base import Checkpoint

__all__ = ["SYNCHRONOUS", "Job", "Outcome", "apply_batch", "guarded", "is_busy", "store_error"]

T = TypeVar("T")

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 13, 26
# Errors caused by one write's own data: undo that write only, keep the batch.
_JOB_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
               sqlite3.ProgrammingError)  # fmt: skip


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def store_error(exc: sqlite3.Error, path: str) -> StoreError:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if is_busy(exc):
        return StoreError(f"database is locked: {path} (another connection kept it busy)")
    if code == _SQLITE_FULL:
        return StoreError(f"database or disk is full: {path}")
    if code == _SQLITE_NOTADB:
        return StoreError(f"{path} is not a durable database ({exc})")
    return StoreError(f"SQLite error on {path}: {exc}")


def guarded(
    conn: sqlite3.Connection, path: str, timeout: float, fn: Callable[..., T], *args: Any
) -> T:
    """Call ``fn(conn, *args)``, retrying while the database is busy; only StoreError escapes.

    SQLite's busy handler already waits up to ``busy_timeout``; the retries here cover the
    busy results it does not wait on (such as a WAL snapshot that went stale).
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return fn(conn, *args)
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise store_error(exc, path) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


Outcome = tuple[bool, Any]  # (succeeded, result or exception)
Job = Callable[[sqlite3.Connection], Any] | Checkpoint
"""What one write does in a batch: a function of the connection, or a plain checkpoint
(``commit_plain``, with no savepoint: it writes nothing unless its fence holds)."""


def apply_batch(conn: sqlite3.Connection, path: str, writes: list[Job]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with sql.transaction(conn):
        for write in writes:
            if isinstance(write, Checkpoint):  # a plain one (see ``SQLiteStore.commit``)
                # writes nothing unless its fence holds: no savepoint needed; a SQLite error
                # here is the transaction's (the whole batch fails)
                try:
                    sql.commit_plain(conn, write)
                    outcomes.append((True, None))
                except LeaseLostError as exc:
                    outcomes.append((False, exc))
                continue
            conn.execute("SAVEPOINT write")
            try:
                value = write(conn)
                if isinstance(value, sql.RaiseAfterCommit):
                    outcomes.append((False, value.error))
                else:
                    outcomes.append((True, value))
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, _JOB_ERRORS):
                    raise  # the transaction itself failed: the whole batch fails
                conn.execute("ROLLBACK TO write")
                if isinstance(exc, sqlite3.Error):
                    exc = store_error(exc, path)
                outcomes.append((False, exc))
            conn.execute("RELEASE write")
    return outcomes
