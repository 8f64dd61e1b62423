"""The one store contract, run against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from durable.errors import (
    CallbackAlreadyCompletedError,
    CallbackNotFoundError,
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
    SQLiteStore,
    Store,
    open_store,
)
from durable.types import ErrorInfo

OWNER = "worker-1"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "t.db")
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
    row = make_row("a", wake_at=100.0, parent_id="p", deadline=500.0, retention=60.0)
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


# --- lifecycle and URLs ---------------------------------------------------------------------


async def test_close_is_idempotent_and_closed_store_refuses(store: Store) -> None:
    await store.create_execution(make_row("a"), [])
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get_execution("a")
    with pytest.raises(StoreError, match="not open"):
        await store.create_execution(make_row("b"), [])
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
