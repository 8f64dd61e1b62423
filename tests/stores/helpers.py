"""Helpers shared by the SQLite store's tests."""

from __future__ import annotations

import asyncio

import pytest

from durable.stores import ExecutionRow, Lease, SQLiteStore
from durable.stores._sqlite_process import ProcessWriter
from durable.stores.base import Checkpoint

OWNER = "worker-1"


def make_row(execution_id: str, **fields: object) -> ExecutionRow:
    """A running execution's row, with ``fields`` set on it."""
    row = ExecutionRow(execution_id, "wf", "RUNNING", b"\x90", 100.0, 100.0, seed=1)
    for name, value in fields.items():
        setattr(row, name, value)
    return row


async def lease_many(store: SQLiteStore, count: int) -> list[Lease]:
    """Create ``count`` executions at once (``x0000``, ``x0001``...), then lease them all."""
    await asyncio.gather(
        *(
            store.create_execution(make_row(f"x{i:04d}", wake_at=float(i)), [b"start"])
            for i in range(count)
        )
    )
    return await store.claim(owner=OWNER, now=1e9, lease_expires=2e9, limit=count)


def send_first_checkpoints(store: SQLiteStore, leases: list[Lease]) -> list[asyncio.Future[None]]:
    """A first checkpoint (one event, sequence 2) for each lease, sent without waiting."""
    return [
        asyncio.ensure_future(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)))
        for lease in leases
    ]


async def assert_next_seq(store: SQLiteStore, leases: list[Lease], next_seq: int) -> None:
    """Every leased execution has ``next_seq`` events."""
    for lease in leases:
        row = await store.get_execution(lease.execution_id)
        assert row is not None, lease.execution_id
        assert row.next_seq == next_seq, (lease.execution_id, row.next_seq)


def hold_starts_before_ready(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[int]:
    """Hold every writer process start once its child is spawned, before it says it is
    ready (forever: the test cancels or closes); the queue gets each held child's pid."""
    spawned: asyncio.Queue[int] = asyncio.Queue()
    real_read = ProcessWriter._read

    async def read(self: ProcessWriter) -> bytes | None:
        if self.pid is not None and self._replies is None:
            spawned.put_nowait(self.pid)
            await asyncio.Event().wait()
        return await real_read(self)

    monkeypatch.setattr(ProcessWriter, "_read", read)
    return spawned
