"""SQL of the callbacks table: create, answer, heartbeat, expire, cancel, deliver.

Plain functions of a :class:`sqlite3.Connection`, run on that connection's thread inside the
caller's transaction, like everything in ``_sqlite_schema.py`` (which calls these from its
checkpoint, stop and collect paths). The rules shared with the memory store are in
``_callbacks.py``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import msgspec

from durable.stores import _callbacks as cb
from durable.stores.base import CallbackRow, CallbackStatus, NewCallback
from durable.types import ErrorInfo, ExecutionStatus

__all__ = [
    "SELECT_CALLBACK",
    "RaiseAfterCommit",
    "answer_parent",
    "cancel_callbacks",
    "cancel_for_operations",
    "complete_callback",
    "encode_error",
    "error_decoder",
    "expire_callback",
    "heartbeat_callback",
    "insert_callbacks",
    "make_due",
    "mark_delivered",
    "release_wake_at",
    "select_callback",
    "to_callback",
]

error_decoder = msgspec.msgpack.Decoder(ErrorInfo)
"""Decodes the ``error`` column of executions and callbacks."""
_error_encoder = msgspec.msgpack.Encoder()


def encode_error(error: ErrorInfo | None) -> bytes | None:
    """The ``error`` column's bytes (``None`` stays ``None``)."""
    return None if error is None else _error_encoder.encode(error)


_CALLBACK_COLUMNS = (
    "callback_id", "execution_id", "operation_id", "status", "created_at", "timeout_at",
    "heartbeat_timeout", "heartbeat_at", "result", "error", "completed_at", "delivered",
)  # fmt: skip
SELECT_CALLBACK = f"SELECT {', '.join(_CALLBACK_COLUMNS)} FROM callbacks"
_INSERT_CALLBACK = (
    f"INSERT INTO callbacks ({', '.join(_CALLBACK_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_CALLBACK_COLUMNS))})"
)
_UPDATE_OUTCOME = (
    "UPDATE callbacks SET status = ?, result = ?, error = ?, completed_at = ? WHERE callback_id = ?"
)


@dataclass(frozen=True, slots=True)
class RaiseAfterCommit:
    """What a write returns to have its changes committed and ``error`` raised to its caller.

    A callback found expired by ``complete``/``heartbeat`` stays ``TIMED_OUT`` although the
    call itself fails; a plain exception would roll that back with the write's savepoint.
    """

    error: Exception


def to_callback(values: tuple[Any, ...]) -> CallbackRow:
    """A callbacks row as a :class:`CallbackRow`."""
    fields = dict(zip(_CALLBACK_COLUMNS, values, strict=True))
    if fields["error"] is not None:
        fields["error"] = error_decoder.decode(fields["error"])
    fields["delivered"] = bool(fields["delivered"])
    return CallbackRow(**fields)


def _callback_params(row: CallbackRow) -> tuple[Any, ...]:
    values = [getattr(row, name) for name in _CALLBACK_COLUMNS]
    values[_CALLBACK_COLUMNS.index("error")] = encode_error(row.error)
    values[_CALLBACK_COLUMNS.index("delivered")] = int(row.delivered)
    return tuple(values)


def select_callback(conn: sqlite3.Connection, callback_id: str) -> CallbackRow | None:
    """One callback, or ``None``."""
    found = conn.execute(f"{SELECT_CALLBACK} WHERE callback_id = ?", (callback_id,)).fetchone()
    return None if found is None else to_callback(found)


def insert_callbacks(conn: sqlite3.Connection, execution_id: str, news: list[NewCallback]) -> None:
    """Insert a checkpoint's new callbacks as ``PENDING`` (a duplicate id is refused)."""
    # One primary-key probe per id: no IN list, so no limit on bound variables.
    existing = [
        new.callback_id
        for new in news
        if conn.execute(
            "SELECT 1 FROM callbacks WHERE callback_id = ?", (new.callback_id,)
        ).fetchone()
    ]
    cb.check_new(news, existing)
    conn.executemany(
        _INSERT_CALLBACK, [_callback_params(cb.new_row(execution_id, new)) for new in news]
    )


def mark_delivered(conn: sqlite3.Connection, execution_id: str, ids: list[str]) -> None:
    """Mark answered callbacks of this execution delivered (their outcome is in the log)."""
    ids = list(dict.fromkeys(ids))
    found: dict[str, tuple[str, str]] = {}
    for callback_id in ids:
        stored = conn.execute(
            "SELECT execution_id, status FROM callbacks WHERE callback_id = ?", (callback_id,)
        ).fetchone()
        if stored is not None:
            found[callback_id] = (stored[0], stored[1])
    cb.check_delivered(execution_id, ids, found)
    conn.executemany(
        "UPDATE callbacks SET delivered = 1 WHERE callback_id = ?", [(i,) for i in ids]
    )


def release_wake_at(
    conn: sqlite3.Connection, execution_id: str, wake_at: float | None, now: float
) -> float | None:
    """``wake_at``, or ``now`` if earlier while an outcome waits to be delivered."""
    waiting = conn.execute(
        "SELECT 1 FROM callbacks WHERE execution_id = ? AND delivered = 0"
        " AND status != 'PENDING' LIMIT 1",
        (execution_id,),
    ).fetchone()
    if waiting is None:
        return wake_at
    return now if wake_at is None else min(wake_at, now)


def cancel_for_operations(
    conn: sqlite3.Connection, execution_id: str, ids: list[str], now: float
) -> None:
    """Cancel the pending callbacks among ``ids`` whose operations ended without them.

    Each operation's end is in the same checkpoint's events, so there is nothing left to
    deliver: they are marked delivered and do not wake the execution on release.
    """
    found: dict[str, tuple[str, str]] = {}  # id -> (execution_id, operation_id)
    for callback_id in dict.fromkeys(ids):  # one primary-key probe per id, as for delivered
        stored = conn.execute(
            "SELECT execution_id, operation_id FROM callbacks WHERE callback_id = ?",
            (callback_id,),
        ).fetchone()
        if stored is not None:
            found[callback_id] = (stored[0], stored[1])
    cb.check_cancelled(execution_id, ids, {i: owner for i, (owner, _) in found.items()})
    params = [
        (
            CallbackStatus.CANCELLED,
            encode_error(cb.operation_ended(operation_id)),
            now,
            callback_id,
            CallbackStatus.PENDING,
        )
        for callback_id, (_, operation_id) in found.items()
    ]
    conn.executemany(
        "UPDATE callbacks SET status = ?, error = ?, completed_at = ?, delivered = 1"
        " WHERE callback_id = ? AND status = ?",
        params,
    )


def cancel_callbacks(conn: sqlite3.Connection, execution_id: str, now: float) -> None:
    """Cancel the pending callbacks of an execution that has ended."""
    conn.execute(
        "UPDATE callbacks SET status = ?, completed_at = ? WHERE execution_id = ? AND status = ?",
        (CallbackStatus.CANCELLED, now, execution_id, CallbackStatus.PENDING),
    )


def answer_parent(
    conn: sqlite3.Connection,
    callback_id: str,
    status: str,
    result: bytes | None,
    error: ErrorInfo | None,
    now: float,
) -> None:
    """Answer a parent's callback with a child's end, as ``complete_callback`` would.

    Nothing happens to a callback that is gone or no longer pending; one past its deadline
    times out instead (so the outcome does not depend on whether the parent looked before
    the child ended).
    """
    row = select_callback(conn, callback_id)
    if row is None or row.status != CallbackStatus.PENDING or expire_callback(conn, row, now):
        return
    conn.execute(_UPDATE_OUTCOME, (status, result, encode_error(error), now, callback_id))
    make_due(conn, row.execution_id, now)


def make_due(conn: sqlite3.Connection, execution_id: str, now: float) -> None:
    """Let a suspended execution be claimed at ``now`` (a leased one sees it on release)."""
    conn.execute(
        "UPDATE executions SET wake_at = min(coalesce(wake_at, :now), :now)"
        " WHERE execution_id = :id AND status = :status AND lease_owner IS NULL",
        {"now": now, "id": execution_id, "status": ExecutionStatus.RUNNING.value},
    )


def expire_callback(conn: sqlite3.Connection, row: CallbackRow, now: float) -> bool:
    """Mark ``row`` (and the stored callback) ``TIMED_OUT`` if past a deadline; true if so."""
    expired = cb.expiry(row, now)
    if expired is None:
        return False
    row.status = CallbackStatus.TIMED_OUT
    row.error, row.completed_at = expired
    conn.execute(
        _UPDATE_OUTCOME,
        (row.status, row.result, encode_error(row.error), row.completed_at, row.callback_id),
    )
    make_due(conn, row.execution_id, now)
    return True


def _pending(conn: sqlite3.Connection, callback_id: str, now: float) -> CallbackRow:
    """The callback if it is still pending at ``now``.

    Raises:
        CallbackNotFoundError: no such callback.
        CallbackAlreadyCompletedError: it is not pending.
    """
    row = select_callback(conn, callback_id)
    if row is None:
        raise cb.not_found(callback_id)
    if row.status != CallbackStatus.PENDING:
        raise cb.not_pending(row)
    return row


def complete_callback(
    conn: sqlite3.Connection,
    callback_id: str,
    status: str,
    result: bytes | None,
    error: ErrorInfo | None,
    now: float,
) -> CallbackRow | RaiseAfterCommit:
    """Store an answer and make the execution due, or expire the callback and refuse."""
    row = _pending(conn, callback_id, now)
    if expire_callback(conn, row, now):
        return RaiseAfterCommit(cb.timed_out(row))
    row.status, row.result, row.error, row.completed_at = status, result, error, now
    conn.execute(_UPDATE_OUTCOME, (status, result, encode_error(error), now, callback_id))
    make_due(conn, row.execution_id, now)
    return row


def heartbeat_callback(
    conn: sqlite3.Connection, callback_id: str, now: float
) -> CallbackRow | RaiseAfterCommit:
    """Push the heartbeat deadline of a pending callback, or expire it and refuse."""
    row = _pending(conn, callback_id, now)
    if expire_callback(conn, row, now):
        return RaiseAfterCommit(cb.timed_out(row))
    if row.heartbeat_timeout is not None:
        row.heartbeat_at = now + row.heartbeat_timeout
        conn.execute(
            "UPDATE callbacks SET heartbeat_at = ? WHERE callback_id = ?",
            (row.heartbeat_at, callback_id),
        )
    return row
