"""The SQLite schema: its DDL and migrations, and the checks that keep ``open`` off files
that are not durable databases.

The schema version lives in ``PRAGMA user_version`` and the file is stamped with
``PRAGMA application_id``, so ``sqlite3 file.db "PRAGMA application_id"`` tells a durable
database from any other SQLite file. Migration ``n`` (1-based) takes a database from version
``n - 1`` to ``n``; each is a list of statements because ``executescript`` would commit the
migration transaction half-way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from durable.errors import StoreError

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "check_header",
    "check_seed",
    "migrate",
]

APPLICATION_ID = 0x44555242
"""``b"DURB"`` read as a big-endian integer."""

_SQLITE_MAGIC = b"SQLite format 3\x00"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE executions (
            execution_id  TEXT PRIMARY KEY,
            workflow      TEXT NOT NULL,
            status        TEXT NOT NULL,
            input         BLOB NOT NULL,
            result        BLOB,
            error         BLOB,
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL,
            ended_at      REAL,
            parent_id     TEXT,
            seed          INTEGER NOT NULL,
            wake_at       REAL,
            lease_owner   TEXT,
            lease_expires REAL,
            lease_epoch   INTEGER NOT NULL DEFAULT 0,
            next_seq      INTEGER NOT NULL DEFAULT 0,
            deadline      REAL,
            retention     REAL
        )
        """,
        """
        CREATE TABLE events (
            execution_id TEXT NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
            seq          INTEGER NOT NULL,
            data         BLOB NOT NULL,
            PRIMARY KEY (execution_id, seq)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX executions_wake_at ON executions (wake_at) WHERE wake_at IS NOT NULL",
        "CREATE INDEX executions_created_at ON executions (created_at)",
        "CREATE INDEX executions_status ON executions (status, created_at)",
        "CREATE INDEX executions_workflow ON executions (workflow, created_at)",
        """
        CREATE INDEX executions_parent_id ON executions (parent_id, created_at)
        WHERE parent_id IS NOT NULL
        """,
        """
        CREATE INDEX executions_lease_owner ON executions (lease_owner)
        WHERE lease_owner IS NOT NULL
        """,
    ),
    (
        # The inbox between outside systems and the log: an answer waits here (delivered = 0)
        # until a checkpoint records its outcome event.
        """
        CREATE TABLE callbacks (
            callback_id       TEXT PRIMARY KEY,
            execution_id      TEXT NOT NULL
                              REFERENCES executions (execution_id) ON DELETE CASCADE,
            operation_id      TEXT NOT NULL,
            status            TEXT NOT NULL,
            created_at        REAL NOT NULL,
            timeout_at        REAL,
            heartbeat_timeout REAL,
            heartbeat_at      REAL,
            result            BLOB,
            error             BLOB,
            completed_at      REAL,
            delivered         INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX callbacks_execution_id ON callbacks (execution_id)",
        # Only answered-but-undelivered rows: what a release checks for, and few at any time.
        """
        CREATE INDEX callbacks_undelivered ON callbacks (execution_id)
        WHERE delivered = 0 AND status != 'PENDING'
        """,
    ),
    (
        # A child started by ctx.invoke: the parent's callback that its end answers. Only
        # ever read with its own row, so it needs no index.
        "ALTER TABLE executions ADD COLUMN parent_callback_id TEXT",
    ),
    (
        # What purge reads: only ended rows, by end time and by end of retention (the
        # expression must stay spelled exactly as purge's query spells it to be used).
        """
        CREATE INDEX executions_ended_at ON executions (ended_at)
        WHERE status != 'RUNNING'
        """,
        """
        CREATE INDEX executions_expires_at ON executions (ended_at + retention)
        WHERE status != 'RUNNING' AND retention IS NOT NULL
        """,
    ),
    (
        # What a worker that runs only some workflows claims and sleeps until: one seek per
        # workflow, walked in wake_at order. Filtering the wake_at index instead walks every
        # other workflow's active rows, and workflow IN (...) makes SQLite pick
        # executions_workflow (every execution ever, finished ones included) and sort.
        """
        CREATE INDEX executions_workflow_wake_at ON executions (workflow, wake_at)
        WHERE wake_at IS NOT NULL
        """,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def _not_ours(path: str, why: str) -> StoreError:
    return StoreError(f"{path} is not a durable database ({why})")


def check_header(path: str) -> None:
    """Refuse an existing non-empty file that is not SQLite, before SQLite touches it.

    Raises:
        StoreError: naming ``path``.
    """
    file = Path(path)
    if not file.is_file():
        return
    try:
        with file.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if head and head != _SQLITE_MAGIC:
        raise _not_ours(path, "not a SQLite file")


def check_seed(seed: int) -> None:
    """Refuse a seed that does not fit SQLite's signed 64-bit INTEGER column.

    Raises:
        ValueError: the seed is out of range.
    """
    if not -(2**63) <= seed < 2**63:
        raise ValueError(f"ExecutionRow.seed must fit in a signed 64-bit integer, got {seed}")


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0])


def _check_identity(conn: sqlite3.Connection, path: str) -> int:
    """Return the schema version after refusing foreign or too-new databases (read only)."""
    app_id = _pragma_int(conn, "application_id")
    has_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if app_id != APPLICATION_ID and (app_id != 0 or has_objects):
        why = "it holds other tables" if app_id == 0 else f"application_id is {app_id}"
        raise _not_ours(path, why)
    version = _pragma_int(conn, "user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, but this version of durable only knows "
            f"version {SCHEMA_VERSION}: upgrade durable to open it"
        )
    return version


def migrate(conn: sqlite3.Connection, path: str, synchronous: str) -> None:
    """Check identity, switch to WAL, and bring the schema up to :data:`SCHEMA_VERSION`.

    Nothing is written before the identity check passes, so a foreign file stays untouched.
    Runs on the connection's own thread; ``conn`` must be in autocommit mode.
    """
    # Both facts must come from one snapshot: read apart, another process's migration can
    # commit in between (tables seen, application_id not yet) and look like a foreign file.
    conn.execute("BEGIN")
    try:
        _check_identity(conn, path)
    finally:
        conn.execute("COMMIT")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot use WAL mode on {path} (journal mode stays {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between the check above and this lock.
        version = _check_identity(conn, path)
        if version < SCHEMA_VERSION:
            for script in MIGRATIONS[version:]:
                for statement in script:
                    conn.execute(statement)
            # PRAGMA arguments cannot be bound; both values are integer constants.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --- one function per store operation -------------------------------------------------------
