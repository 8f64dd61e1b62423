"""What only the SQLite store promises: durability, group commit, refusing foreign files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from durable.errors import (
    CallbackAlreadyCompletedError,
    CallbackNotFoundError,
    ExecutionNotFoundError,
    LeaseLostError,
    StoreError,
)
from durable.stores import (
    CallbackStatus,
    Checkpoint,
    ExecutionRow,
    Finish,
    Lease,
    ListQuery,
    NewCallback,
    NewChild,
    SQLiteStore,
)
from durable.stores import _sqlite_schema as schema
from durable.stores._sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from durable.types import ErrorInfo
from tests.stores.helpers import (
    OWNER,
    assert_next_seq,
    lease_many,
    make_row,
    send_first_checkpoints,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    # The thread only: "auto" would start a writer process in the middle of the tests that
    # write hundreds of rows at once (test_sqlite_auto_writer.py covers that).
    backend = SQLiteStore(tmp_path / "t.db", writer="thread")
    await backend.open()
    yield backend
    await backend.close()


def pragma(path: Path, name: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


@contextmanager
def old_database(path: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A durable database at schema ``version``, as that release wrote it, open for the
    caller to insert its data."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for script in MIGRATIONS[:version]:
            for statement in script:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        yield conn


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first = SQLiteStore(path)
    await first.open()
    [lease] = await lease_many(first, 1)
    done = Finish("SUCCEEDED", b"\x01")
    await first.commit(Checkpoint(lease, 2, [b"end"], now=5.0, finish=done))
    await first.close()

    second = SQLiteStore(f"{path}")
    await second.open()
    try:
        loaded = await second.load(lease.execution_id)
        assert loaded is not None
        row, events = loaded
        assert (row.status, row.result, row.ended_at, events) == (
            "SUCCEEDED",
            b"\x01",
            5.0,
            [b"start", b"end"],
        )
    finally:
        await second.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert pragma(path, "application_id") == APPLICATION_ID


async def test_group_commit_lands_every_concurrent_checkpoint(store: SQLiteStore) -> None:
    leases = await lease_many(store, 200)
    batches_before = store._batches
    await asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [b"a", b"b"], now=1.0)) for lease in leases)
    )
    assert store._batches - batches_before < 10  # shared transactions, not 200
    for lease in leases:
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert loaded[0].next_seq == 3
        assert loaded[1] == [b"start", b"a", b"b"]


async def test_bad_fence_fails_only_its_own_checkpoint(store: SQLiteStore) -> None:
    leases = await lease_many(store, 50)
    stale = Lease(leases[10].execution_id, OWNER, leases[10].epoch - 1)
    checkpoints = [Checkpoint(lease, 2, [b"a"], now=1.0) for lease in leases]
    checkpoints[10] = Checkpoint(stale, 2, [b"a"], now=1.0)
    checkpoints[20] = Checkpoint(leases[20], 5, [b"a"], now=1.0)
    outcomes = await asyncio.gather(
        *(store.commit(cp) for cp in checkpoints), return_exceptions=True
    )
    failed = {i for i, outcome in enumerate(outcomes) if outcome is not None}
    assert failed == {10, 20}
    assert all(isinstance(outcomes[i], LeaseLostError) for i in failed)
    for i, lease in enumerate(leases):
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert len(loaded[1]) == (1 if i in failed else 2)


async def test_writes_queued_before_close_are_committed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    leases = await lease_many(store, 20)
    pending = send_first_checkpoints(store, leases)
    await asyncio.sleep(0)  # let every commit enqueue
    await store.close()
    await asyncio.gather(*pending)
    await store.open()
    try:
        await assert_next_seq(store, leases, 2)
    finally:
        await store.close()


def test_constructor_validates_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "t.db", synchronous="SOMETIMES; DROP TABLE events")
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore(tmp_path / "t.db", busy_timeout=-1)


async def test_open_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"not sqlite " + os.urandom(4096)
    path.write_bytes(content)
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="not a durable database") as caught:
        await store.open()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["notes.db"]
    await store.close()


async def test_open_refuses_a_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
        conn.commit()
    content = path.read_bytes()
    with pytest.raises(StoreError, match="not a durable database") as caught:
        await SQLiteStore(path).open()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


async def test_open_refuses_another_application_id(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 1234")
    with pytest.raises(StoreError, match="application_id is 1234"):
        await SQLiteStore(path).open()


async def test_open_adopts_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    assert pragma(path, "application_id") == APPLICATION_ID


async def test_open_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    with pytest.raises(StoreError, match=f"version {SCHEMA_VERSION + 98}") as caught:
        await store.open()
    assert f"version {SCHEMA_VERSION}" in str(caught.value)


async def test_open_reports_a_path_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing"):
        await SQLiteStore(tmp_path / "missing" / "t.db").open()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


async def test_locked_database_fails_writes_with_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", busy_timeout=0.05)
    await store.open()
    try:
        leases = await lease_many(store, 3)
        started = time.monotonic()
        with exclusive_lock(tmp_path / "t.db"):
            with pytest.raises(StoreError, match="locked"):
                await store.create_execution(make_row("new"), [])
            outcomes = await asyncio.gather(
                *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases),
                return_exceptions=True,
            )
            assert await store.get_execution(leases[0].execution_id) is not None  # reads go on
        assert time.monotonic() - started < 2.0
        assert all(type(o) is StoreError and "locked" in str(o) for o in outcomes)
        await store.create_execution(make_row("new"), [])  # the store recovers
    finally:
        await store.close()


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("normal", 1)])
async def test_pragmas(tmp_path: Path, synchronous: str, level: int) -> None:
    store = SQLiteStore(tmp_path / "t.db", synchronous=synchronous)
    await store.open()
    try:
        assert store._writer is not None
        assert store._reader is not None

        async def read(conn_pragma: str) -> object:
            assert store._writer is not None
            cursor = await store._writer.execute(f"PRAGMA {conn_pragma}")
            found = await cursor.fetchone()
            await cursor.close()
            assert found is not None
            return found[0]

        assert await read("journal_mode") == "wal"
        assert await read("synchronous") == level
        assert await read("foreign_keys") == 1
        assert await read("busy_timeout") == 5000
        cursor = await store._reader.execute("PRAGMA query_only")
        assert await cursor.fetchone() == (1,)
        await cursor.close()
    finally:
        await store.close()


async def test_claim_and_timer_queries_use_the_wake_at_index(store: SQLiteStore) -> None:
    assert store._reader is not None
    for sql in (
        "SELECT execution_id FROM executions WHERE wake_at <= 1"
        " AND (lease_owner IS NULL OR lease_expires <= 1) ORDER BY wake_at LIMIT 5",
        "SELECT wake_at FROM executions WHERE wake_at IS NOT NULL ORDER BY wake_at LIMIT 1",
    ):
        cursor = await store._reader.execute(f"EXPLAIN QUERY PLAN {sql}")
        plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
        await cursor.close()
        assert "executions_wake_at" in plan


async def test_full_database_fails_the_batch_with_store_error(store: SQLiteStore) -> None:
    leases = await lease_many(store, 3)
    assert store._writer is not None
    cursor = await store._writer.execute("PRAGMA page_count")
    found = await cursor.fetchone()
    await cursor.close()
    assert found is not None
    await (await store._writer.execute(f"PRAGMA max_page_count = {found[0]}")).close()
    big = os.urandom(64 * 1024)
    outcomes = await asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [big], now=1.0)) for lease in leases),
        return_exceptions=True,
    )
    assert all(type(o) is StoreError and "database or disk is full" in str(o) for o in outcomes)
    for lease in leases:
        row = await store.get_execution(lease.execution_id)
        assert row is not None
        assert row.next_seq == 1


async def test_two_stores_on_one_file_never_claim_the_same_execution(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "t.db"), SQLiteStore(tmp_path / "t.db")
    await first.open()
    await second.open()
    try:
        for i in range(100):
            await first.create_execution(make_row(f"x{i:03d}", wake_at=1.0), [])
        claims = await asyncio.gather(
            *(
                store.claim(owner=f"w{n}", now=1.0, lease_expires=60.0, limit=7)
                for n in range(10)
                for store in (first, second)
            )
        )
        claimed = [lease.execution_id for leases in claims for lease in leases]
        assert sorted(claimed) == [f"x{i:03d}" for i in range(100)]
    finally:
        await first.close()
        await second.close()


# --- callbacks ------------------------------------------------------------------------------

SUCCEEDED = CallbackStatus.SUCCEEDED


async def test_a_version_1_database_is_migrated_in_place_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    with old_database(path, 1) as conn:
        conn.execute(
            "INSERT INTO executions (execution_id, workflow, status, input, created_at,"
            " updated_at, seed, wake_at, next_seq) VALUES ('old', 'wf', 'RUNNING', x'90', 1.0,"
            " 2.0, 7, 3.0, 2)"
        )
        conn.executemany(
            "INSERT INTO events (execution_id, seq, data) VALUES ('old', ?, ?)",
            [(1, b"first"), (2, b"second")],
        )
    assert pragma(path, "user_version") == 1

    store = SQLiteStore(path)
    await store.open()
    try:
        loaded = await store.load("old")
        assert loaded is not None
        row, events = loaded
        assert (row.workflow, row.seed, row.wake_at, row.next_seq) == ("wf", 7, 3.0, 2)
        assert events == [b"first", b"second"]
        [lease] = await store.claim(owner=OWNER, now=3.0, lease_expires=30.0, limit=1)
        new = NewCallback("cb", "op-1", 4.0, timeout_at=100.0)
        await store.commit(Checkpoint(lease, 3, [b"third"], now=4.0, callbacks=[new]))
        await store.complete_callback("cb", status=SUCCEEDED, result=b"\x01", error=None, now=5.0)
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION == 5
    assert pragma(path, "application_id") == APPLICATION_ID

    await store.open()  # reopening a migrated file migrates nothing and keeps the callback
    try:
        found = await store.get_callback("cb")
        assert found is not None
        assert (found.execution_id, found.status, found.result) == ("old", SUCCEEDED, b"\x01")
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"callbacks", "callbacks_execution_id", "callbacks_undelivered"} <= indexes


async def test_a_version_2_database_is_migrated_in_place_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    with old_database(path, 2) as conn:
        conn.execute(
            "INSERT INTO executions (execution_id, workflow, status, input, created_at,"
            " updated_at, seed, wake_at, next_seq, parent_id) VALUES ('old', 'wf', 'RUNNING',"
            " x'90', 1.0, 2.0, 7, 3.0, 1, 'someone')"
        )
        conn.execute("INSERT INTO events (execution_id, seq, data) VALUES ('old', 1, x'01')")
        conn.execute(
            "INSERT INTO callbacks (callback_id, execution_id, operation_id, status, created_at)"
            " VALUES ('cb-old', 'old', 'op-0', 'PENDING', 1.5)"
        )
    assert pragma(path, "user_version") == 2

    store = SQLiteStore(path)
    await store.open()
    try:
        loaded = await store.load("old")
        assert loaded is not None
        row, events = loaded
        assert (row.parent_id, row.parent_callback_id, row.seed, row.next_seq) == (
            "someone", None, 7, 1
        )  # fmt: skip
        assert events == [b"\x01"]
        [lease] = await store.claim(owner=OWNER, now=3.0, lease_expires=30.0, limit=1)
        child = ExecutionRow(
            "kid", "wf2", "RUNNING", b"\x90", 4.0, 4.0, seed=3, parent_id="old",
            parent_callback_id="cb-old", wake_at=4.0,
        )  # fmt: skip
        await store.commit(
            Checkpoint(lease, 2, [b"invoke"], now=4.0, children=[NewChild(child, [b"k1"])])
        )
        [kid] = await store.claim(owner=OWNER, now=4.0, lease_expires=30.0, limit=1)
        done = Finish("SUCCEEDED", b"\x05")
        await store.commit(Checkpoint(kid, 2, [b"k2"], now=5.0, finish=done))
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION == 5

    await store.open()  # reopening migrates nothing and keeps what was written
    try:
        kid_row = await store.get_execution("kid")
        assert kid_row is not None
        assert (kid_row.parent_callback_id, kid_row.status) == ("cb-old", "SUCCEEDED")
        answered = await store.get_callback("cb-old")
        assert answered is not None
        assert (answered.status, answered.result) == (SUCCEEDED, b"\x05")
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        columns = [name for (_, name, *_) in conn.execute("PRAGMA table_info(executions)")]
    assert columns[-1] == "parent_callback_id"


async def test_refused_stops_and_children_fail_only_their_own_write_in_a_batch(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 6)
    ids = [lease.execution_id for lease in leases]
    error = ErrorInfo("Stopped", "by test")

    def child(name: str, callback_id: str, parent: str) -> NewChild:
        row = ExecutionRow(
            name, "wf", "RUNNING", b"\x90", 1.0, 1.0, seed=1, parent_id=parent,
            parent_callback_id=callback_id, wake_at=1.0,
        )  # fmt: skip
        return NewChild(row, [b"start"])

    batches_before = store._batches
    outcomes = await asyncio.gather(
        store.stop("ghost", now=2.0, error=error, event=b"stop"),
        store.commit(
            Checkpoint(
                leases[0], 2, [b"a"], now=2.0, callbacks=[NewCallback("cb-0", "o", 2.0)],
                children=[child("k0", "cb-0", ids[0])],
            )
        ),
        store.commit(
            Checkpoint(
                leases[1], 2, [b"a"], now=2.0, callbacks=[NewCallback("cb-1", "o", 2.0)],
                children=[child("k1", "cb-1", ids[1]), child("bad", "cb-0", ids[1])],
            )
        ),
        store.stop(ids[2], now=2.0, error=error, event=b"stop"),
        store.commit(Checkpoint(leases[2], 2, [b"a"], now=2.0)),
        store.stop(ids[3], now=2.0, error=error, event=b"stop"),
        store.stop(ids[3], now=2.0, error=error, event=b"stop"),
        store.commit(Checkpoint(leases[4], 2, [b"a"], now=2.0)),
        return_exceptions=True,
    )  # fmt: skip
    assert store._batches - batches_before == 1
    assert [type(o).__name__ for o in outcomes] == [
        "ExecutionNotFoundError", "NoneType", "ValueError", "list", "LeaseLostError", "list",
        "list", "NoneType",
    ]  # fmt: skip
    assert type(outcomes[0]) is ExecutionNotFoundError  # not wrapped as StoreError
    assert outcomes[3] == [ids[2]]
    assert (outcomes[5], outcomes[6]) == ([ids[3]], [])
    assert await store.get_execution("k0") is not None
    for missing in ("k1", "bad"):
        assert await store.get_execution(missing) is None
    assert await store.get_callback("cb-1") is None
    counts = {ids[0]: 2, ids[1]: 1, ids[2]: 2, ids[3]: 2, ids[4]: 2, ids[5]: 1}
    for execution_id, count in counts.items():
        loaded = await store.load(execution_id)
        assert loaded is not None
        assert loaded[0].next_seq == len(loaded[1]) == count
    stopped = await store.load(ids[2])
    assert stopped is not None
    assert (stopped[0].status, stopped[1]) == ("STOPPED", [b"start", b"stop"])


async def test_stop_walks_children_with_the_parent_id_index(store: SQLiteStore) -> None:
    assert store._reader is not None
    cursor = await store._reader.execute(
        "EXPLAIN QUERY PLAN SELECT execution_id, status, parent_id, parent_callback_id"
        " FROM executions WHERE parent_id = 'a' ORDER BY created_at, execution_id"
    )
    plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
    await cursor.close()
    assert "executions_parent_id" in plan, plan


async def test_callback_errors_fail_only_their_own_write_in_a_batch(store: SQLiteStore) -> None:
    leases = await lease_many(store, 30)
    owner = leases[0]
    news = [
        NewCallback("expired", "op-1", 1.0, timeout_at=5.0),
        NewCallback("done", "op-2", 1.0),
        NewCallback("ok", "op-3", 1.0, heartbeat_timeout=60.0),
    ]
    await store.commit(Checkpoint(owner, 2, [b"cb"], now=1.0, callbacks=news))
    await store.complete_callback("done", status=SUCCEEDED, result=None, error=None, now=2.0)

    batches_before = store._batches
    outcomes = await asyncio.gather(
        store.complete_callback("ghost", status=SUCCEEDED, result=None, error=None, now=10.0),
        *(store.commit(Checkpoint(lease, 2, [b"a"], now=10.0)) for lease in leases[1:15]),
        store.complete_callback("done", status=SUCCEEDED, result=None, error=None, now=10.0),
        store.complete_callback("expired", status=SUCCEEDED, result=None, error=None, now=10.0),
        store.heartbeat_callback("ghost", now=10.0),
        *(store.commit(Checkpoint(lease, 2, [b"a"], now=10.0)) for lease in leases[15:]),
        store.heartbeat_callback("ok", now=10.0),
        return_exceptions=True,
    )
    assert store._batches - batches_before == 1  # every write shared one transaction
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "CallbackNotFoundError",
        *["NoneType"] * 14,
        "CallbackAlreadyCompletedError",
        "CallbackAlreadyCompletedError",
        "CallbackNotFoundError",
        *["NoneType"] * 15,
        "CallbackRow",
    ]
    assert type(outcomes[0]) is CallbackNotFoundError  # not wrapped as StoreError
    assert type(outcomes[16]) is CallbackAlreadyCompletedError
    assert "timed out" in str(outcomes[16])
    for lease in leases[1:]:
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert loaded[1] == [b"start", b"a"]
    expired = await store.get_callback("expired")
    assert expired is not None
    assert (expired.status, expired.completed_at) == (CallbackStatus.TIMED_OUT, 5.0)
    ok = await store.get_callback("ok")
    assert ok is not None
    assert ok.heartbeat_at == 70.0


async def test_a_refused_checkpoint_in_a_batch_keeps_the_others(store: SQLiteStore) -> None:
    leases = await lease_many(store, 3)
    await store.commit(
        Checkpoint(leases[0], 2, [b"a"], now=1.0, callbacks=[NewCallback("x", "o", 1.0)])
    )
    outcomes = await asyncio.gather(
        store.commit(
            Checkpoint(leases[1], 2, [b"a"], now=2.0, callbacks=[NewCallback("x", "o", 2.0)])
        ),
        store.commit(Checkpoint(leases[2], 2, [b"a"], now=2.0, delivered=["x"])),
        store.commit(Checkpoint(leases[0], 3, [b"b"], now=2.0)),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [ValueError, ValueError, type(None)]
    for lease, count in zip(leases, (3, 1, 1), strict=True):
        row = await store.get_execution(lease.execution_id)
        assert row is not None
        assert row.next_seq == count


async def test_callback_queries_use_their_indexes(store: SQLiteStore) -> None:
    assert store._reader is not None
    for query, index in (
        (
            "SELECT 1 FROM callbacks WHERE execution_id = 'a' AND delivered = 0"
            " AND status != 'PENDING' LIMIT 1",
            "callbacks_undelivered",
        ),
        (
            "SELECT callback_id FROM callbacks WHERE execution_id = 'a' AND delivered = 0"
            " ORDER BY created_at, callback_id",
            "callbacks_execution_id",
        ),
        (
            "UPDATE callbacks SET status = 'CANCELLED' WHERE execution_id = 'a'"
            " AND status = 'PENDING'",
            "callbacks_execution_id",
        ),
    ):
        cursor = await store._reader.execute(f"EXPLAIN QUERY PLAN {query}")
        plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
        await cursor.close()
        assert index in plan, plan


async def test_get_callback_reads_while_another_process_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", busy_timeout=0.05)
    await store.open()
    try:
        [lease] = await lease_many(store, 1)
        await store.commit(
            Checkpoint(lease, 2, [], now=1.0, callbacks=[NewCallback("cb", "o", 1.0)])
        )
        with exclusive_lock(tmp_path / "t.db"):
            found = await store.get_callback("cb")
            assert found is not None
            assert found.status == CallbackStatus.PENDING
            assert await store.get_callback("ghost") is None
            with pytest.raises(StoreError, match="locked"):
                await store.complete_callback(
                    "cb", status=SUCCEEDED, result=None, error=None, now=2.0
                )
        done = await store.complete_callback(
            "cb", status=SUCCEEDED, result=None, error=None, now=2.0
        )
        assert done.status == SUCCEEDED
    finally:
        await store.close()


async def test_callbacks_go_with_their_execution(store: SQLiteStore) -> None:
    [lease] = await lease_many(store, 1)
    await store.commit(Checkpoint(lease, 2, [], now=1.0, callbacks=[NewCallback("cb", "o", 1.0)]))
    assert store._writer is not None
    await (await store._writer.execute("DELETE FROM executions")).close()
    assert await store.get_callback("cb") is None
    with pytest.raises(CallbackNotFoundError):
        await store.heartbeat_callback("cb", now=2.0)


# --- purge ----------------------------------------------------------------------------------


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table, read by a connection of its own (the store's cascade, not its reads)."""
    with closing(sqlite3.connect(path)) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("executions", "events", "callbacks")
        }


async def test_a_version_3_database_is_migrated_in_place_and_purges(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with old_database(path, 3) as conn:
        conn.executemany(
            "INSERT INTO executions (execution_id, workflow, status, input, created_at,"
            " updated_at, seed, ended_at, retention, next_seq) VALUES (?, 'wf', ?, x'90', 1.0,"
            " 2.0, 7, ?, ?, 1)",
            [
                ("done", "SUCCEEDED", 10.0, 5.0),
                ("kept", "FAILED", 10.0, None),
                ("run", "RUNNING", None, 1.0),
            ],
        )
        conn.executemany(
            "INSERT INTO events (execution_id, seq, data) VALUES (?, 1, x'01')",
            [("done",), ("kept",), ("run",)],
        )
        conn.executemany(
            "INSERT INTO callbacks (callback_id, execution_id, operation_id, status, created_at)"
            " VALUES (?, ?, 'op', 'CANCELLED', 1.5)",
            [("cb-done", "done"), ("cb-run", "run")],
        )
    assert pragma(path, "user_version") == 3

    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.purge(expired_at=15.0) == ["done"]
        assert await store.load("done") is None
        assert await store.get_callback("cb-done") is None
        assert await store.get_callback("cb-run") is not None
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION == 5
    assert table_counts(path) == {"executions": 2, "events": 2, "callbacks": 1}

    await store.open()  # reopening migrates nothing and keeps what is left
    try:
        assert await store.purge(finished_before=10.0) == ["kept"]
        assert [row.execution_id for row in await store.list_executions(ListQuery())] == ["run"]
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"executions_ended_at", "executions_expires_at"} <= names


async def test_purge_queries_use_their_indexes(store: SQLiteStore) -> None:
    assert store._reader is not None
    for query, params, index in (
        (schema._PURGE_FINISHED, (1.0,), "executions_ended_at"),
        (schema._PURGE_EXPIRED, (1.0,), "executions_expires_at"),
    ):
        cursor = await store._reader.execute(f"EXPLAIN QUERY PLAN {query}", params)
        plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
        await cursor.close()
        assert f"SEARCH executions USING INDEX {index}" in plan, plan


async def test_purge_removes_events_and_callbacks_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        leases = await lease_many(store, 3)
        for lease in leases:
            news = [NewCallback(f"{lease.execution_id}-{n}", "o", 1.0) for n in range(2)]
            await store.commit(Checkpoint(lease, 2, [b"a"], now=1.0, callbacks=news))
        for lease in leases[:2]:
            await store.commit(Checkpoint(lease, 3, [b"b"], now=5.0, finish=Finish("FAILED")))
        assert table_counts(path) == {"executions": 3, "events": 8, "callbacks": 6}
        assert await store.purge(finished_before=5.0) == ["x0000", "x0001"]
        assert table_counts(path) == {"executions": 1, "events": 2, "callbacks": 2}
    finally:
        await store.close()


async def test_purge_shares_a_batch_and_a_refused_write_keeps_it(store: SQLiteStore) -> None:
    leases = await lease_many(store, 4)
    for lease in leases[:2]:
        await store.commit(Checkpoint(lease, 2, [b"end"], now=5.0, finish=Finish("SUCCEEDED")))
    batches_before = store._batches
    outcomes = await asyncio.gather(
        store.commit(Checkpoint(leases[2], 2, [b"a"], now=6.0)),
        store.commit(Checkpoint(leases[3], 9, [b"bad"], now=6.0)),  # wrong sequence
        store.purge(finished_before=10.0),
        store.commit(Checkpoint(leases[0], 3, [b"late"], now=6.0)),  # ended: lease is gone
        return_exceptions=True,
    )
    assert store._batches - batches_before == 1
    assert [type(o).__name__ for o in outcomes] == [
        "NoneType", "LeaseLostError", "list", "LeaseLostError"
    ]  # fmt: skip
    assert outcomes[2] == ["x0000", "x0001"]
    for execution_id, events in (("x0002", [b"start", b"a"]), ("x0003", [b"start"])):
        loaded = await store.load(execution_id)
        assert loaded is not None
        assert loaded[1] == events


async def test_a_failed_purge_deletes_nothing_and_fails_only_itself(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = await lease_many(store, 2)
    await store.commit(Checkpoint(leases[0], 2, [b"end"], now=5.0, finish=Finish("SUCCEEDED")))
    real = schema.purge

    def purge_then_fail(
        conn: sqlite3.Connection, finished_before: float | None, expired_at: float | None
    ) -> list[str]:
        assert real(conn, finished_before, expired_at) == ["x0000"]
        raise ValueError("refused after deleting")

    monkeypatch.setattr(schema, "purge", purge_then_fail)
    outcomes = await asyncio.gather(
        store.purge(finished_before=10.0),
        store.commit(Checkpoint(leases[1], 2, [b"a"], now=6.0)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["ValueError", "NoneType"]
    loaded = await store.load("x0000")
    assert loaded is not None
    assert loaded[1] == [b"start", b"end"]
    monkeypatch.undo()
    assert await store.purge(finished_before=10.0) == ["x0000"]


# --- workflow filters and cancelled callbacks -------------------------------------------------


async def test_filtered_claim_and_timer_queries_seek_per_workflow(store: SQLiteStore) -> None:
    assert store._reader is not None
    for query, params, index in (
        (schema._DUE_OF, ("wf", 1.0, 1.0, OWNER, 5), "executions_workflow_wake_at"),
        (schema._NEXT_WAKE_AT_OF, ("wf", OWNER), "executions_workflow_wake_at"),
        (schema._DUE, (1.0, 1.0, OWNER, 5), "executions_wake_at"),
        (schema._NEXT_WAKE_AT, (OWNER,), "executions_wake_at"),
    ):
        cursor = await store._reader.execute(f"EXPLAIN QUERY PLAN {query}", params)
        plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
        await cursor.close()
        assert f"SEARCH executions USING INDEX {index} " in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # walked in wake_at order, never sorted


async def test_a_long_workflow_list_binds_no_in_list(store: SQLiteStore) -> None:
    await store.create_execution(make_row("a", wake_at=5.0), [])
    names = [f"other-{i}" for i in range(40_000)] + ["wf"]  # beyond any bound-variable limit
    assert await store.next_wake_at(workflows=names) == 5.0
    [lease] = await store.claim(owner=OWNER, now=5.0, lease_expires=9.0, limit=3, workflows=names)
    assert lease == Lease("a", OWNER, 1)


async def test_a_version_4_database_gets_the_workflow_wake_at_index(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    with old_database(path, 4) as conn:
        conn.executemany(
            "INSERT INTO executions (execution_id, workflow, status, input, created_at,"
            " updated_at, seed, wake_at) VALUES (?, ?, 'RUNNING', x'90', 1.0, 1.0, 7, ?)",
            [("a", "x", 3.0), ("b", "y", 2.0)],
        )
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.next_wake_at(workflows=["x"]) == 3.0
        [lease] = await store.claim(
            owner=OWNER, now=5.0, lease_expires=9.0, limit=5, workflows=["x"]
        )
        assert lease == Lease("a", OWNER, 1)
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION == 5
    with closing(sqlite3.connect(path)) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "executions_workflow_wake_at" in names


async def test_a_refused_cancellation_fails_only_its_own_checkpoint(store: SQLiteStore) -> None:
    leases = await lease_many(store, 3)
    for lease in leases:
        news = [NewCallback(f"{lease.execution_id}-cb", "op", 1.0)]
        await store.commit(Checkpoint(lease, 2, [b"a"], now=1.0, callbacks=news))
    batches_before = store._batches
    outcomes = await asyncio.gather(
        store.commit(Checkpoint(leases[0], 3, [b"b"], now=2.0, cancelled=["x0000-cb"])),
        store.commit(Checkpoint(leases[1], 3, [b"b"], now=2.0, cancelled=["x0001-cb", "x0002-cb"])),
        store.commit(Checkpoint(leases[2], 3, [b"b"], now=2.0, cancelled=["x0002-cb"])),
        return_exceptions=True,
    )
    assert store._batches - batches_before == 1
    assert [type(o) for o in outcomes] == [type(None), ValueError, type(None)]
    for execution_id, status, count in (
        ("x0000", CallbackStatus.CANCELLED, 3),
        ("x0001", CallbackStatus.PENDING, 2),
        ("x0002", CallbackStatus.CANCELLED, 3),
    ):
        found = await store.get_callback(f"{execution_id}-cb")
        assert found is not None
        assert found.status == status
        row = await store.get_execution(execution_id)
        assert row is not None
        assert row.next_seq == count


async def test_opening_a_new_database_another_process_holds_waits_for_wal(
    tmp_path: Path,
) -> None:
    # A second worker opening the same new file at the same moment: SQLite answers the WAL
    # switch with the old journal mode while the other connection holds the file.
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a shared lock
    release = threading.Timer(0.2, holder.rollback)
    release.start()
    store = SQLiteStore(path)
    try:
        await store.open()
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        holder.close()
        await store.close()


def test_the_identity_check_reads_one_snapshot(tmp_path: Path) -> None:
    # Several workers opening a new file at once: another process's migration must not
    # commit between reading application_id and looking for tables, or the file looks
    # foreign ("holds other tables") to the slower one.
    from durable.stores._sqlite_migrations import migrate

    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    interleaved: list[str] = []

    def other_process_migrates(statement: str) -> None:
        if "sqlite_master" not in statement or interleaved:
            return
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            for ddl in MIGRATIONS[0]:
                other.execute(ddl)
            other.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            other.execute("PRAGMA user_version = 1")
            other.execute("COMMIT")
            interleaved.append("committed in between")
        except sqlite3.OperationalError:
            other.execute("ROLLBACK")
            interleaved.append("kept out")
        finally:
            other.close()

    conn.set_trace_callback(other_process_migrates)
    try:
        migrate(conn, str(path), "FULL")
    finally:
        conn.close()
    assert interleaved == ["kept out"]
    assert pragma(path, "user_version") == SCHEMA_VERSION


async def test_rows_asked_for_at_once_share_one_read(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await lease_many(store, 50)
    trips: list[int] = []
    real = schema.select_rows

    def counted(conn: sqlite3.Connection, ids: list[str]) -> list[ExecutionRow | None]:
        trips.append(len(ids))
        return real(conn, ids)

    monkeypatch.setattr(schema, "select_rows", counted)
    ids = [f"x{i:04d}" for i in range(50)] + ["missing"]
    rows = await asyncio.gather(*(store.get_execution(i) for i in ids))
    assert [r.execution_id if r else None for r in rows] == [*ids[:50], None]
    assert trips == [51]  # one trip to the reader's thread, not 51


async def test_a_failed_shared_read_fails_every_caller(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, ids: list[str]) -> list[ExecutionRow | None]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "select_rows", broken)
    outcomes = await asyncio.gather(
        *(store.get_execution(f"x{i}") for i in range(3)), return_exceptions=True
    )
    assert all(type(o) is StoreError and "disk I/O error" in str(o) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 3  # each caller its own exception
    monkeypatch.undo()
    assert await store.get_execution("x0") is None  # the next read works


async def test_a_bad_execution_id_fails_alone(store: SQLiteStore) -> None:
    await lease_many(store, 1)
    good = store.get_execution("x0000")
    with pytest.raises(TypeError, match="an execution id is a string"):
        await store.get_execution(["x"])  # type: ignore[arg-type]
    row = await good
    assert row is not None


async def test_reads_go_on_while_close_commits_the_queued_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    leases = await lease_many(store, 3)
    pending = send_first_checkpoints(store, leases)
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # close() has begun: it waits for the writer
    row = await store.get_execution(leases[0].execution_id)
    assert row is not None
    await closing
    await asyncio.gather(*pending)


async def test_a_writer_task_cancelled_while_idle_refuses_writes(store: SQLiteStore) -> None:
    leases = await lease_many(store, 1)
    task = store._writer_task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(StoreError, match="the store writer was stopped"):
        await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))
