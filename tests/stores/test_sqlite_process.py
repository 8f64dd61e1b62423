"""What the SQLite store's writer process adds: the same guarantees, another process."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable.errors import LeaseLostError, StoreError
from durable.stores import Checkpoint, Lease, SQLiteStore
from durable.stores import _sqlite_process as sp
from durable.stores._sqlite_process import ProcessWriter
from durable.stores.sqlite import PROCESS_MIN
from tests.helpers import has_exited, reaped
from tests.stores.helpers import (
    OWNER,
    assert_next_seq,
    hold_starts_before_ready,
    lease_many,
    send_first_checkpoints,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(tmp_path / "t.db", writer="process")
    backend._process_min = 1  # every write the process can take goes there, even alone
    await backend.open()
    yield backend
    await backend.close()


def writer_pid(store: SQLiteStore) -> int:
    assert store._process is not None
    pid = store._process.pid
    assert pid is not None
    return pid


def test_the_writer_option_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="writer must be one of"):
        SQLiteStore(tmp_path / "t.db", writer="fork")
    monkeypatch.setattr(os, "name", "nt")
    with pytest.raises(ValueError, match="needs a POSIX system"):
        SQLiteStore(tmp_path / "t.db", writer="process")
    SQLiteStore(tmp_path / "t.db")  # the thread works everywhere


async def test_concurrent_checkpoints_are_committed_by_the_process_in_shared_batches(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 300)
    assert store._process is not None
    before = store._process.batches
    await asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [b"a", b"b"], now=1.0)) for lease in leases)
    )
    assert 3 <= store._process.batches - before < 10  # batches of at most 128, not 300
    for lease in leases:
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert loaded[1] == [b"start", b"a", b"b"]
        assert loaded[0].next_seq == 3


async def test_a_refused_checkpoint_fails_alone_with_lease_lost(store: SQLiteStore) -> None:
    leases = await lease_many(store, 40)
    checkpoints = [Checkpoint(lease, 2, [b"a"], now=1.0) for lease in leases]
    checkpoints[7] = Checkpoint(Lease(leases[7].execution_id, OWNER, 0), 2, [b"a"], now=1.0)
    checkpoints[30] = Checkpoint(leases[30], 9, [b"a"], now=1.0)
    outcomes = await asyncio.gather(
        *(store.commit(cp) for cp in checkpoints), return_exceptions=True
    )
    failed = {i for i, outcome in enumerate(outcomes) if outcome is not None}
    assert failed == {7, 30}
    assert isinstance(outcomes[7], LeaseLostError)
    assert "no longer holds it" in str(outcomes[7])
    assert isinstance(outcomes[30], LeaseLostError)
    assert "must start at 2, not 9" in str(outcomes[30])
    for i, lease in enumerate(leases):
        loaded = await store.load(lease.execution_id)
        assert loaded is not None
        assert len(loaded[1]) == (1 if i in failed else 2)


async def test_a_write_for_the_thread_waits_for_the_batches_in_flight(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 300)
    commits = asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases)
    )
    for _ in range(3):  # the writer takes the checkpoints and sends the first batches
        await asyncio.sleep(0)
    last = leases[-1]
    await store.release(last, wake_at=None, now=2.0)  # a thread write, queued behind them
    await commits
    row = await store.get_execution(last.execution_id)
    assert row is not None
    assert (row.next_seq, row.lease_owner) == (2, None)  # the checkpoint, then the release


async def test_writes_queued_before_close_are_committed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", writer="process")
    await store.open()
    leases = await lease_many(store, 200)
    pending = send_first_checkpoints(store, leases)
    await asyncio.sleep(0)
    pid = writer_pid(store)
    await store.close()
    await asyncio.gather(*pending)
    assert reaped(pid)
    with closing(sqlite3.connect(tmp_path / "t.db")) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events WHERE data = x'61'").fetchone()
    assert count == 200


async def test_a_few_writes_go_to_the_thread_while_the_process_is_idle(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", writer="process")
    await store.open()
    try:
        assert store._process is not None
        leases = await lease_many(store, PROCESS_MIN + 40)
        before = store._process.batches
        for lease in leases[:3]:  # one at a time: the thread, as without a process
            await store.commit(Checkpoint(lease, 2, [b"a"], now=1.0))
        assert store._process.batches == before
        await asyncio.gather(
            *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases[3:])
        )
        assert store._process.batches == before + 1  # many at once: the process
        await assert_next_seq(store, leases, 2)
    finally:
        await store.close()


async def test_a_killed_writer_process_fails_its_writes_and_is_replaced(
    store: SQLiteStore,
) -> None:
    leases = await lease_many(store, 3)
    first = writer_pid(store)
    os.kill(first, signal.SIGKILL)
    with pytest.raises(StoreError, match="writer process exited"):
        await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))
    await store.commit(Checkpoint(leases[1], 2, [b"a"], now=1.0))  # a new process took over
    assert writer_pid(store) != first
    loaded = await store.load(leases[1].execution_id)
    assert loaded is not None
    assert loaded[1] == [b"start", b"a"]
    row = await store.get_execution(leases[0].execution_id)
    assert row is not None
    assert row.next_seq == 1  # the failed write never reached the file


async def test_the_writer_process_outlives_sigint_and_sigterm(store: SQLiteStore) -> None:
    # A terminal's Ctrl-C and a service manager's SIGTERM reach every process of the group;
    # the engine then shuts down gracefully and its last checkpoints still need the writer.
    leases = await lease_many(store, 2)
    pid = writer_pid(store)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))
    assert writer_pid(store) == pid
    assert store._process is not None
    assert not store._process.broken


async def test_a_locked_database_fails_the_batch_and_the_process_recovers(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "t.db", writer="process", busy_timeout=0.05)
    store._process_min = 1
    await store.open()
    try:
        leases = await lease_many(store, 3)
        with closing(sqlite3.connect(tmp_path / "t.db", isolation_level=None)) as conn:
            conn.execute("BEGIN EXCLUSIVE")
            outcomes = await asyncio.gather(
                *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases),
                return_exceptions=True,
            )
            conn.execute("ROLLBACK")
        assert all(type(o) is StoreError and "locked" in str(o) for o in outcomes), outcomes
        await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))
    finally:
        await store.close()


# -- what must never hang or leak ----------------------------------------------------------

_NO_CLOSE = """
import asyncio, os, sys
from durable.stores import SQLiteStore
from tests.helpers import children_of
from tests.stores.helpers import make_row

async def main():
    writer, _, when = sys.argv[2].partition("-")
    store = SQLiteStore(sys.argv[1], writer=writer)
    store._auto_start = 1
    await store.open()
    if writer == "auto":
        await store.create_execution(make_row("a"), [b"s"])  # starts the writer process
        if when == "started" and store._starting is not None:
            await asyncio.shield(store._starting)
        while not children_of(os.getpid()):  # its spawn is under way: wait for the child
            await asyncio.sleep(0.001)
    print(" ".join(map(str, children_of(os.getpid()))), flush=True)
    raise RuntimeError("the application ends without store.close()")

asyncio.run(main())
"""


# "auto-starting": the event loop ends while the default writer is starting its process
# (on Python 3.11 a spawn cancelled there used to hang the application's exit for good).
@pytest.mark.parametrize("writer", ["thread", "process", "auto-starting", "auto-started"])
def test_an_application_that_never_closes_the_store_still_exits(
    tmp_path: Path, writer: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _NO_CLOSE, str(tmp_path / "t.db"), writer],
        capture_output=True,
        text=True,
        timeout=60,  # a guard against a hang, not a measurement
        check=False,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 1, done.stderr
    assert "the application ends without store.close()" in done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == (0 if writer == "thread" else 1)
    for pid in pids:  # the writer process went with it
        assert has_exited(pid)


def _hold_the_pipe(started: Any) -> None:
    started.set()
    while True:  # a forked worker, alive until the test terminates it
        signal.pause()


async def test_close_ends_the_child_though_a_forked_process_holds_its_pipe(
    store: SQLiteStore,
) -> None:
    pid = writer_pid(store)
    context = multiprocessing.get_context("fork")
    started = context.Event()
    holder = context.Process(target=_hold_the_pipe, args=(started,), daemon=True)
    holder.start()  # inherits the write end of the child's stdin
    try:
        assert started.wait(30)
        await store.close()
        assert holder.is_alive()  # close() did not wait for the fork to go
        assert reaped(pid)
    finally:
        holder.terminate()
        holder.join()


async def test_a_cancelled_open_leaves_no_writer_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = hold_starts_before_ready(monkeypatch)  # started, not yet ready: cancel open() now
    store = SQLiteStore(tmp_path / "t.db", writer="process")
    opening = asyncio.ensure_future(store.open())
    pid = await spawned.get()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert reaped(pid)


async def test_a_failed_respawn_leaves_the_writes_to_the_thread(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = await lease_many(store, 2)
    os.kill(writer_pid(store), signal.SIGKILL)
    with pytest.raises(StoreError, match="writer process exited"):
        await store.commit(Checkpoint(leases[0], 2, [b"a"], now=1.0))

    async def no_processes(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_processes)
    await store.commit(Checkpoint(leases[1], 2, [b"a"], now=1.0))  # the thread wrote it
    assert store._process is None
    row = await store.get_execution(leases[1].execution_id)
    assert row is not None
    assert row.next_seq == 2


async def test_a_reply_that_does_not_decode_fails_its_batch_and_the_process_is_replaced(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = await lease_many(store, 4)
    first = writer_pid(store)
    monkeypatch.setattr(sp, "_reply", msgspec.msgpack.Decoder(tuple[int, int]))
    outcomes = await asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases[:2]),
        return_exceptions=True,
    )
    assert all(type(o) is StoreError and "bad reply" in str(o) for o in outcomes), outcomes
    monkeypatch.undo()
    await store.commit(Checkpoint(leases[2], 2, [b"a"], now=1.0))
    assert writer_pid(store) != first


async def test_writes_not_yet_sent_when_the_process_dies_are_written_anyway(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = await lease_many(store, 600)
    sent = asyncio.Event()
    real_send = ProcessWriter.send

    async def send(self: ProcessWriter, jobs: list[sp.Job], waiters: sp.Waiters) -> None:
        await real_send(self, jobs, waiters)
        sent.set()

    monkeypatch.setattr(ProcessWriter, "send", send)
    commits = asyncio.gather(
        *(store.commit(Checkpoint(lease, 2, [b"a"], now=1.0)) for lease in leases),
        return_exceptions=True,
    )
    await sent.wait()  # the first batch is on its way
    os.kill(writer_pid(store), signal.SIGKILL)
    outcomes = await commits
    failed = [o for o in outcomes if o is not None]
    assert len(failed) <= 2 * 128  # at most the batches in flight
    assert all(type(o) is StoreError and "writer process exited" in str(o) for o in failed)
    for lease, outcome in zip(leases, outcomes, strict=True):
        row = await store.get_execution(lease.execution_id)
        assert row is not None
        if outcome is None:
            assert row.next_seq == 2


async def test_a_job_the_child_cannot_decode_fails_alone(store: SQLiteStore) -> None:
    leases = await lease_many(store, 3)
    bad = Checkpoint(leases[1], 2, ["not bytes"], now=1.0)  # type: ignore[list-item]
    pid = writer_pid(store)
    outcomes = await asyncio.gather(
        *(store.commit(cp) for cp in [Checkpoint(leases[0], 2, [b"a"], now=1.0), bad]),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert type(outcomes[1]) is StoreError
    assert "ValidationError" in str(outcomes[1])
    assert writer_pid(store) == pid  # the process lives on


async def test_pipes_that_do_not_connect_leave_no_process_and_no_open_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids: list[int] = []
    real_spawn = asyncio.create_subprocess_exec

    async def spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await real_spawn(*args, **kwargs)
        pids.append(process.pid)
        return process

    async def no_pipe(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(sp.asyncio, "create_subprocess_exec", spawn)
    monkeypatch.setattr(type(asyncio.get_running_loop()), "connect_write_pipe", no_pipe)
    before = len(os.listdir("/proc/self/fd"))
    store = SQLiteStore(tmp_path / "t.db", writer="process")
    with pytest.raises(StoreError, match=r"pipes did not connect.*Too many open files"):
        await store.open()
    assert reaped(pids[0])
    assert len(os.listdir("/proc/self/fd")) == before


async def test_no_pipe_for_the_child_is_a_store_error_and_leaks_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pipe, made = os.pipe, []

    def pipe() -> tuple[int, int]:
        if made:  # the second of the two pipes
            raise OSError(24, "Too many open files")
        made.append(real_pipe())
        return made[-1]

    monkeypatch.setattr(sp.os, "pipe", pipe)
    before = len(os.listdir("/proc/self/fd"))
    store = SQLiteStore(tmp_path / "t.db", writer="process")
    with pytest.raises(StoreError, match=r"writer process did not start.*Too many open files"):
        await store.open()
    assert len(os.listdir("/proc/self/fd")) == before
