"""The SQLite store's default writer, ``"auto"``: the thread, until a batch shows many
executions checkpointing at once; then the writer process, started in the background."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durable.stores import Checkpoint, SQLiteStore, open_store
from durable.stores import _sqlite_process as sp
from durable.stores._sqlite_process import ProcessWriter
from durable.stores.sqlite import AUTO_START, can_spawn_writer
from tests.helpers import children_of, reaped
from tests.stores.helpers import (
    assert_next_seq,
    hold_starts_before_ready,
    lease_many,
    make_row,
    send_first_checkpoints,
)

SPAWN = "durable.stores._sqlite_process.asyncio.create_subprocess_exec"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(tmp_path / "t.db")
    await backend.open()
    yield backend
    await backend.close()


async def started(store: SQLiteStore) -> None:
    """Wait for the start under way, if any, to finish."""
    if store._starting is not None:
        await asyncio.shield(store._starting)


def count_spawns(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the writer processes the store tries to start (and start them)."""
    calls: list[int] = []
    real = asyncio.create_subprocess_exec

    async def spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(SPAWN, spawn)
    return calls


def test_auto_is_the_default_and_the_url_accepts_every_writer(tmp_path: Path) -> None:
    assert SQLiteStore(tmp_path / "t.db")._writer_mode == "auto"
    for writer in ("auto", "thread", "process"):
        store = open_store(f"sqlite:///{tmp_path}/t.db?writer={writer}")
        assert isinstance(store, SQLiteStore)
        assert store._writer_mode == writer


async def test_a_few_executions_at_a_time_start_no_process(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawns = count_spawns(monkeypatch)
    leases = await lease_many(store, AUTO_START - 1)  # one batch of creations, one short
    await asyncio.gather(*send_first_checkpoints(store, leases))
    for lease in leases:  # one at a time, as one sequential workflow writes
        await store.commit(Checkpoint(lease, 3, [b"b"], now=2.0))
    assert (store._starting, store._process, spawns) == (None, None, [])
    assert store.writer_pid is None
    await assert_next_seq(store, leases, 3)


async def test_a_large_batch_starts_the_process_and_the_next_batches_go_there(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 300)  # 300 creations in one batch
    await started(store)
    process = store._process
    assert process is not None
    assert process.pid is not None
    assert store.writer_pid == process.pid
    await asyncio.gather(*send_first_checkpoints(store, leases))
    assert 3 <= process.batches < 10  # batches of at most 128, not 300
    await assert_next_seq(store, leases, 2)
    for lease in leases[:3]:
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert loaded[1] == [b"start", b"a"]
    pid = process.pid
    await store.close()
    assert reaped(pid)


async def test_writes_go_on_on_the_thread_while_the_process_starts(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = asyncio.Event()
    real_read = ProcessWriter._read

    async def read(self: ProcessWriter) -> bytes | None:
        if self._replies is None:  # the start's "ready" answer: hold it back
            await ready.wait()
        return await real_read(self)

    monkeypatch.setattr(ProcessWriter, "_read", read)
    leases = await lease_many(store, 200)
    assert store._starting is not None
    assert store._process is None
    thread_batches = store._thread_batches
    await asyncio.gather(*send_first_checkpoints(store, leases))  # not held up by the start
    assert store._thread_batches == thread_batches + 1
    await assert_next_seq(store, leases, 2)
    ready.set()
    await started(store)
    assert store._process is not None
    await asyncio.gather(*(store.commit(Checkpoint(lease, 3, [b"b"], now=2.0)) for lease in leases))
    assert store._process.batches == 2  # 200 checkpoints: 128 + 72
    assert store._thread_batches == thread_batches + 1
    await assert_next_seq(store, leases, 3)


async def test_close_while_the_process_starts_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = hold_starts_before_ready(monkeypatch)  # started, not yet ready: close the store now
    monkeypatch.setattr(sp, "_START_TIMEOUT", 3600.0)  # close() cancels it, never waits it out
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    leases = await lease_many(store, AUTO_START)
    pid = await spawned.get()
    pending = send_first_checkpoints(store, leases)
    await asyncio.sleep(0)  # they are queued
    await store.close()
    await asyncio.gather(*pending)  # queued before close(): committed by the thread
    assert reaped(pid)
    assert (store._starting, store._process) == (None, None)
    await store.open()
    try:
        await assert_next_seq(store, leases, 2)
    finally:
        await store.close()


async def test_a_process_that_cannot_start_leaves_the_thread_for_good(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def no_processes(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(SPAWN, no_processes)
    leases = await lease_many(store, 200)
    await started(store)
    assert store._process is None
    assert store.writer_error is not None
    assert "writer process did not start" in store.writer_error
    assert "Resource temporarily unavailable" in store.writer_error
    await asyncio.gather(*send_first_checkpoints(store, leases))  # the thread writes them
    await assert_next_seq(store, leases, 2)
    assert calls == [1]  # tried once, not at every large batch


async def test_a_frozen_application_never_starts_one(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spawns = count_spawns(monkeypatch)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert not can_spawn_writer()
    frozen = SQLiteStore(tmp_path / "frozen.db")
    await frozen.open()
    try:
        assert frozen.writer_error == "a writer process cannot be started on this system"
        leases = await lease_many(frozen, 200)
        await asyncio.gather(*send_first_checkpoints(frozen, leases))
        await assert_next_seq(frozen, leases, 2)
        assert (frozen._starting, frozen._process, spawns) == (None, None, [])
    finally:
        await frozen.close()
    assert store.writer_error is None  # opened before: it may still start one
    monkeypatch.undo()  # the same store, reopened where a process can start
    await frozen.open()
    try:
        assert frozen.writer_error is None
        await asyncio.gather(
            *(frozen.create_execution(make_row(f"y{i}"), [b"s"]) for i in range(200))
        )
        await started(frozen)
        assert frozen.writer_pid is not None
    finally:
        await frozen.close()


async def test_close_keeps_counting_the_batches_of_the_process(store: SQLiteStore) -> None:
    leases = await lease_many(store, 300)
    await started(store)
    await asyncio.gather(*send_first_checkpoints(store, leases))
    assert store._process is not None
    assert store._process.batches >= 3
    batches = store._batches
    await store.close()
    assert store._batches == batches


def test_only_posix_systems_with_a_python_to_start_can_spawn_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert can_spawn_writer()
    monkeypatch.setattr(sys, "executable", "")  # an embedded interpreter
    assert not can_spawn_writer()
    monkeypatch.undo()
    monkeypatch.setattr(os, "name", "nt")
    assert not can_spawn_writer()


async def test_a_start_that_ends_while_close_runs_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start finishes after close() has begun (its writer task still flushing the last
    # batch): close() must still end the process it did not know of when it began.
    spawned, release_start = asyncio.Event(), asyncio.Event()
    flushing, release_flush = asyncio.Event(), asyncio.Event()
    pids: list[int] = []
    real_start, real_flush = ProcessWriter.start, SQLiteStore._flush

    async def start(self: ProcessWriter) -> None:
        await real_start(self)
        assert self.pid is not None
        pids.append(self.pid)
        spawned.set()
        await release_start.wait()

    async def flush(self: SQLiteStore, conn: Any, writes: Any) -> None:
        if pids:  # the batch after the start began: hold it until the start has ended
            flushing.set()
            await release_flush.wait()
        await real_flush(self, conn, writes)

    monkeypatch.setattr(ProcessWriter, "start", start)
    monkeypatch.setattr(SQLiteStore, "_flush", flush)
    store = SQLiteStore(tmp_path / "t.db")
    store._auto_start = 1
    await store.open()
    await store.create_execution(make_row("a"), [b"s"])  # starts the process
    await spawned.wait()
    pending = asyncio.ensure_future(store.create_execution(make_row("b"), [b"s"]))
    await flushing.wait()  # the writer task is inside that batch, on the thread
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # close() has begun: it waits for the writer task
    release_start.set()  # the start ends now, with close() under way
    for _ in range(5):  # (yields only: the start task runs to its end)
        await asyncio.sleep(0)
    assert store._starting is None
    release_flush.set()
    await closing
    assert reaped(pids[0])  # at once: close() ended it, not something still running
    await pending
    assert (store._starting, store._process, store.writer_pid) == (None, None, None)


async def test_a_killed_process_is_replaced_in_the_background_at_the_next_large_batch(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 300)  # starts the first process
    await started(store)
    process = store._process
    assert process is not None
    assert process._replies is not None
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await process._replies  # the store has seen it exit
    thread_batches = store._thread_batches
    await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))  # one write: the thread
    assert store._thread_batches == thread_batches + 1
    assert (store._process, store._starting) == (None, None)  # no start for one write
    await asyncio.gather(*send_first_checkpoints(store, leases[1:]))  # 299: a new start
    await started(store)
    assert store.writer_pid not in (None, first)
    await assert_next_seq(store, leases, 2)


async def test_close_while_the_spawn_connects_its_pipes_ends_it(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelled there, a spawn through asyncio's own pipes waited forever on Python 3.11.
    loop = asyncio.get_running_loop()
    entered, never = asyncio.Event(), asyncio.Event()
    real = type(loop).connect_read_pipe

    async def held(self: Any, *args: Any) -> Any:
        entered.set()
        await never.wait()
        return await real(self, *args)

    monkeypatch.setattr(type(loop), "connect_read_pipe", held)
    store._auto_start = 1
    await store.create_execution(make_row("a"), [b"s"])  # starts the writer process
    await entered.wait()  # forked; its pipes are being connected
    pids = children_of(os.getpid())
    assert len(pids) == 1
    await store.close()  # (pytest-timeout ends a hang)
    assert reaped(pids[0])
    assert (store._starting, store._process) == (None, None)
