"""The one store contract, run against every backend."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import closing
from dataclasses import replace
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
    CallbackRow,
    CallbackStatus,
    Checkpoint,
    ExecutionRow,
    Finish,
    Lease,
    ListQuery,
    MemoryStore,
    NewCallback,
    NewChild,
    SQLiteStore,
    Store,
    open_store,
)
from durable.types import ErrorInfo

OWNER = "worker-1"


@pytest.fixture(params=["memory", "sqlite", "sqlite-process"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every store, and the SQLite store with its writer process too."""
    backend: Store = MemoryStore()
    if request.param != "memory":
        writer = "process" if request.param == "sqlite-process" else "thread"
        backend = SQLiteStore(tmp_path / "t.db", writer=writer)
        backend._process_min = 1  # every write the process can take goes there, even alone
    await backend.open()
    yield backend
    await backend.close()


def make_row(execution_id: str, **fields: object) -> ExecutionRow:
    values: dict[str, object] = {
        "workflow": "wf",
        "status": "RUNNING",
        "input": b"\x91\x01",
        "created_at": 100.0,
        "updated_at": 100.0,
        "seed": 42,
    }
    values.update(fields)
    return ExecutionRow(execution_id=execution_id, **values)  # type: ignore[arg-type]


async def leased(store: Store, execution_id: str, *, events: int = 1) -> Lease:
    """Create an execution that ``OWNER`` holds with epoch 1 until t=130."""
    row = make_row(execution_id, lease_owner=OWNER, lease_epoch=1, lease_expires=130.0)
    row.wake_at = 130.0
    await store.create_execution(row, [b"e%d" % i for i in range(1, events + 1)])
    return Lease(execution_id, OWNER, 1)


def checkpoint(lease: Lease, first_seq: int = 2, **fields: object) -> Checkpoint:
    values: dict[str, object] = {"events": [b"e2", b"e3"], "now": 110.0}
    values.update(fields)
    return Checkpoint(lease=lease, first_seq=first_seq, **values)  # type: ignore[arg-type]


# --- create / get / list / load ------------------------------------------------------------


async def test_create_stores_row_and_events(store: Store) -> None:
    row = make_row(
        "a", wake_at=100.0, parent_id="p", deadline=500.0, retention=60.0, parent_callback_id="cb"
    )
    stored, created = await store.create_execution(row, [b"e1", b"e2"])
    assert created
    assert stored == replace(row, next_seq=2)
    assert await store.get_execution("a") == stored
    assert await store.load("a") == (stored, [b"e1", b"e2"])


async def test_create_is_idempotent(store: Store) -> None:
    first, _ = await store.create_execution(make_row("a"), [b"e1"])
    again, created = await store.create_execution(make_row("a", workflow="other"), [b"x", b"y"])
    assert not created
    assert again == first
    assert await store.load("a") == (first, [b"e1"])


async def test_rows_are_copied_in_and_out(store: Store) -> None:
    row = make_row("a")
    stored, _ = await store.create_execution(row, [b"e1"])
    row.status = stored.status = "FAILED"
    fetched = await store.get_execution("a")
    assert fetched is not None
    assert fetched.status == "RUNNING"
    fetched.status = "FAILED"
    assert (await store.get_execution("a")).status == "RUNNING"  # type: ignore[union-attr]


async def test_missing_execution(store: Store) -> None:
    assert await store.get_execution("nope") is None
    assert await store.load("nope") is None


async def test_seed_must_fit_64_bits(store: Store) -> None:
    with pytest.raises(ValueError, match="seed"):
        await store.create_execution(make_row("a", seed=2**64), [])
    await store.create_execution(make_row("b", seed=2**63 - 1), [])
    assert (await store.get_execution("b")).seed == 2**63 - 1  # type: ignore[union-attr]


async def test_list_filters_and_orders_newest_first(store: Store) -> None:
    rows = [
        make_row("a", created_at=1.0, workflow="w1"),
        make_row("b", created_at=3.0, workflow="w2", status="SUCCEEDED"),
        make_row("c", created_at=2.0, workflow="w1", parent_id="a", status="FAILED"),
        make_row("d", created_at=3.0, workflow="w1"),
    ]
    for row in rows:
        await store.create_execution(row, [])

    async def ids(**query: object) -> list[str]:
        found = await store.list_executions(ListQuery(**query))  # type: ignore[arg-type]
        return [row.execution_id for row in found]

    assert await ids() == ["d", "b", "c", "a"]  # created_at ties: newest insert first
    assert await ids(status="RUNNING") == ["d", "a"]
    assert await ids(statuses=("SUCCEEDED", "FAILED")) == ["b", "c"]
    assert await ids(status="FAILED", statuses=("SUCCEEDED",)) == []
    assert await ids(workflow="w1") == ["d", "c", "a"]
    assert await ids(parent_id="a") == ["c"]
    assert await ids(limit=2) == ["d", "b"]
    assert await ids(limit=2, offset=2) == ["c", "a"]
    assert await ids(limit=0) == []


# --- commit ---------------------------------------------------------------------------------


async def test_commit_appends_events(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease))
    await store.commit(checkpoint(lease, 4, events=[b"e4"], now=120.0))
    loaded = await store.load("a")
    assert loaded is not None
    row, events = loaded
    assert events == [b"e1", b"e2", b"e3", b"e4"]
    assert row.next_seq == 4
    assert row.updated_at == 120.0
    assert (row.lease_owner, row.lease_expires, row.wake_at) == (OWNER, 130.0, 130.0)


async def test_commit_without_events_checks_sequence(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease, 2, events=[], lease_expires=150.0))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.next_seq, row.lease_expires, row.wake_at) == (1, 150.0, 150.0)


@pytest.mark.parametrize(
    "bad_lease",
    [Lease("a", OWNER, 2), Lease("a", "worker-2", 1), Lease("missing", OWNER, 1)],
    ids=["epoch", "owner", "execution"],
)
async def test_commit_with_foreign_lease_is_refused(store: Store, bad_lease: Lease) -> None:
    await leased(store, "a")
    before = await store.load("a")
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(bad_lease, finish=Finish("SUCCEEDED", result=b"r")))
    assert await store.load("a") == before


@pytest.mark.parametrize("first_seq", [1, 3])
async def test_commit_with_wrong_sequence_is_refused(store: Store, first_seq: int) -> None:
    lease = await leased(store, "a")
    before = await store.load("a")
    with pytest.raises(LeaseLostError, match="must start at 2"):
        await store.commit(checkpoint(lease, first_seq))
    assert await store.load("a") == before


async def test_commit_extends_lease(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease, lease_expires=200.0))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.lease_expires, row.wake_at) == (OWNER, 200.0, 200.0)


async def test_commit_release_sets_wake_at_and_drops_lease(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease, release=True, wake_at=500.0, lease_expires=999.0))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.lease_expires, row.wake_at) == (None, None, 500.0)
    assert row.lease_epoch == 1
    assert row.status == "RUNNING"
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(lease, 4))


async def test_commit_release_without_wake_at(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease, release=True, wake_at=None))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.wake_at) == (None, None)
    assert await store.next_wake_at() is None


async def test_commit_finish(store: Store) -> None:
    lease = await leased(store, "a")
    error = ErrorInfo("ValueError", "bad input", ["  File x, line 1", "    raise"])
    await store.commit(checkpoint(lease, now=123.5, finish=Finish("FAILED", b"\xc0", error)))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.status, row.result, row.error) == ("FAILED", b"\xc0", error)
    assert (row.ended_at, row.updated_at, row.next_seq) == (123.5, 123.5, 3)
    assert (row.wake_at, row.lease_owner, row.lease_expires) == (None, None, None)
    assert await store.claim(owner="w2", now=10_000.0, lease_expires=10_030.0, limit=10) == []


async def test_commit_finish_succeeded_without_error(store: Store) -> None:
    lease = await leased(store, "a")
    await store.commit(checkpoint(lease, finish=Finish("SUCCEEDED", b"\x01")))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.status, row.result, row.error) == ("SUCCEEDED", b"\x01", None)


# --- claim / renew / release ----------------------------------------------------------------


async def test_claim_takes_due_free_rows_earliest_first(store: Store) -> None:
    await store.create_execution(make_row("late", wake_at=90.0), [])
    await store.create_execution(make_row("early", wake_at=50.0), [])
    await store.create_execution(make_row("future", wake_at=101.0), [])
    await store.create_execution(make_row("idle"), [])
    await store.create_execution(
        make_row("held", wake_at=10.0, lease_owner="w0", lease_expires=150.0), []
    )
    leases = await store.claim(owner=OWNER, now=100.0, lease_expires=130.0, limit=1)
    assert leases == [Lease("early", OWNER, 1, taken_over=False)]
    leases = await store.claim(owner=OWNER, now=100.0, lease_expires=130.0, limit=10)
    assert leases == [Lease("late", OWNER, 1)]
    row = await store.get_execution("late")
    assert row is not None
    assert (row.lease_owner, row.lease_epoch, row.lease_expires, row.wake_at) == (
        OWNER,
        1,
        130.0,
        130.0,
    )
    assert await store.claim(owner="w2", now=100.0, lease_expires=130.0, limit=10) == []
    assert await store.claim(owner="w2", now=200.0, lease_expires=230.0, limit=0) == []


async def test_claim_with_workflows_takes_only_theirs_in_order(store: Store) -> None:
    for execution_id, workflow, wake in (
        ("x-late", "x", 60.0),
        ("z-first", "z", 10.0),
        ("y-mid", "y", 40.0),
        ("x-early", "x", 20.0),
        ("y-tie", "y", 60.0),  # same wake_at as x-late, created after it
        ("x-future", "x", 101.0),
    ):
        await store.create_execution(make_row(execution_id, workflow=workflow, wake_at=wake), [])
    await store.create_execution(make_row("x-idle", workflow="x"), [])
    await store.create_execution(
        make_row("x-held", workflow="x", wake_at=5.0, lease_owner="w0", lease_expires=150.0), []
    )

    claim = store.claim
    assert await claim(owner=OWNER, now=100.0, lease_expires=900.0, limit=5, workflows=[]) == []
    assert await claim(owner=OWNER, now=100.0, lease_expires=900.0, limit=5, workflows=["?"]) == []
    assert await claim(owner=OWNER, now=100.0, lease_expires=900.0, limit=0, workflows=["x"]) == []
    leases = await claim(owner=OWNER, now=100.0, lease_expires=900.0, limit=2, workflows=["y", "x"])
    assert leases == [Lease("x-early", OWNER, 1), Lease("y-mid", OWNER, 1)]
    leases = await claim(
        owner=OWNER, now=100.0, lease_expires=900.0, limit=10, workflows=("x", "y", "x")
    )
    assert [lease.execution_id for lease in leases] == ["x-late", "y-tie"]
    row = await store.get_execution("y-tie")
    assert row is not None
    assert (row.lease_owner, row.lease_epoch, row.lease_expires, row.wake_at) == (
        OWNER, 1, 900.0, 900.0
    )  # fmt: skip
    z = await store.get_execution("z-first")
    assert z is not None
    assert (z.lease_owner, z.wake_at) == (None, 10.0)  # another workflow's row is left alone
    leases = await claim(owner="w2", now=150.0, lease_expires=180.0, limit=10, workflows=["x"])
    assert leases == [
        Lease("x-held", "w2", 1, taken_over=True),  # an expired lease is taken over as usual
        Lease("x-future", "w2", 1),
    ]
    [rest] = await claim(owner="w2", now=150.0, lease_expires=180.0, limit=10)
    assert rest.execution_id == "z-first"


async def test_workflows_must_be_a_sequence_of_names(store: Store) -> None:
    await store.create_execution(make_row("a", workflow="x", wake_at=1.0), [])
    with pytest.raises(TypeError, match="not the string 'x'"):
        await store.claim(owner=OWNER, now=1.0, lease_expires=2.0, limit=1, workflows="x")
    with pytest.raises(TypeError, match="not the string 'x'"):
        await store.next_wake_at(workflows="x")
    assert await wake_at(store, "a") == 1.0


async def test_claim_of_expired_lease_takes_over_and_fences_the_old_owner(store: Store) -> None:
    old = await leased(store, "a")
    assert await store.claim(owner="w2", now=129.0, lease_expires=160.0, limit=5) == []
    [new] = await store.claim(owner="w2", now=130.0, lease_expires=160.0, limit=5)
    assert new == Lease("a", "w2", 2, taken_over=True)
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(old))
    assert await store.renew([old], lease_expires=300.0) == ["a"]
    await store.release(old, wake_at=None, now=131.0)
    await store.commit(checkpoint(new))
    row = await store.get_execution("a")
    assert row is not None
    assert (row.next_seq, row.lease_owner, row.lease_epoch) == (3, "w2", 2)


async def test_renew_extends_held_leases_and_reports_lost_ones(store: Store) -> None:
    a = await leased(store, "a")
    b = await leased(store, "b")
    lost = await store.renew(
        [a, Lease("b", OWNER, 7), b, Lease("zzz", OWNER, 1)], lease_expires=300.0
    )
    assert lost == ["b", "zzz"]
    for execution_id in ("a", "b"):
        row = await store.get_execution(execution_id)
        assert row is not None
        assert (row.lease_expires, row.wake_at) == (300.0, 300.0)
    await store.commit(checkpoint(a, release=True, wake_at=None))
    assert await store.renew([a], lease_expires=400.0) == ["a"]


async def test_release(store: Store) -> None:
    lease = await leased(store, "a")
    await store.release(Lease("a", OWNER, 9), wake_at=1.0, now=105.0)  # not held: ignored
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.wake_at, row.updated_at) == (OWNER, 130.0, 100.0)
    await store.release(lease, wake_at=140.0, now=105.0)
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.lease_expires, row.wake_at) == (None, None, 140.0)
    assert (row.updated_at, row.next_seq, row.lease_epoch) == (105.0, 1, 1)
    [again] = await store.claim(owner="w2", now=140.0, lease_expires=170.0, limit=1)
    assert again == Lease("a", "w2", 2, taken_over=False)


# --- timers and dead owners -----------------------------------------------------------------


async def test_next_wake_at(store: Store) -> None:
    assert await store.next_wake_at() is None
    await store.create_execution(make_row("idle"), [])
    assert await store.next_wake_at() is None
    await store.create_execution(make_row("a", wake_at=300.0), [])
    await store.create_execution(make_row("b", wake_at=200.5), [])
    assert await store.next_wake_at() == 200.5
    await store.claim(owner=OWNER, now=250.0, lease_expires=280.0, limit=1)
    assert await store.next_wake_at() == 280.0


async def test_next_wake_at_with_workflows(store: Store) -> None:
    assert await store.next_wake_at(workflows=["x"]) is None
    await store.create_execution(make_row("x-idle", workflow="x"), [])
    await store.create_execution(make_row("x-a", workflow="x", wake_at=300.0), [])
    await store.create_execution(make_row("y-a", workflow="y", wake_at=200.0), [])
    await store.create_execution(make_row("z-a", workflow="z", wake_at=50.0), [])
    await store.create_execution(
        make_row("x-mine", workflow="x", wake_at=100.0, lease_owner=OWNER, lease_expires=100.0),
        [],
    )
    assert await store.next_wake_at() == 50.0
    assert await store.next_wake_at(workflows=["x"]) == 100.0
    assert await store.next_wake_at(OWNER, ["x"]) == 300.0
    assert await store.next_wake_at(OWNER, ["x", "y"]) == 200.0
    assert await store.next_wake_at("other", ("y", "x", "y")) == 100.0
    assert await store.next_wake_at(OWNER, ["z", "x"]) == 50.0
    assert await store.next_wake_at(workflows=[]) is None
    assert await store.next_wake_at(OWNER, workflows=["nope"]) is None


async def test_lease_owners_and_expire_leases(store: Store) -> None:
    assert await store.lease_owners() == []
    await leased(store, "a")
    await leased(store, "b")
    await store.create_execution(make_row("c", wake_at=1.0), [])
    await store.claim(owner="w9", now=1.0, lease_expires=1000.0, limit=1)
    assert await store.lease_owners() == ["w9", OWNER]
    assert await store.claim(owner="w2", now=110.0, lease_expires=140.0, limit=10) == []

    assert await store.expire_leases([OWNER, "ghost"], now=110.0) == 2
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.lease_expires, row.wake_at) == (OWNER, 110.0, 110.0)
    assert await store.next_wake_at() == 110.0
    leases = await store.claim(owner="w2", now=110.0, lease_expires=140.0, limit=10)
    assert sorted(leases, key=lambda lease: lease.execution_id) == [
        Lease("a", "w2", 2, taken_over=True),
        Lease("b", "w2", 2, taken_over=True),
    ]
    assert await store.lease_owners() == ["w2", "w9"]
    assert await store.expire_leases([], now=110.0) == 0


# --- callbacks ------------------------------------------------------------------------------


def new_callback(
    callback_id: str,
    *,
    created_at: float = 110.0,
    timeout_at: float | None = None,
    heartbeat_timeout: float | None = None,
) -> NewCallback:
    return NewCallback(callback_id, f"op-{callback_id}", created_at, timeout_at, heartbeat_timeout)


async def with_callbacks(
    store: Store, execution_id: str, *callbacks: NewCallback, release: bool = False
) -> Lease:
    """A leased execution (3 events) whose last checkpoint created ``callbacks``."""
    lease = await leased(store, execution_id)
    await store.commit(checkpoint(lease, callbacks=list(callbacks), release=release))
    return lease


async def callback(store: Store, callback_id: str) -> CallbackRow:
    found = await store.get_callback(callback_id)
    assert found is not None
    return found


async def wake_at(store: Store, execution_id: str) -> float | None:
    row = await store.get_execution(execution_id)
    assert row is not None
    return row.wake_at


async def test_checkpoint_creates_pending_callbacks(store: Store) -> None:
    await with_callbacks(
        store,
        "a",
        new_callback("cb-1", timeout_at=400.0, heartbeat_timeout=30.0),
        new_callback("cb-2", created_at=111.0),
    )
    assert await store.get_callback("cb-1") == CallbackRow(
        callback_id="cb-1",
        execution_id="a",
        operation_id="op-cb-1",
        status=CallbackStatus.PENDING,
        created_at=110.0,
        timeout_at=400.0,
        heartbeat_timeout=30.0,
        heartbeat_at=140.0,
    )
    assert await store.get_callback("cb-2") == CallbackRow(
        "cb-2", "a", "op-cb-2", CallbackStatus.PENDING, 111.0
    )
    assert await store.get_callback("nope") is None
    fetched = await callback(store, "cb-1")
    fetched.status = CallbackStatus.SUCCEEDED  # a copy: the store keeps its own
    assert (await callback(store, "cb-1")).status == CallbackStatus.PENDING
    loaded = await store.load("a")
    assert loaded is not None
    assert loaded[1] == [b"e1", b"e2", b"e3"]


async def test_a_fenced_checkpoint_creates_no_callback(store: Store) -> None:
    await leased(store, "a")
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(Lease("a", OWNER, 2), callbacks=[new_callback("cb")]))
    assert await store.get_callback("cb") is None


async def test_duplicate_callback_ids_are_refused_and_write_nothing(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    b = await leased(store, "b")
    before = await store.load("b")
    with pytest.raises(ValueError, match="'cb' already exists"):
        await store.commit(checkpoint(b, callbacks=[new_callback("new"), new_callback("cb")]))
    with pytest.raises(ValueError, match="'twice' already exists"):
        await store.commit(checkpoint(b, callbacks=[new_callback("twice")] * 2))
    assert await store.load("b") == before
    assert await store.get_callback("new") is None
    assert await store.get_callback("twice") is None
    assert (await callback(store, "cb")).execution_id == "a"
    await store.commit(checkpoint(lease, 4, events=[b"e4"]))  # "a" is unharmed


async def test_delivered_marks_callbacks_and_collect_skips_them(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb-1"), new_callback("cb-2"))
    await store.complete_callback(
        "cb-1", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=112.0
    )
    [first, second] = await store.collect_callbacks(lease, now=112.0)
    assert (first.callback_id, first.status, first.delivered) == ("cb-1", "SUCCEEDED", False)
    assert (second.callback_id, second.status) == ("cb-2", "PENDING")
    await store.commit(checkpoint(lease, 4, events=[b"e4"], delivered=["cb-1", "cb-1"]))
    assert (await callback(store, "cb-1")).delivered
    assert not (await callback(store, "cb-2")).delivered
    assert [c.callback_id for c in await store.collect_callbacks(lease, now=113.0)] == ["cb-2"]
    await store.commit(checkpoint(lease, 5, events=[], delivered=["cb-1"]))  # idempotent


@pytest.mark.parametrize(
    ("delivered", "message"),
    [
        (["ghost"], "'ghost' delivered: no such callback"),
        (["pending"], "'pending' delivered: it is still PENDING"),
        (["theirs"], "'theirs' delivered by execution 'a': it belongs to execution 'b'"),
    ],
)
async def test_delivered_refuses_what_cannot_be_delivered(
    store: Store, delivered: list[str], message: str
) -> None:
    lease = await with_callbacks(store, "a", new_callback("done"), new_callback("pending"))
    await with_callbacks(store, "b", new_callback("theirs"))
    for callback_id in ("done", "theirs"):
        await store.complete_callback(
            callback_id, status=CallbackStatus.SUCCEEDED, result=None, error=None, now=112.0
        )
    before = await store.load("a")
    with pytest.raises(ValueError, match=message):
        await store.commit(checkpoint(lease, 4, events=[b"e4"], delivered=["done", *delivered]))
    assert await store.load("a") == before
    assert not (await callback(store, "done")).delivered


async def test_release_wakes_at_once_for_an_answer_that_arrived_while_leased(
    store: Store,
) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    answered = await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=115.0
    )
    assert answered.status == CallbackStatus.SUCCEEDED
    assert await wake_at(store, "a") == 130.0  # leased: the lease expiry still decides
    await store.commit(checkpoint(lease, 4, events=[b"e4"], now=120.0, release=True))
    assert await wake_at(store, "a") == 120.0  # wake_at=None asked, but an answer waits

    [again] = await store.claim(owner=OWNER, now=120.0, lease_expires=150.0, limit=1)
    await store.commit(checkpoint(again, 5, events=[b"e5"], now=125.0, release=True, wake_at=500.0))
    assert await wake_at(store, "a") == 125.0  # min(requested, now)

    [third] = await store.claim(owner=OWNER, now=125.0, lease_expires=150.0, limit=1)
    await store.commit(
        checkpoint(
            third, 6, events=[b"e6"], now=126.0, delivered=["cb"], release=True, wake_at=500.0
        )
    )
    assert await wake_at(store, "a") == 500.0  # delivered: the requested time stands


async def test_release_keeps_an_earlier_timer_and_ignores_pending_callbacks(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("pending"), new_callback("done"))
    await store.commit(checkpoint(lease, 4, events=[], release=True, wake_at=200.0))
    assert await wake_at(store, "a") == 200.0  # a pending callback does not wake anyone
    [lease] = await store.claim(owner=OWNER, now=200.0, lease_expires=230.0, limit=1)
    await store.complete_callback(
        "done", status=CallbackStatus.FAILED, result=None, error=None, now=201.0
    )
    await store.commit(checkpoint(lease, 4, events=[], now=202.0, release=True, wake_at=100.0))
    assert await wake_at(store, "a") == 100.0


async def test_store_release_applies_the_same_rule(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=None, error=None, now=115.0
    )
    await store.release(lease, wake_at=None, now=118.0)
    assert await wake_at(store, "a") == 118.0


async def test_finish_cancels_pending_callbacks(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("pending"), new_callback("done"))
    await with_callbacks(store, "b", new_callback("other"))
    await store.complete_callback(
        "done", status=CallbackStatus.SUCCEEDED, result=b"\x02", error=None, now=112.0
    )
    await store.commit(
        checkpoint(lease, 4, events=[b"e4"], now=120.0, finish=Finish("SUCCEEDED", b"\x01"))
    )
    cancelled = await callback(store, "pending")
    assert (cancelled.status, cancelled.completed_at) == (CallbackStatus.CANCELLED, 120.0)
    done = await callback(store, "done")
    assert (done.status, done.result, done.completed_at) == ("SUCCEEDED", b"\x02", 112.0)
    assert (await callback(store, "other")).status == CallbackStatus.PENDING
    assert await wake_at(store, "a") is None
    with pytest.raises(CallbackAlreadyCompletedError, match="'pending' is CANCELLED") as caught:
        await store.complete_callback(
            "pending", status=CallbackStatus.SUCCEEDED, result=None, error=None, now=121.0
        )
    assert "execution 'a' has ended" in str(caught.value)
    with pytest.raises(CallbackAlreadyCompletedError, match="CANCELLED"):
        await store.heartbeat_callback("pending", now=121.0)


async def test_cancelled_marks_pending_callbacks_and_leaves_answered_ones(store: Store) -> None:
    lease = await with_callbacks(
        store, "a", new_callback("pending"), new_callback("done"), new_callback("kept")
    )
    await with_callbacks(store, "b", new_callback("other"))
    await store.complete_callback(
        "done", status=CallbackStatus.SUCCEEDED, result=b"\x02", error=None, now=112.0
    )
    done_before = await callback(store, "done")
    await store.commit(
        checkpoint(lease, 4, events=[b"e4"], now=120.0, cancelled=["pending", "done", "pending"])
    )
    cancelled = await callback(store, "pending")
    assert (cancelled.status, cancelled.completed_at, cancelled.result) == (
        CallbackStatus.CANCELLED, 120.0, None
    )  # fmt: skip
    assert cancelled.error is not None
    assert cancelled.error.type == "Callback.Cancelled"
    assert cancelled.delivered  # its operation's end is in the log: nothing to deliver
    assert await callback(store, "done") == done_before  # answered: left alone
    for callback_id in ("kept", "other"):
        assert (await callback(store, callback_id)).status == CallbackStatus.PENDING
    loaded = await store.load("a")
    assert loaded is not None
    assert loaded[1][-1] == b"e4"
    assert [c.callback_id for c in await store.collect_callbacks(lease, now=121.0)] == [
        "done", "kept"
    ]  # fmt: skip
    await store.commit(checkpoint(lease, 5, events=[], now=122.0, cancelled=["pending"]))
    assert (await callback(store, "pending")).completed_at == 120.0  # idempotent


async def test_a_cancelled_callback_does_not_wake_a_released_execution(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    await store.commit(
        checkpoint(lease, 4, events=[b"e4"], now=120.0, cancelled=["cb"], release=True)
    )
    assert await wake_at(store, "a") is None
    assert await store.next_wake_at() is None


@pytest.mark.parametrize("call", ["complete", "heartbeat"])
async def test_a_cancelled_callback_refuses_answers_without_claiming_the_execution_ended(
    store: Store, call: str
) -> None:
    lease = await with_callbacks(
        store, "a", new_callback("cb", heartbeat_timeout=60.0), new_callback("late")
    )
    await store.commit(checkpoint(lease, 4, events=[b"e4"], now=120.0, cancelled=["cb"]))
    before = await callback(store, "cb")

    def answer(callback_id: str, now: float) -> Awaitable[CallbackRow]:
        if call == "complete":
            return store.complete_callback(
                callback_id, status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=now
            )
        return store.heartbeat_callback(callback_id, now=now)

    with pytest.raises(CallbackAlreadyCompletedError, match="'cb' is CANCELLED") as caught:
        await answer("cb", 121.0)
    message = str(caught.value)
    assert "operation 'op-cb', which was waiting for it, has ended" in message
    assert "execution" not in message
    assert await callback(store, "cb") == before

    # The execution ends: its other pending callback is cancelled for that reason, while the
    # one cancelled before keeps its own.
    await store.commit(checkpoint(lease, 5, events=[b"e5"], now=130.0, finish=Finish("SUCCEEDED")))
    assert await callback(store, "cb") == before
    with pytest.raises(CallbackAlreadyCompletedError, match="because operation 'op-cb'"):
        await answer("cb", 131.0)
    with pytest.raises(CallbackAlreadyCompletedError, match="'late' is CANCELLED") as caught:
        await answer("late", 131.0)
    assert "because execution 'a' has ended" in str(caught.value)
    assert (await callback(store, "late")).error is None


async def test_a_checkpoint_may_cancel_a_callback_it_creates_and_then_finish(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("old"), new_callback("kept"))
    await store.commit(
        checkpoint(
            lease,
            4,
            events=[b"e4"],
            now=120.0,
            callbacks=[new_callback("new", created_at=120.0)],
            cancelled=["new", "old"],
            finish=Finish("FAILED", error=ErrorInfo("Boom", "boom")),
        )
    )
    for callback_id in ("new", "old"):
        found = await callback(store, callback_id)
        assert (found.status, found.completed_at, found.delivered) == ("CANCELLED", 120.0, True)
        assert found.error is not None
        assert found.error.type == "Callback.Cancelled"
    kept = await callback(store, "kept")  # cancelled by the finish, as before
    assert (kept.status, kept.error, kept.delivered) == ("CANCELLED", None, False)


@pytest.mark.parametrize(
    ("cancelled", "message"),
    [
        (["ghost"], "cannot cancel callback 'ghost': no such callback"),
        (["theirs"], "'theirs' for execution 'a': it belongs to execution 'b'"),
    ],
)
async def test_cancelled_refuses_callbacks_that_are_not_the_executions(
    store: Store, cancelled: list[str], message: str
) -> None:
    lease = await with_callbacks(store, "a", new_callback("mine"))
    await with_callbacks(store, "b", new_callback("theirs"))
    before = await store.load("a")
    with pytest.raises(ValueError, match=message):
        await store.commit(
            checkpoint(
                lease,
                4,
                events=[b"e4"],
                now=120.0,
                callbacks=[new_callback("new")],
                cancelled=["mine", *cancelled],
                release=True,
                wake_at=500.0,
            )
        )
    assert await store.load("a") == before
    assert await store.get_callback("new") is None
    for callback_id in ("mine", "theirs"):
        assert (await callback(store, callback_id)).status == CallbackStatus.PENDING


async def test_cancelled_is_fenced(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    with pytest.raises(LeaseLostError):
        await store.commit(
            checkpoint(Lease("a", OWNER, 9), 4, events=[b"e4"], now=120.0, cancelled=["cb"])
        )
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(lease, 9, events=[b"e4"], now=120.0, cancelled=["cb"]))
    assert (await callback(store, "cb")).status == CallbackStatus.PENDING


async def test_complete_makes_a_suspended_execution_due(store: Store) -> None:
    await with_callbacks(store, "a", new_callback("cb"), release=True)
    row = await store.get_execution("a")
    assert row is not None
    assert (row.lease_owner, row.wake_at) == (None, None)
    assert await store.claim(owner=OWNER, now=200.0, lease_expires=230.0, limit=1) == []
    answered = await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=200.0
    )
    assert answered == CallbackRow(
        "cb", "a", "op-cb", "SUCCEEDED", 110.0, result=b"\x01", completed_at=200.0
    )
    assert await store.get_callback("cb") == answered
    row = await store.get_execution("a")
    assert row is not None
    assert (row.wake_at, row.updated_at, row.next_seq) == (200.0, 110.0, 3)  # no event written
    assert await store.next_wake_at() == 200.0
    [lease] = await store.claim(owner=OWNER, now=200.0, lease_expires=230.0, limit=1)
    assert lease == Lease("a", OWNER, 2)


async def test_complete_brings_a_later_timer_forward(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    await store.commit(checkpoint(lease, 4, events=[], release=True, wake_at=900.0))
    error = ErrorInfo("Rejected", "not approved")
    failed = await store.complete_callback(
        "cb", status=CallbackStatus.FAILED, result=None, error=error, now=300.0
    )
    assert (failed.status, failed.error, failed.result) == ("FAILED", error, None)
    assert (await callback(store, "cb")).error == error
    assert await wake_at(store, "a") == 300.0


async def test_complete_unknown_callback(store: Store) -> None:
    with pytest.raises(CallbackNotFoundError, match="'nope'"):
        await store.complete_callback(
            "nope", status=CallbackStatus.SUCCEEDED, result=None, error=None, now=1.0
        )
    with pytest.raises(CallbackNotFoundError, match="'nope'"):
        await store.heartbeat_callback("nope", now=1.0)


@pytest.mark.parametrize("status", ["PENDING", "TIMED_OUT", "CANCELLED", "succeeded", ""])
async def test_complete_with_a_status_that_is_not_an_answer(store: Store, status: str) -> None:
    await with_callbacks(store, "a", new_callback("cb"), release=True)
    with pytest.raises(ValueError, match="SUCCEEDED or FAILED"):
        await store.complete_callback("cb", status=status, result=None, error=None, now=112.0)
    assert (await callback(store, "cb")).status == CallbackStatus.PENDING
    assert await wake_at(store, "a") is None


async def test_complete_twice_is_refused_and_keeps_the_first_answer(store: Store) -> None:
    await with_callbacks(store, "a", new_callback("cb"), release=True)
    first = await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=112.0
    )
    with pytest.raises(CallbackAlreadyCompletedError, match="'cb' is SUCCEEDED"):
        await store.complete_callback(
            "cb", status=CallbackStatus.FAILED, result=None, error=None, now=113.0
        )
    with pytest.raises(CallbackAlreadyCompletedError, match="'cb' is SUCCEEDED"):
        await store.heartbeat_callback("cb", now=113.0)
    assert await store.get_callback("cb") == first


@pytest.mark.parametrize(
    ("timeout_at", "heartbeat_timeout", "now", "deadline", "error"),
    [
        (150.0, None, 150.0, 150.0, ErrorInfo("Callback.Timeout", "callback timed out after 40 s")),
        (150.0, 15.0, 130.0, 125.0, ErrorInfo("Callback.Heartbeat", "no heartbeat for 15 s")),
        (150.0, 45.0, 160.0, 150.0, ErrorInfo("Callback.Timeout", "callback timed out after 40 s")),
        (None, 0.5, 110.5, 110.5, ErrorInfo("Callback.Heartbeat", "no heartbeat for 0.5 s")),
    ],
    ids=["timeout", "heartbeat", "timeout-first", "sub-second"],
)
@pytest.mark.parametrize("call", ["complete", "heartbeat"])
async def test_an_expired_callback_times_out_instead_of_answering(
    store: Store,
    call: str,
    timeout_at: float | None,
    heartbeat_timeout: float | None,
    now: float,
    deadline: float,
    error: ErrorInfo,
) -> None:
    new = new_callback("cb", timeout_at=timeout_at, heartbeat_timeout=heartbeat_timeout)
    await with_callbacks(store, "a", new, release=True)
    assert await wake_at(store, "a") is None
    answer = (
        store.complete_callback(
            "cb", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=now
        )
        if call == "complete"
        else store.heartbeat_callback("cb", now=now)
    )
    with pytest.raises(CallbackAlreadyCompletedError, match="'cb' is TIMED_OUT: it timed out"):
        await answer
    expired = await callback(store, "cb")
    assert (expired.status, expired.error, expired.result) == ("TIMED_OUT", error, None)
    assert expired.completed_at == deadline
    assert not expired.delivered
    assert await wake_at(store, "a") == now  # the timeout is committed and the execution due
    with pytest.raises(CallbackAlreadyCompletedError, match="already timed out"):
        await store.complete_callback(
            "cb", status=CallbackStatus.SUCCEEDED, result=None, error=None, now=now + 1
        )
    assert (await callback(store, "cb")).completed_at == deadline


async def test_complete_just_before_the_deadline_succeeds(store: Store) -> None:
    await with_callbacks(
        store, "a", new_callback("cb", timeout_at=150.0, heartbeat_timeout=10.0), release=True
    )
    done = await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=None, error=None, now=119.999
    )
    assert done.status == CallbackStatus.SUCCEEDED


async def test_heartbeat_pushes_the_deadline(store: Store) -> None:
    await with_callbacks(store, "a", new_callback("cb", heartbeat_timeout=10.0), release=True)
    beat = await store.heartbeat_callback("cb", now=118.0)
    assert (beat.status, beat.heartbeat_at, beat.heartbeat_timeout) == ("PENDING", 128.0, 10.0)
    assert await store.get_callback("cb") == beat
    row = await store.get_execution("a")
    assert row is not None
    assert (row.wake_at, row.next_seq, row.updated_at) == (None, 3, 110.0)  # nothing else
    # Without the heartbeat the callback would have timed out at 120.
    done = await store.complete_callback(
        "cb", status=CallbackStatus.SUCCEEDED, result=b"\x01", error=None, now=125.0
    )
    assert (done.status, done.heartbeat_at) == ("SUCCEEDED", 128.0)


async def test_heartbeat_without_heartbeat_timeout_changes_nothing(store: Store) -> None:
    await with_callbacks(store, "a", new_callback("cb", timeout_at=500.0), release=True)
    before = await callback(store, "cb")
    assert await store.heartbeat_callback("cb", now=300.0) == before
    assert await store.get_callback("cb") == before


async def test_collect_expires_by_the_earlier_deadline_and_skips_delivered(store: Store) -> None:
    lease = await with_callbacks(
        store,
        "a",
        new_callback("hb", created_at=100.0, timeout_at=200.0, heartbeat_timeout=20.0),  # 120
        new_callback("to", created_at=100.0, timeout_at=115.0, heartbeat_timeout=20.0),  # 115
        new_callback("tie", created_at=101.0, timeout_at=121.0, heartbeat_timeout=20.0),  # 121
        new_callback("later", created_at=102.0, timeout_at=300.0, heartbeat_timeout=60.0),
        new_callback("done", created_at=99.0),
        new_callback("gone", created_at=98.0),
    )
    for callback_id in ("done", "gone"):
        await store.complete_callback(
            callback_id, status=CallbackStatus.SUCCEEDED, result=None, error=None, now=111.0
        )
    await store.commit(checkpoint(lease, 4, events=[b"e4"], delivered=["gone"]))
    collected = await store.collect_callbacks(lease, now=125.0)
    summary = [(c.callback_id, c.status, c.error and c.error.type) for c in collected]
    assert summary == [
        ("done", "SUCCEEDED", None),
        ("hb", "TIMED_OUT", "Callback.Heartbeat"),
        ("to", "TIMED_OUT", "Callback.Timeout"),
        ("tie", "TIMED_OUT", "Callback.Timeout"),
        ("later", "PENDING", None),
    ]
    assert [c.completed_at for c in collected] == [111.0, 120.0, 115.0, 121.0, None]
    for row in collected:
        assert await store.get_callback(row.callback_id) == row  # what it returns is stored
    assert (await callback(store, "to")).error == ErrorInfo(
        "Callback.Timeout", "callback timed out after 15 s"
    )
    assert await wake_at(store, "a") == 130.0  # leased: the release rule decides
    await store.commit(checkpoint(lease, 5, events=[], now=126.0, release=True, wake_at=400.0))
    assert await wake_at(store, "a") == 126.0


async def test_collect_is_fenced_and_writes_nothing(store: Store) -> None:
    await with_callbacks(store, "a", new_callback("cb", timeout_at=115.0))
    for bad in (Lease("a", OWNER, 2), Lease("a", "w2", 1), Lease("zzz", OWNER, 1)):
        with pytest.raises(LeaseLostError):
            await store.collect_callbacks(bad, now=200.0)
    assert (await callback(store, "cb")).status == CallbackStatus.PENDING


async def test_collect_orders_ties_by_callback_id_and_returns_nothing_when_empty(
    store: Store,
) -> None:
    empty = await leased(store, "empty")
    assert await store.collect_callbacks(empty, now=110.0) == []
    lease = await with_callbacks(
        store, "a", new_callback("b"), new_callback("c", created_at=109.0), new_callback("a")
    )
    collected = await store.collect_callbacks(lease, now=110.0)
    assert [c.callback_id for c in collected] == ["c", "a", "b"]


# --- child executions (ctx.invoke) -----------------------------------------------------------


def child_row(
    execution_id: str, callback_id: str, *, parent: str = "p", **fields: object
) -> ExecutionRow:
    """A child as ``ctx.invoke`` starts it: unleased, due at once, answering ``callback_id``."""
    values: dict[str, object] = {
        "parent_id": parent,
        "parent_callback_id": callback_id,
        "wake_at": 110.0,
        "created_at": 110.0,
        "updated_at": 110.0,
        "workflow": "child-wf",
        "seed": 7,
    }
    values.update(fields)
    return make_row(execution_id, **values)


async def invoking(
    store: Store,
    parent: str = "p",
    *children: str,
    release: bool = True,
    wake: float | None = None,
    timeout_at: float | None = None,
) -> Lease:
    """A parent (3 events) whose last checkpoint started ``children``, one callback each.

    Child ``c`` answers callback ``cb-c``; the parent releases with ``wake_at=wake`` unless
    ``release`` is false (then it keeps its lease until t=130).
    """
    lease = await leased(store, parent)
    await store.commit(
        checkpoint(
            lease,
            callbacks=[new_callback(f"cb-{c}", timeout_at=timeout_at) for c in children],
            children=[
                NewChild(child_row(c, f"cb-{c}", parent=parent), [b"%s-start" % c.encode()])
                for c in children
            ],
            release=release,
            wake_at=wake,
        )
    )
    return lease


async def claim_one(store: Store, execution_id: str, now: float = 110.0) -> Lease:
    """Claim the due ``execution_id``; the others claimed with it are released, still due."""
    leases = await store.claim(owner=OWNER, now=now, lease_expires=now + 30.0, limit=100)
    mine = [lease for lease in leases if lease.execution_id == execution_id]
    for other in leases:
        if other.execution_id != execution_id:
            await store.release(other, wake_at=now, now=now)
    assert mine, f"{execution_id!r} was not due"
    return mine[0]


async def row_of(store: Store, execution_id: str) -> ExecutionRow:
    row = await store.get_execution(execution_id)
    assert row is not None
    return row


async def test_create_stores_parent_callback_id(store: Store) -> None:
    row = make_row("c", parent_id="p", parent_callback_id="cb-c")
    stored, _ = await store.create_execution(row, [])
    assert stored.parent_callback_id == "cb-c"
    assert await store.get_execution("c") == stored
    [listed] = await store.list_executions(ListQuery(parent_id="p"))
    assert listed == stored
    assert (await store.load("c")) == (stored, [])


async def test_checkpoint_creates_children_after_their_callbacks(store: Store) -> None:
    lease = await leased(store, "p")
    first = child_row("c1", "cb-c1", deadline=900.0, retention=60.0)
    second = child_row("c2", "cb-c2", next_seq=99, created_at=111.0)
    await store.commit(
        checkpoint(
            lease,
            callbacks=[new_callback("cb-c1"), new_callback("cb-c2")],
            children=[NewChild(first, [b"c1-start"]), NewChild(second, [b"x", b"y"])],
        )
    )
    assert await store.load("c1") == (replace(first, next_seq=1), [b"c1-start"])
    assert await store.load("c2") == (replace(second, next_seq=2), [b"x", b"y"])
    parent = await row_of(store, "p")
    assert (parent.next_seq, parent.lease_owner) == (3, OWNER)  # the parent's own write stands
    listed = await store.list_executions(ListQuery(parent_id="p"))
    assert [row.execution_id for row in listed] == ["c2", "c1"]
    assert (await callback(store, "cb-c1")).status == CallbackStatus.PENDING
    first.status = "FAILED"  # the store keeps its own copy
    assert (await row_of(store, "c1")).status == "RUNNING"
    leases = await store.claim(owner="w2", now=110.0, lease_expires=140.0, limit=10)
    assert sorted(lease.execution_id for lease in leases) == ["c1", "c2"]


async def test_child_creation_is_idempotent(store: Store) -> None:
    await store.create_execution(make_row("taken", workflow="other"), [b"t1"])
    lease = await leased(store, "p")
    await store.commit(
        checkpoint(
            lease,
            callbacks=[new_callback("cb-c")],
            children=[NewChild(child_row("c", "cb-c"), [b"c-start"])],
        )
    )
    child_lease = await claim_one(store, "c")
    await store.commit(checkpoint(child_lease, 2, events=[b"c-2"]))
    before_child, before_taken = await store.load("c"), await store.load("taken")
    # A replayed start (the callback now exists) and an id that is already used elsewhere.
    await store.commit(
        checkpoint(
            lease,
            4,
            events=[b"e4"],
            callbacks=[new_callback("cb-t")],
            children=[
                NewChild(child_row("c", "cb-c", workflow="changed"), [b"again"]),
                NewChild(child_row("taken", "cb-t"), [b"x"]),
            ],
        )
    )
    assert await store.load("c") == before_child
    assert await store.load("taken") == before_taken
    assert (await row_of(store, "p")).next_seq == 4


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (child_row("c", "ghost"), "names callback 'ghost', which does not exist"),
        (child_row("c", "theirs"), "names callback 'theirs' of execution 'other'"),
        (child_row("c", "cb-new", parent_callback_id=None), "has no parent_callback_id"),
        (child_row("c", "cb-new", parent="other"), "has parent_id 'other'"),
        (child_row("c", "cb-new", seed=2**64), "seed"),
    ],
    ids=["unknown-callback", "foreign-callback", "no-callback", "wrong-parent", "seed"],
)
async def test_a_child_that_names_no_callback_of_its_parent_is_refused(
    store: Store, child: ExecutionRow, message: str
) -> None:
    await with_callbacks(store, "other", new_callback("theirs"))
    lease = await leased(store, "p")
    before = await store.load("p")
    good = NewChild(child_row("ok", "cb-new"), [b"ok"])
    with pytest.raises(ValueError, match=message):
        await store.commit(
            checkpoint(
                lease,
                callbacks=[new_callback("cb-new")],
                children=[good, NewChild(child, [b"c-start"])],
                finish=Finish("SUCCEEDED"),
            )
        )
    assert await store.load("p") == before
    assert await store.get_execution("c") is None
    assert await store.get_execution("ok") is None
    assert await store.get_callback("cb-new") is None
    await store.commit(checkpoint(lease))  # nothing moved: the next write starts at 2


async def test_a_child_may_name_an_existing_callback_of_its_parent(store: Store) -> None:
    lease = await with_callbacks(store, "p", new_callback("cb-c"))
    await store.commit(
        checkpoint(lease, 4, events=[], children=[NewChild(child_row("c", "cb-c"), [b"s"])])
    )
    assert (await row_of(store, "c")).parent_callback_id == "cb-c"


@pytest.mark.parametrize(
    ("finish", "answer"),
    [
        (Finish("SUCCEEDED", b"\x01"), ("SUCCEEDED", b"\x01", None)),
        (
            Finish("FAILED", b"\xc0", ErrorInfo("ValueError", "boom", ["trace"])),
            ("FAILED", None, ErrorInfo("ValueError", "boom", ["trace"])),
        ),
        (
            Finish("TIMED_OUT"),
            ("FAILED", None, ErrorInfo("TIMED_OUT", "child execution c ended TIMED_OUT")),
        ),
        (
            Finish("STOPPED"),
            ("FAILED", None, ErrorInfo("STOPPED", "child execution c ended STOPPED")),
        ),
    ],
    ids=["succeeded", "failed", "timed-out-without-error", "stopped-without-error"],
)
async def test_a_child_finish_answers_its_parent_and_makes_it_due(
    store: Store, finish: Finish, answer: tuple[str, bytes | None, ErrorInfo | None]
) -> None:
    await invoking(store, "p", "c", "d", wake=900.0)
    assert await wake_at(store, "p") == 900.0
    child = await claim_one(store, "c")
    await store.commit(checkpoint(child, 2, events=[b"c-end"], now=200.0, finish=finish))
    answered = await callback(store, "cb-c")
    assert (answered.status, answered.result, answered.error) == answer
    assert (answered.completed_at, answered.delivered) == (200.0, False)
    assert (await callback(store, "cb-d")).status == CallbackStatus.PENDING
    assert await wake_at(store, "p") == 200.0  # min(900, now)
    row = await row_of(store, "c")
    assert (row.status, row.ended_at) == (finish.status, 200.0)
    assert (await row_of(store, "p")).status == "RUNNING"
    leases = await store.claim(owner="w2", now=200.0, lease_expires=230.0, limit=10)
    assert sorted(lease.execution_id for lease in leases) == ["d", "p"]


async def test_a_child_finish_leaves_a_leased_parent_to_the_release_rule(store: Store) -> None:
    parent = await invoking(store, "p", "c", release=False)
    child = await claim_one(store, "c")
    await store.commit(
        checkpoint(child, 2, events=[b"c-end"], now=115.0, finish=Finish("SUCCEEDED", b"\x01"))
    )
    assert (await callback(store, "cb-c")).status == CallbackStatus.SUCCEEDED
    assert await wake_at(store, "p") == 130.0  # leased: the lease expiry still decides
    await store.commit(checkpoint(parent, 4, events=[b"e4"], now=120.0, release=True))
    assert await wake_at(store, "p") == 120.0  # the answer waits: due at once


async def test_a_child_finish_leaves_a_callback_that_is_no_longer_pending(store: Store) -> None:
    parent = await invoking(store, "p", "c", release=False, timeout_at=150.0)
    [timed_out] = await store.collect_callbacks(parent, now=150.0)
    assert timed_out.status == CallbackStatus.TIMED_OUT
    await store.commit(
        checkpoint(parent, 4, events=[b"e4"], now=151.0, delivered=["cb-c"], release=True)
    )
    assert await wake_at(store, "p") is None
    child = await claim_one(store, "c", now=110.0)
    await store.commit(
        checkpoint(child, 2, events=[b"c-end"], now=160.0, finish=Finish("SUCCEEDED", b"\x01"))
    )
    assert await store.get_callback("cb-c") == replace(timed_out, delivered=True)
    assert await wake_at(store, "p") is None
    assert (await row_of(store, "c")).status == "SUCCEEDED"


async def test_a_child_finish_after_the_deadline_times_the_callback_out(store: Store) -> None:
    await invoking(store, "p", "c", timeout_at=150.0)
    child = await claim_one(store, "c")
    await store.commit(
        checkpoint(child, 2, events=[b"c-end"], now=160.0, finish=Finish("SUCCEEDED", b"\x01"))
    )
    expired = await callback(store, "cb-c")
    assert (expired.status, expired.result, expired.completed_at) == ("TIMED_OUT", None, 150.0)
    assert expired.error is not None
    assert expired.error.type == "Callback.Timeout"
    assert await wake_at(store, "p") == 160.0


async def test_a_child_finish_leaves_an_ended_parent_alone(store: Store) -> None:
    parent = await invoking(store, "p", "c", release=False)
    await store.commit(checkpoint(parent, 4, events=[b"e4"], now=112.0, finish=Finish("FAILED")))
    child = await claim_one(store, "c")
    await store.commit(
        checkpoint(child, 2, events=[b"c-end"], now=120.0, finish=Finish("SUCCEEDED"))
    )
    cancelled = await callback(store, "cb-c")
    assert (cancelled.status, cancelled.completed_at) == (CallbackStatus.CANCELLED, 112.0)
    row = await row_of(store, "p")
    assert (row.status, row.wake_at, row.ended_at) == ("FAILED", None, 112.0)


# --- stop -----------------------------------------------------------------------------------

STOP_ERROR = ErrorInfo("Stopped", "stopped by ops")


async def stop(store: Store, execution_id: str, now: float = 120.0) -> list[str]:
    return await store.stop(execution_id, now=now, error=STOP_ERROR, event=b"stopped")


async def events_of(store: Store, execution_id: str) -> list[bytes]:
    loaded = await store.load(execution_id)
    assert loaded is not None
    return loaded[1]


async def test_stop_unknown_execution(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError, match="'nope'"):
        await stop(store, "nope")


async def test_stop_leaves_an_ended_execution_alone(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("cb"))
    await store.commit(checkpoint(lease, 4, events=[b"e4"], finish=Finish("SUCCEEDED", b"\x01")))
    before = await store.load("a")
    assert await stop(store, "a") == []
    assert await store.load("a") == before


async def test_stop_a_running_execution_fences_its_worker(store: Store) -> None:
    lease = await with_callbacks(store, "a", new_callback("pending"), new_callback("done"))
    await store.complete_callback(
        "done", status=CallbackStatus.SUCCEEDED, result=b"\x02", error=None, now=112.0
    )
    await with_callbacks(store, "other", new_callback("theirs"))
    assert await stop(store, "a", now=120.0) == ["a"]
    assert await events_of(store, "a") == [b"e1", b"e2", b"e3", b"stopped"]
    assert await store.get_execution("a") == replace(
        make_row("a"),
        status="STOPPED",
        error=STOP_ERROR,
        ended_at=120.0,
        updated_at=120.0,
        lease_epoch=2,
        next_seq=4,
    )
    cancelled = await callback(store, "pending")
    assert (cancelled.status, cancelled.completed_at) == (CallbackStatus.CANCELLED, 120.0)
    done = await callback(store, "done")
    assert (done.status, done.result, done.completed_at) == ("SUCCEEDED", b"\x02", 112.0)
    assert (await callback(store, "theirs")).status == CallbackStatus.PENDING
    # The worker that held the lease has every later write refused.
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(lease, 4, events=[b"e4"], finish=Finish("SUCCEEDED")))
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(lease, 5, events=[b"e5"]))
    with pytest.raises(LeaseLostError):
        await store.collect_callbacks(lease, now=121.0)
    assert await store.renew([lease], lease_expires=300.0) == ["a"]
    await store.release(lease, wake_at=1.0, now=121.0)
    assert await events_of(store, "a") == [b"e1", b"e2", b"e3", b"stopped"]
    assert await wake_at(store, "a") is None
    assert await store.claim(owner="w2", now=10_000.0, lease_expires=10_030.0, limit=10) == [
        Lease("other", "w2", 2, taken_over=True)
    ]
    assert await stop(store, "a", now=130.0) == []  # already stopped


async def test_stop_a_suspended_execution(store: Store) -> None:
    await store.create_execution(make_row("a", wake_at=500.0), [b"e1"])
    assert await stop(store, "a") == ["a"]
    row = await row_of(store, "a")
    assert (row.status, row.wake_at, row.lease_epoch, row.next_seq) == ("STOPPED", None, 1, 2)
    assert await events_of(store, "a") == [b"e1", b"stopped"]
    assert await store.next_wake_at() is None


async def test_stop_takes_running_descendants_two_levels_deep(store: Store) -> None:
    await invoking(store, "r", "a", "b", release=False)
    await store.commit(
        checkpoint(
            await claim_one(store, "a"),
            2,
            events=[b"a-2"],
            callbacks=[new_callback("cb-a1")],
            children=[NewChild(child_row("a1", "cb-a1", parent="a"), [b"a1-start"])],
            release=True,
        )
    )
    # "b" ended while its own child "b1" runs on: the walk goes through it.
    b = await claim_one(store, "b")
    await store.commit(
        checkpoint(
            b,
            2,
            events=[b"b-2"],
            callbacks=[new_callback("cb-b1")],
            children=[NewChild(child_row("b1", "cb-b1", parent="b"), [b"b1-start"])],
            finish=Finish("SUCCEEDED", b"\x0b"),
        )
    )
    a1 = await claim_one(store, "a1")
    await store.create_execution(make_row("unrelated", wake_at=100.0), [])
    before_b = await store.load("b")
    epochs = {i: (await row_of(store, i)).lease_epoch for i in ("r", "a", "a1", "b1")}

    assert await stop(store, "r", now=140.0) == ["r", "a", "a1", "b1"]

    for execution_id, seq in (("r", 4), ("a", 3), ("a1", 2), ("b1", 2)):
        row = await row_of(store, execution_id)
        assert (row.status, row.error, row.ended_at, row.next_seq) == (
            "STOPPED", STOP_ERROR, 140.0, seq
        )  # fmt: skip
        assert (row.wake_at, row.lease_owner, row.lease_expires) == (None, None, None)
        assert row.lease_epoch == epochs[execution_id] + 1
        assert (await events_of(store, execution_id))[-1] == b"stopped"
    assert await store.load("b") == before_b
    # Callbacks of stopped parents are cancelled, not answered by their stopped children.
    for callback_id in ("cb-a", "cb-a1"):
        cancelled = await callback(store, callback_id)
        assert (cancelled.status, cancelled.error) == (CallbackStatus.CANCELLED, None)
    assert (await callback(store, "cb-b")).status == CallbackStatus.SUCCEEDED  # b's finish
    assert (await callback(store, "cb-b1")).status == CallbackStatus.CANCELLED  # b ended first
    assert (await row_of(store, "unrelated")).status == "RUNNING"
    with pytest.raises(LeaseLostError):
        await store.commit(checkpoint(a1, 2, events=[b"a1-2"]))
    assert await stop(store, "a", now=150.0) == []


@pytest.mark.parametrize("parent_leased", [False, True], ids=["suspended", "leased"])
async def test_stopping_a_child_answers_its_parent(store: Store, parent_leased: bool) -> None:
    parent = await invoking(store, "p", "c", "d", release=not parent_leased, wake=900.0)
    await claim_one(store, "c")
    await store.commit(
        checkpoint(
            await claim_one(store, "d"),
            2,
            events=[],
            callbacks=[new_callback("cb-d1")],
            children=[NewChild(child_row("d1", "cb-d1", parent="d"), [b"d1-start"])],
            release=True,
        )
    )
    assert await stop(store, "c", now=200.0) == ["c"]
    failed = await callback(store, "cb-c")
    assert (failed.status, failed.result, failed.error) == ("FAILED", None, STOP_ERROR)
    assert (failed.completed_at, failed.delivered) == (200.0, False)
    assert (await callback(store, "cb-d")).status == CallbackStatus.PENDING
    row = await row_of(store, "p")
    assert (row.status, row.next_seq) == ("RUNNING", 3)
    assert row.wake_at == (130.0 if parent_leased else 200.0)

    assert await stop(store, "d", now=210.0) == ["d", "d1"]
    assert (await callback(store, "cb-d")).status == CallbackStatus.FAILED
    assert (await callback(store, "cb-d1")).status == CallbackStatus.CANCELLED
    if parent_leased:
        await store.commit(checkpoint(parent, 4, events=[], now=220.0, release=True))
        assert await wake_at(store, "p") == 220.0  # answers wait: the release rule decides


async def test_stop_leaves_a_parent_callback_that_is_no_longer_pending(store: Store) -> None:
    parent = await invoking(store, "p", "c", release=False, timeout_at=150.0)
    [timed_out] = await store.collect_callbacks(parent, now=150.0)
    await store.commit(checkpoint(parent, 4, events=[], now=151.0, release=True, wake_at=900.0))
    assert await wake_at(store, "p") == 151.0  # the timeout waits to be delivered
    parent = await claim_one(store, "p", now=151.0)
    await store.commit(
        checkpoint(parent, 4, events=[], now=152.0, delivered=["cb-c"], release=True, wake_at=900.0)
    )
    assert await stop(store, "c", now=160.0) == ["c"]
    assert await store.get_callback("cb-c") == replace(timed_out, delivered=True)
    assert await wake_at(store, "p") == 900.0


# --- purge ----------------------------------------------------------------------------------


async def ended(
    store: Store,
    execution_id: str,
    ended_at: float,
    *,
    status: str = "SUCCEEDED",
    retention: float | None = None,
) -> None:
    """Store an execution that ended at ``ended_at``, with two events."""
    row = make_row(execution_id, status=status, ended_at=ended_at, retention=retention)
    await store.create_execution(row, [b"%s-1" % execution_id.encode(), b"end"])


async def finished(store: Store, execution_id: str, *, now: float = 120.0) -> None:
    """A leased execution with callbacks ``<id>-pending`` and ``<id>-done``, finished at ``now``."""
    lease = await leased(store, execution_id)
    pending, done = f"{execution_id}-pending", f"{execution_id}-done"
    await store.commit(checkpoint(lease, callbacks=[new_callback(pending), new_callback(done)]))
    await store.complete_callback(done, status="SUCCEEDED", result=b"\x01", error=None, now=111.0)
    await store.commit(checkpoint(lease, 4, events=[b"e4"], now=now, finish=Finish("SUCCEEDED")))


async def test_purge_without_a_criterion_deletes_nothing(store: Store) -> None:
    await ended(store, "old", 1.0, retention=1.0)
    assert await store.purge() == []
    assert await store.purge(finished_before=None, expired_at=None) == []
    assert await store.get_execution("old") is not None


async def test_purge_of_an_empty_store(store: Store) -> None:
    assert await store.purge(finished_before=1e12, expired_at=1e12) == []
    assert await store.list_executions(ListQuery()) == []


async def test_purge_finished_before_is_inclusive(store: Store) -> None:
    await ended(store, "before", 199.5)
    await ended(store, "at", 200.0, status="FAILED")
    await ended(store, "after", 200.5, status="STOPPED")
    assert await store.purge(finished_before=200.0) == ["before", "at"]
    assert await store.get_execution("before") is None
    assert await store.get_execution("at") is None
    assert await store.get_execution("after") is not None
    assert await store.purge(finished_before=200.0) == []  # nothing left to delete


async def test_purge_by_retention(store: Store) -> None:
    await ended(store, "kept-long", 100.0, retention=500.0)  # expires at 600
    await ended(store, "expired", 100.0, retention=50.0)  # expires at 150
    await ended(store, "exactly", 120.0, retention=80.0)  # expires at 200
    await ended(store, "forever", 1.0)  # no retention: only finished_before deletes it
    await ended(store, "later", 250.0, retention=1.0, status="TIMED_OUT")
    assert await store.purge(expired_at=200.0) == ["expired", "exactly"]
    remaining = {row.execution_id for row in await store.list_executions(ListQuery())}
    assert remaining == {"kept-long", "forever", "later"}
    assert await store.purge(expired_at=1e12) == ["kept-long", "later"]
    assert await store.get_execution("forever") is not None


async def test_purge_either_criterion_deletes_and_ids_come_by_end_then_id(store: Store) -> None:
    await ended(store, "b", 50.0)
    await ended(store, "a", 50.0)
    await ended(store, "z", 10.0, retention=20.0)  # by finished_before and by retention
    await ended(store, "y", 300.0, retention=5.0)  # by retention only
    await ended(store, "x", 300.0, retention=500.0)  # by neither
    assert await store.purge(finished_before=60.0, expired_at=305.0) == ["z", "a", "b", "y"]
    assert [row.execution_id for row in await store.list_executions(ListQuery())] == ["x"]


async def test_purge_never_deletes_running_executions(store: Store) -> None:
    # Odd but possible rows: RUNNING with an old ended_at and a retention.
    await store.create_execution(make_row("run", ended_at=1.0, retention=1.0), [b"r1"])
    lease = await leased(store, "leased")
    await store.commit(checkpoint(lease, callbacks=[new_callback("cb-leased")]))
    await ended(store, "done", 1.0, retention=1.0)
    assert await store.purge(finished_before=1e12, expired_at=1e12) == ["done"]
    assert await events_of(store, "run") == [b"r1"]
    assert await events_of(store, "leased") == [b"e1", b"e2", b"e3"]
    assert (await callback(store, "cb-leased")).status == CallbackStatus.PENDING
    # The lease still works: nothing of the running execution was touched.
    await store.commit(checkpoint(lease, 4, events=[b"e4"]))


async def test_purge_ignores_an_ended_status_without_ended_at(store: Store) -> None:
    await store.create_execution(make_row("odd", status="FAILED", retention=1.0), [])
    assert await store.purge(finished_before=1e12, expired_at=1e12) == []
    assert await store.get_execution("odd") is not None


async def test_purge_deletes_events_and_callbacks_and_leaves_the_rest(store: Store) -> None:
    await finished(store, "gone", now=120.0)
    await finished(store, "stays", now=500.0)
    before = await store.load("stays")
    kept = [await callback(store, i) for i in ("stays-pending", "stays-done")]
    assert (await callback(store, "gone-pending")).status == CallbackStatus.CANCELLED

    assert await store.purge(finished_before=120.0) == ["gone"]

    assert await store.load("gone") is None
    assert await store.get_execution("gone") is None
    assert await store.get_callback("gone-pending") is None
    assert await store.get_callback("gone-done") is None
    with pytest.raises(CallbackNotFoundError):
        await store.complete_callback(
            "gone-pending", status="SUCCEEDED", result=None, error=None, now=130.0
        )
    assert await store.load("stays") == before
    assert [await callback(store, i) for i in ("stays-pending", "stays-done")] == kept
    # The purged id is free again, without leftovers from its first life.
    await store.create_execution(make_row("gone"), [b"new"])
    assert await events_of(store, "gone") == [b"new"]
    again = await leased(store, "again")
    await store.commit(checkpoint(again, callbacks=[new_callback("gone-done")]))
    assert (await callback(store, "gone-done")).execution_id == "again"


async def test_purging_a_finished_child_keeps_its_running_parent(store: Store) -> None:
    await invoking(store, "p", "c", "d", wake=900.0)
    child = await claim_one(store, "c")
    await store.commit(
        checkpoint(
            child,
            2,
            events=[b"c-2"],
            callbacks=[new_callback("c-own")],
            finish=Finish("SUCCEEDED", b"\x0c"),
            now=120.0,
        )
    )
    parent_before = await store.load("p")
    answered = await callback(store, "cb-c")
    assert (answered.execution_id, answered.status) == ("p", CallbackStatus.SUCCEEDED)

    assert await store.purge(finished_before=1e12, expired_at=1e12) == ["c"]

    assert await store.load("c") is None
    assert await store.get_callback("c-own") is None
    assert await store.load("p") == parent_before
    assert await store.get_callback("cb-c") == answered  # the parent's row, not the child's
    assert (await callback(store, "cb-d")).status == CallbackStatus.PENDING
    assert (await row_of(store, "d")).status == "RUNNING"
    # The parent still collects and delivers the answer of its deleted child.
    parent = await claim_one(store, "p", now=120.0)
    collected = await store.collect_callbacks(parent, now=120.0)
    assert [(c.callback_id, c.result) for c in collected] == [("cb-c", b"\x0c"), ("cb-d", None)]
    await store.commit(checkpoint(parent, 4, events=[b"c-done"], now=121.0, delivered=["cb-c"]))
    assert (await callback(store, "cb-c")).delivered


# --- lifecycle and URLs ---------------------------------------------------------------------


async def test_close_is_idempotent_and_closed_store_refuses(store: Store) -> None:
    await store.create_execution(make_row("a"), [])
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get_execution("a")
    with pytest.raises(StoreError, match="not open"):
        await store.create_execution(make_row("b"), [])
    with pytest.raises(StoreError, match="not open"):
        await store.purge(finished_before=1e12)
    with pytest.raises(StoreError, match="not open"):
        await store.commit(Checkpoint(Lease("a", "w", 1), 1, [b"x"], now=1.0))
    await store.open()
    assert await store.get_execution("a") is not None


def test_store_protocol_is_implemented(tmp_path: Path) -> None:
    assert isinstance(MemoryStore(), Store)
    assert isinstance(SQLiteStore(tmp_path / "x.db"), Store)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("orders.db", "orders.db"),
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("/abs/other.db", "/abs/other.db"),
    ],
)
def test_open_store_sqlite(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path


async def test_open_store_sqlite_url_options(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/o.db?writer=process&synchronous=normal")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/o.db"
    await store.open()
    try:
        assert store._process is not None  # the writer process runs
        row = ExecutionRow("e", "wf", "RUNNING", b"\x90", 1.0, 1.0, seed=1)
        assert (await store.create_execution(row, [b"s"]))[1] is True
    finally:
        await store.close()
    with closing(sqlite3.connect(tmp_path / "o.db")) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///o.db?writer=fork", "invalid SQLite URL option .*writer must be one of"),
        ("sqlite:///o.db?busy_timeout=soon", "invalid SQLite URL option"),
        ("sqlite:///o.db?journal=delete", "unknown SQLite URL option 'journal'"),
        ("sqlite:///:memory:?writer=process", "in-memory store takes no SQLite options"),
    ],
)
def test_open_store_refuses_bad_sqlite_url_options(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url)


@pytest.mark.parametrize("url", [":memory:", "memory://"])
def test_open_store_memory(url: str) -> None:
    assert isinstance(open_store(url), MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:secret@h/db", "PostgreSQL store is not available"),
        ("postgres://h/db", "PostgreSQL store is not available"),
        ("mysql://u:secret@h/db", "'mysql'"),
        ("sqlite://relative.db", "three slashes"),
    ],
)
def test_open_store_refuses(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)
