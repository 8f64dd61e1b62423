"""The one store contract, run against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from durable.errors import LeaseLostError, StoreError
from durable.stores import (
    Checkpoint,
    ExecutionRow,
    Finish,
    Lease,
    ListQuery,
    MemoryStore,
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
