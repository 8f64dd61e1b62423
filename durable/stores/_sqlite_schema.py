"""Every statement run against the SQLite store, one synchronous function per operation.

``sqlite.py`` owns the connections, the writer task and error handling; this module holds
what is plain SQL, each function called with a :class:`sqlite3.Connection` on that
connection's own thread. The schema and its migrations are in ``_sqlite_migrations.py``,
the statements on the callbacks table in ``_sqlite_callback_sql.py`` (both re-exported here
where ``sqlite.py`` needs them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from durable.errors import ExecutionNotFoundError, LeaseLostError
from durable.stores import _callbacks as cb
from durable.stores import _sqlite_callback_sql as cbsql
from durable.stores._filters import workflow_filter
from durable.stores._sqlite_callback_sql import (
    RaiseAfterCommit,
    complete_callback,
    heartbeat_callback,
    select_callback,
)
from durable.stores._sqlite_migrations import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    check_header,
    check_seed,
    migrate,
)
from durable.stores.base import (
    CallbackRow,
    CallbackStatus,
    Checkpoint,
    ExecutionRow,
    Lease,
    ListQuery,
    NewChild,
)
from durable.types import ErrorInfo, ExecutionStatus

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "RaiseAfterCommit",
    "check_header",
    "check_seed",
    "claim",
    "collect_callbacks",
    "commit",
    "commit_plain",
    "is_plain",
    "complete_callback",
    "create",
    "expire",
    "heartbeat_callback",
    "lease_owners",
    "list_rows",
    "load",
    "make_read_only",
    "migrate",
    "next_wake_at",
    "purge",
    "release",
    "renew",
    "select_callback",
    "select_row",
    "select_rows",
    "stop",
    "transaction",
]

_COLUMNS = (
    "execution_id", "workflow", "status", "input", "result", "error", "created_at",
    "updated_at", "ended_at", "parent_id", "seed", "wake_at", "lease_owner", "lease_expires",
    "lease_epoch", "next_seq", "deadline", "retention", "parent_callback_id",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM executions"
_INSERT = (
    f"INSERT INTO executions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (execution_id) DO NOTHING"
)
_INSERT_EVENTS = "INSERT INTO events (execution_id, seq, data) VALUES (?, ?, ?)"
_FINISH = (
    "UPDATE executions SET next_seq = ?, updated_at = ?, status = ?, result = ?, error = ?,"
    " ended_at = ?, wake_at = NULL, lease_owner = NULL, lease_expires = NULL"
    " WHERE execution_id = ?"
)
_RELEASE = (
    "UPDATE executions SET next_seq = ?, updated_at = ?, wake_at = ?, lease_owner = NULL,"
    " lease_expires = NULL WHERE execution_id = ?"
)
_EXTEND = (
    "UPDATE executions SET next_seq = ?, updated_at = ?, lease_expires = ?, wake_at = ?"
    " WHERE execution_id = ?"
)
_APPEND = "UPDATE executions SET next_seq = ?, updated_at = ? WHERE execution_id = ?"


def _to_row(values: tuple[Any, ...]) -> ExecutionRow:
    fields = dict(zip(_COLUMNS, values, strict=True))
    if fields["error"] is not None:
        fields["error"] = cbsql.error_decoder.decode(fields["error"])
    return ExecutionRow(**fields)


def _to_params(row: ExecutionRow) -> tuple[Any, ...]:
    values = [getattr(row, name) for name in _COLUMNS]
    if row.error is not None:
        values[_COLUMNS.index("error")] = cbsql.encode_error(row.error)
    return tuple(values)


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """``BEGIN`` (immediate by default) ... ``COMMIT``; ``ROLLBACK`` on any error."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def make_read_only(conn: sqlite3.Connection) -> None:
    """Make the reader connection refuse writes."""
    conn.execute("PRAGMA query_only = ON")


def select_row(conn: sqlite3.Connection, execution_id: str) -> ExecutionRow | None:
    """One execution row, or ``None``."""
    found = conn.execute(f"{_SELECT} WHERE execution_id = ?", (execution_id,)).fetchone()
    return None if found is None else _to_row(found)


def select_rows(
    conn: sqlite3.Connection, execution_ids: list[str]
) -> list[ExecutionRow | sqlite3.Error | None]:
    """:func:`select_row` for each id, in order (one trip to the reader's thread for all);
    the error in place of a row that could not be read. A busy database raises (the caller
    retries the whole read)."""
    outcomes: list[ExecutionRow | sqlite3.Error | None] = []
    for execution_id in execution_ids:
        try:
            outcomes.append(select_row(conn, execution_id))
        except sqlite3.OperationalError:
            raise
        except sqlite3.Error as exc:
            outcomes.append(exc)
    return outcomes


def load(conn: sqlite3.Connection, execution_id: str) -> tuple[ExecutionRow, list[bytes]] | None:
    """The row and its events in order, in one read transaction."""
    with transaction(conn, "BEGIN"):
        row = select_row(conn, execution_id)
        if row is None:
            return None
        cursor = conn.execute(
            "SELECT data FROM events WHERE execution_id = ? ORDER BY seq", (execution_id,)
        )
        return row, [data for (data,) in cursor]


def list_rows(conn: sqlite3.Connection, query: ListQuery) -> list[ExecutionRow]:
    """Rows matching ``query``, newest ``created_at`` first (newest insert on ties)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", query.status),
        ("workflow", query.workflow),
        ("parent_id", query.parent_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.statuses:
        clauses.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        params.extend(query.statuses)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    # rowid breaks created_at ties so that the newest insert comes first, as in memory.
    sql = f"{_SELECT}{where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    params += [max(query.limit, 0), max(query.offset, 0)]
    return [_to_row(found) for found in conn.execute(sql, params)]


_NEXT_WAKE_AT = (
    "SELECT wake_at FROM executions WHERE wake_at IS NOT NULL"
    " AND (lease_owner IS NULL OR lease_owner != ?) ORDER BY wake_at LIMIT 1"
)
_NEXT_WAKE_AT_OF = (
    "SELECT wake_at FROM executions WHERE workflow = ? AND wake_at IS NOT NULL"
    " AND (lease_owner IS NULL OR lease_owner != ?) ORDER BY wake_at LIMIT 1"
)


def next_wake_at(
    conn: sqlite3.Connection, exclude_owner: str | None, workflows: Sequence[str] | None
) -> float | None:
    """The smallest ``wake_at`` of rows not leased by ``exclude_owner``, or ``None``.

    With ``workflows``, the earliest of one query per workflow, each a seek on
    ``executions_workflow_wake_at``; ``None`` for an empty list.
    """
    names = workflow_filter(workflows)
    owner = exclude_owner or ""
    if names is None:
        found = conn.execute(_NEXT_WAKE_AT, (owner,)).fetchone()
        return None if found is None else float(found[0])
    times = [
        float(found[0])
        for name in names
        if (found := conn.execute(_NEXT_WAKE_AT_OF, (name, owner)).fetchone()) is not None
    ]
    return min(times, default=None)


def lease_owners(conn: sqlite3.Connection) -> list[str]:
    """Distinct lease owners, sorted."""
    cursor = conn.execute(
        "SELECT DISTINCT lease_owner FROM executions"
        " WHERE lease_owner IS NOT NULL ORDER BY lease_owner"
    )
    return [owner for (owner,) in cursor]


def create(
    conn: sqlite3.Connection, row: ExecutionRow, events: list[bytes]
) -> tuple[ExecutionRow, bool]:
    """Insert a row and its first events; the stored row and ``False`` if it exists."""
    stored = replace(row, next_seq=len(events))
    if conn.execute(_INSERT, _to_params(stored)).rowcount == 0:
        existing = select_row(conn, row.execution_id)
        assert existing is not None  # the conflicting row is in our own transaction
        return existing, False
    conn.executemany(
        _INSERT_EVENTS, [(row.execution_id, seq, data) for seq, data in enumerate(events, 1)]
    )
    return stored, True


def _insert_children(conn: sqlite3.Connection, execution_id: str, children: list[NewChild]) -> None:
    owners: dict[str, str] = {}
    named = {c.row.parent_callback_id for c in children}
    for callback_id in (i for i in named if i is not None):
        found = conn.execute(
            "SELECT execution_id FROM callbacks WHERE callback_id = ?", (callback_id,)
        ).fetchone()
        if found is not None:
            owners[callback_id] = found[0]
    cb.check_children(execution_id, children, owners)
    for child in children:
        create(conn, child.row, child.events)


def _fence(conn: sqlite3.Connection, lease: Lease, first_seq: int | None) -> None:
    found = conn.execute(
        "SELECT lease_owner, lease_epoch, next_seq FROM executions WHERE execution_id = ?",
        (lease.execution_id,),
    ).fetchone()
    if found is None:
        raise LeaseLostError(f"execution {lease.execution_id!r} does not exist")
    owner, epoch, next_seq = found
    if (owner, epoch) != (lease.owner, lease.epoch):
        raise LeaseLostError(
            f"lease on execution {lease.execution_id!r} lost: {lease.owner!r} epoch "
            f"{lease.epoch} no longer holds it (owner {owner!r}, epoch {epoch})"
        )
    if first_seq is not None and first_seq != next_seq + 1:
        raise LeaseLostError(
            f"execution {lease.execution_id!r} has {next_seq} events, so the next checkpoint "
            f"must start at {next_seq + 1}, not {first_seq}"
        )


_FENCED = " WHERE execution_id = ? AND lease_owner = ? AND lease_epoch = ? AND next_seq = ?"
_FENCED_APPEND = "UPDATE executions SET next_seq = ?, updated_at = ?" + _FENCED
_FENCED_RELEASE = (
    "UPDATE executions SET next_seq = ?, updated_at = ?, wake_at = ?, lease_owner = NULL,"
    " lease_expires = NULL" + _FENCED
)
_FENCED_EXTEND = (
    "UPDATE executions SET next_seq = ?, updated_at = ?, lease_expires = ?, wake_at = ?" + _FENCED
)


def is_plain(cp: Checkpoint) -> bool:
    """Events plus a lease update only: the common case, written by :func:`commit_plain`."""
    return not (cp.finish or cp.callbacks or cp.children or cp.delivered or cp.cancelled)


def commit_plain(conn: sqlite3.Connection, cp: Checkpoint) -> None:
    """A plain checkpoint in two statements, its fence folded into the row update.

    The update matches only while the lease and the expected sequence hold, and it runs
    before anything else is written, so a refused checkpoint writes nothing and needs no
    savepoint: the hot path of every step.
    """
    execution_id = cp.lease.execution_id
    lease = cp.lease
    fence = (execution_id, lease.owner, lease.epoch, cp.first_seq - 1)
    head = (cp.first_seq - 1 + len(cp.events), cp.now)
    if cp.release:
        wake_at = cbsql.release_wake_at(conn, execution_id, cp.wake_at, cp.now)
        cursor = conn.execute(_FENCED_RELEASE, (*head, wake_at, *fence))
    elif cp.lease_expires is not None:
        cursor = conn.execute(_FENCED_EXTEND, (*head, cp.lease_expires, cp.lease_expires, *fence))
    else:
        cursor = conn.execute(_FENCED_APPEND, (*head, *fence))
    if cursor.rowcount != 1:
        _fence(conn, lease, cp.first_seq)  # raises LeaseLostError with the reason
        raise LeaseLostError(f"lease on execution {execution_id!r} lost")
    if cp.events:
        conn.executemany(
            _INSERT_EVENTS,
            [(execution_id, seq, data) for seq, data in enumerate(cp.events, cp.first_seq)],
        )


def commit(conn: sqlite3.Connection, cp: Checkpoint) -> None:
    """Apply one checkpoint after its fence check (``LeaseLostError`` writes nothing).

    Any refusal raises inside the caller's savepoint, which undoes what was written so far.
    """
    execution_id = cp.lease.execution_id
    _fence(conn, cp.lease, cp.first_seq)
    if cp.callbacks:
        cbsql.insert_callbacks(conn, execution_id, cp.callbacks)
    if cp.children:
        _insert_children(conn, execution_id, cp.children)
    if cp.delivered:
        cbsql.mark_delivered(conn, execution_id, cp.delivered)
    if cp.cancelled:
        cbsql.cancel_for_operations(conn, execution_id, cp.cancelled, cp.now)
    conn.executemany(
        _INSERT_EVENTS,
        [(execution_id, seq, data) for seq, data in enumerate(cp.events, cp.first_seq)],
    )
    head = (cp.first_seq - 1 + len(cp.events), cp.now)
    if cp.finish is not None:
        finish = cp.finish
        error = cbsql.encode_error(finish.error)
        conn.execute(_FINISH, (*head, finish.status, finish.result, error, cp.now, execution_id))
        cbsql.cancel_callbacks(conn, execution_id, cp.now)
        (parent_callback_id,) = conn.execute(
            "SELECT parent_callback_id FROM executions WHERE execution_id = ?", (execution_id,)
        ).fetchone()
        if parent_callback_id is not None:
            answer = cb.child_answer(execution_id, finish)
            cbsql.answer_parent(conn, parent_callback_id, *answer, cp.now)
    elif cp.release:
        wake_at = cbsql.release_wake_at(conn, execution_id, cp.wake_at, cp.now)
        conn.execute(_RELEASE, (*head, wake_at, execution_id))
    elif cp.lease_expires is not None:
        conn.execute(_EXTEND, (*head, cp.lease_expires, cp.lease_expires, execution_id))
    else:
        conn.execute(_APPEND, (*head, execution_id))


_DUE = (
    "SELECT wake_at, rowid, execution_id, lease_owner, lease_epoch FROM executions"
    " WHERE wake_at <= ? AND (lease_owner IS NULL OR (lease_expires <= ? AND lease_owner != ?))"
    " ORDER BY wake_at LIMIT ?"
)
_DUE_OF = (
    "SELECT wake_at, rowid, execution_id, lease_owner, lease_epoch FROM executions"
    " WHERE workflow = ? AND wake_at <= ?"
    " AND (lease_owner IS NULL OR (lease_expires <= ? AND lease_owner != ?))"
    " ORDER BY wake_at LIMIT ?"
)


def claim(
    conn: sqlite3.Connection,
    owner: str,
    now: float,
    lease_expires: float,
    limit: int,
    workflows: Sequence[str] | None,
) -> list[Lease]:
    """Lease due rows with free leases, earliest ``wake_at`` first (insert order on ties).

    With ``workflows``, the first ``limit`` due rows of each workflow (one seek each on
    ``executions_workflow_wake_at``, no IN list, so no limit on bound variables) are merged
    and the earliest ``limit`` of them claimed; none for an empty list.
    """
    names = workflow_filter(workflows)
    limit = max(limit, 0)
    if names is None:
        found = conn.execute(_DUE, (now, now, owner, limit)).fetchall()
    else:
        found = [
            row for name in names for row in conn.execute(_DUE_OF, (name, now, now, owner, limit))
        ]
        found = sorted(found, key=lambda row: (row[0], row[1]))[:limit]
    due = [(eid, previous, epoch) for _, _, eid, previous, epoch in found]
    conn.executemany(
        "UPDATE executions SET lease_owner = ?, lease_epoch = ?, lease_expires = ?, wake_at = ?"
        " WHERE execution_id = ?",
        [(owner, epoch + 1, lease_expires, lease_expires, eid) for eid, _, epoch in due],
    )
    return [
        Lease(eid, owner, epoch + 1, taken_over=previous is not None)
        for eid, previous, epoch in due
    ]


def renew(conn: sqlite3.Connection, leases: list[Lease], lease_expires: float) -> list[str]:
    """Extend held leases; returns the ids no longer held."""
    lost: list[str] = []
    for lease in leases:
        cursor = conn.execute(
            "UPDATE executions SET lease_expires = ?, wake_at = ?"
            " WHERE execution_id = ? AND lease_owner = ? AND lease_epoch = ?",
            (lease_expires, lease_expires, lease.execution_id, lease.owner, lease.epoch),
        )
        if cursor.rowcount == 0:
            lost.append(lease.execution_id)
    return lost


def release(conn: sqlite3.Connection, lease: Lease, wake_at: float | None, now: float) -> None:
    """Drop a lease if still held, setting ``wake_at`` (``now`` if an outcome waits)."""
    conn.execute(
        "UPDATE executions SET lease_owner = NULL, lease_expires = NULL, wake_at = ?,"
        " updated_at = ? WHERE execution_id = ? AND lease_owner = ? AND lease_epoch = ?",
        (
            cbsql.release_wake_at(conn, lease.execution_id, wake_at, now),
            now,
            lease.execution_id,
            lease.owner,
            lease.epoch,
        ),
    )


def expire(conn: sqlite3.Connection, owners: list[str], now: float) -> int:
    """Make the leases of dead owners claimable at ``now``; returns how many."""
    expired = 0
    for owner in set(owners):
        cursor = conn.execute(
            "UPDATE executions SET lease_expires = min(coalesce(lease_expires, :now), :now),"
            " wake_at = min(coalesce(wake_at, :now), :now) WHERE lease_owner = :owner",
            {"now": now, "owner": owner},
        )
        expired += cursor.rowcount
    return expired


def collect_callbacks(conn: sqlite3.Connection, lease: Lease, now: float) -> list[CallbackRow]:
    """Expire due pending callbacks, then the undelivered ones oldest first (fenced)."""
    _fence(conn, lease, None)
    rows = [
        cbsql.to_callback(found)
        for found in conn.execute(
            f"{cbsql.SELECT_CALLBACK} WHERE execution_id = ? AND delivered = 0"
            " ORDER BY created_at, callback_id",
            (lease.execution_id,),
        )
    ]
    for row in rows:
        cbsql.expire_callback(conn, row, now)
    return rows


# --- stop -----------------------------------------------------------------------------------

_STOP = (
    "UPDATE executions SET next_seq = next_seq + 1, status = ?, error = ?, ended_at = ?,"
    " updated_at = ?, wake_at = NULL, lease_owner = NULL, lease_expires = NULL,"
    " lease_epoch = lease_epoch + 1 WHERE execution_id = ?"
)
_APPEND_NEXT_EVENT = (
    "INSERT INTO events (execution_id, seq, data)"
    " SELECT execution_id, next_seq + 1, ? FROM executions WHERE execution_id = ?"
)


def _running_tree(
    conn: sqlite3.Connection, execution_id: str
) -> list[tuple[str, str | None, str | None]]:
    """``(id, parent_id, parent_callback_id)`` of the execution and its running descendants.

    Breadth first (parents first), children of one parent oldest first (``created_at``,
    then id). The walk goes through descendants that have ended, so a running grandchild
    is found under an ended child; it is a loop rather than a recursive CTE so that
    corrupt ``parent_id`` cycles cannot make it run forever.
    """
    found = conn.execute(
        "SELECT execution_id, status, parent_id, parent_callback_id FROM executions"
        " WHERE execution_id = ?",
        (execution_id,),
    ).fetchone()
    order: list[tuple[str, str, str | None, str | None]] = [found]
    seen = {execution_id}
    for parent, *_ in order:  # grows while it is walked
        for child in conn.execute(
            "SELECT execution_id, status, parent_id, parent_callback_id FROM executions"
            " WHERE parent_id = ? ORDER BY created_at, execution_id",
            (parent,),
        ).fetchall():
            if child[0] not in seen:
                seen.add(child[0])
                order.append(child)
    running = ExecutionStatus.RUNNING.value
    return [(eid, pid, pcb) for eid, status, pid, pcb in order if status == running]


def stop(
    conn: sqlite3.Connection, execution_id: str, now: float, error: ErrorInfo, event: bytes
) -> list[str]:
    """Stop a running execution and its running descendants; returns their ids.

    Raises:
        ExecutionNotFoundError: no execution has this id.
    """
    found = conn.execute(
        "SELECT status FROM executions WHERE execution_id = ?", (execution_id,)
    ).fetchone()
    if found is None:
        raise ExecutionNotFoundError(f"no execution has id {execution_id!r}")
    if found[0] != ExecutionStatus.RUNNING:
        return []
    stopped = _running_tree(conn, execution_id)
    encoded = cbsql.encode_error(error)
    status = ExecutionStatus.STOPPED.value
    for eid, _, _ in stopped:
        conn.execute(_APPEND_NEXT_EVENT, (event, eid))
        conn.execute(_STOP, (status, encoded, now, now, eid))
        cbsql.cancel_callbacks(conn, eid, now)
    inside = {eid for eid, _, _ in stopped}
    for _, parent_id, parent_callback_id in stopped:
        if parent_callback_id is not None and parent_id not in inside:
            cbsql.answer_parent(conn, parent_callback_id, CallbackStatus.FAILED, None, error, now)
    return [eid for eid, _, _ in stopped]


# --- purge ----------------------------------------------------------------------------------

# Each branch repeats its partial index's WHERE terms literally ('RUNNING' is not bound): a
# partial index is only used when the query's terms imply its own.
_PURGE_FINISHED = (
    "SELECT execution_id, ended_at FROM executions WHERE status != 'RUNNING' AND ended_at <= ?"
)
_PURGE_EXPIRED = (
    "SELECT execution_id, ended_at FROM executions"
    " WHERE status != 'RUNNING' AND retention IS NOT NULL AND ended_at + retention <= ?"
)


def purge(
    conn: sqlite3.Connection, finished_before: float | None, expired_at: float | None
) -> list[str]:
    """Delete ended executions matching either criterion; their ids, oldest end first.

    Events and callbacks go by ``ON DELETE CASCADE`` (the writer runs with
    ``foreign_keys = ON``); callbacks of other executions, including a running parent's
    callback that a deleted child answered, are not theirs and stay.
    """
    # One query per criterion, each on its own index, merged here: a UNION ... ORDER BY
    # makes SQLite scan the whole ended_at index for the retention branch instead.
    found: dict[str, float] = {}
    for query, value in ((_PURGE_FINISHED, finished_before), (_PURGE_EXPIRED, expired_at)):
        if value is not None:
            found.update(conn.execute(query, (value,)).fetchall())
    doomed = sorted(found.items(), key=lambda item: (item[1], item[0]))
    conn.executemany(
        "DELETE FROM executions WHERE execution_id = ? AND status != 'RUNNING'",
        [(eid,) for eid, _ in doomed],
    )
    return [eid for eid, _ in doomed]
