"""The default store: one SQLite file in WAL mode, written with group commit.

Two aiosqlite connections: a reader for ``get``/``list``/``load`` and the other queries, and
a writer owned by one task. Every write is queued to that task, which drains the queue and
applies everything waiting (up to :data:`MAX_BATCH` writes) in one ``BEGIN IMMEDIATE``
transaction, then resolves each caller only after ``COMMIT`` returned. With
``synchronous=FULL`` a commit costs one fsync, so many executions checkpointing at once share
it: throughput grows with concurrency while every checkpoint is durable before its workflow
moves on.

Each write runs inside a savepoint, so one refused write (a lost lease, a bad value, an
unknown callback) is undone and reported to its own caller, unchanged, without failing the
rest of the batch; an error of the transaction itself (locked, disk full) fails every write
in it. A write that must keep its changes and still fail (a callback found expired) returns
:class:`~durable.stores._sqlite_schema.RaiseAfterCommit`.

Every statement of a batch runs in one synchronous function on the connection's thread
(see ``SQLiteStore._on_thread``), so a batch costs a single thread hop however many rows it writes.

With a writer process (``writer="process"``, or ``"auto"``, the default, once a batch shows
many executions checkpointing at once) the same task sends batches of checkpoints and new
executions to a child process instead (:mod:`durable.stores._sqlite_process`), which
commits them on another core while the event loop works; the thread writes only while that
process is idle, so the two connections never write at once.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import aiosqlite

from durable.errors import StoreError
from durable.stores import _callbacks as cb
from durable.stores import _sqlite_batch as wsql
from durable.stores import _sqlite_schema as sql
from durable.stores import _sqlite_wire as proc
from durable.stores._filters import workflow_filter
from durable.stores._sqlite_process import Gone, Job, ProcessWriter
from durable.stores._sqlite_queue import Write, WriteQueue, fail, process_jobs
from durable.stores.base import CallbackRow, Checkpoint, ExecutionRow, Lease, ListQuery
from durable.types import ErrorInfo

__all__ = ["MAX_BATCH", "SQLiteStore"]

T = TypeVar("T")

MAX_BATCH = 512
"""The most writes applied in one transaction."""

PROCESS_BATCH = 128
"""The most checkpoints in one batch of the writer process: smaller batches let the event
loop drive the executions of one batch while the process commits the next."""

PROCESS_MIN = 16
"""Fewer writes than this, with no batch in flight, go to the thread even with a writer
process: one round trip through a pipe costs more than the GIL it would spare."""

AUTO_START = PROCESS_BATCH
"""With ``writer="auto"``, the first batch of at least this many writes starts the writer
process (in the background: the thread goes on writing until the process is ready)."""

_WRITERS = ("auto", "thread", "process")


def can_spawn_writer() -> bool:
    """Whether a writer process can be started here: a POSIX system, and a Python that
    ``sys.executable`` can start again with ``-c`` (not a frozen application, where it
    would start the application itself)."""
    return os.name == "posix" and bool(sys.executable) and not getattr(sys, "frozen", False)


class SQLiteStore:
    """A :class:`~durable.stores.base.Store` on one SQLite file (WAL, group commit).

    Args:
        path: the database file; created when missing (its directory must exist).
        synchronous: SQLite's ``PRAGMA synchronous``: ``"FULL"`` (default) makes every
            commit survive power loss; ``"NORMAL"`` survives a crash of the process but may
            lose the last commits on power loss.
        busy_timeout: seconds to wait for another process's write lock before a write
            fails with ``StoreError("database is locked: ...")``.
        writer: ``"auto"`` (default): the thread, until a batch of at least
            :data:`AUTO_START` writes shows many executions checkpointing at once; then
            the store starts its writer process in the background and uses it from the
            moment it is ready (if it cannot start, the thread goes on; on systems where
            it cannot run, see :func:`can_spawn_writer`, it is never tried).
            ``"thread"``: every batch runs on aiosqlite's thread.
            ``"process"``: the writer process from :meth:`open` on. It commits checkpoints
            and new executions on another core (:mod:`durable.stores._sqlite_process`),
            pipelined with the event loop; other writes, and fewer than
            :data:`PROCESS_MIN` writes while nothing is in flight, still run on the
            thread. It costs a Python process (about 20 MB) and about 50 ms to start.
            POSIX only; not for frozen applications (see :func:`can_spawn_writer`).

    Example::

        store = SQLiteStore("orders.db")
        await store.open()
        try:
            row = await store.get_execution("o-1")
        finally:
            await store.close()

    A write whose caller is cancelled while it waits may or may not have been committed.

    Attributes:
        path: the database file, as given.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        writer: str = "auto",
    ) -> None:
        if synchronous.upper() not in wsql.SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {wsql.SYNCHRONOUS}, not {synchronous!r}")
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must be >= 0, got {busy_timeout!r}")
        if writer not in _WRITERS:
            raise ValueError(f"writer must be one of {_WRITERS}, not {writer!r}")
        if writer == "process" and os.name != "posix":
            raise ValueError("writer='process' needs a POSIX system (Linux, macOS)")
        self.path = os.fspath(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout = float(busy_timeout)
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._queue: WriteQueue | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer task's
        self._writer_mode = writer
        self._process: ProcessWriter | None = None
        self._process_min = PROCESS_MIN  # tests set 1 to send every write to the process
        self._auto_start = AUTO_START  # tests set 1 to start the process at the first write
        self._auto = False  # (set by open()) a batch may still start the writer process
        self._starting: asyncio.Task[None] | None = None  # the auto mode's start, under way
        self.writer_error: str | None = None
        """Why the store writes on its thread although it would use a writer process: none
        can start on this system (``writer="auto"``), or the last start failed; else
        ``None``."""
        self._stopped = False  # the writer task was cancelled: writes are refused
        self._row_reads: list[tuple[str, asyncio.Future[ExecutionRow | None]]] | None = None
        self._row_tasks: set[asyncio.Task[None]] = set()
        self._thread_batches = 0  # transactions written by the thread (and dead processes)

    @property
    def _batches(self) -> int:
        """Transactions written so far; lets tests see group commit at work."""
        extra = 0 if self._process is None else self._process.batches
        return self._thread_batches + extra

    @property
    def writer_pid(self) -> int | None:
        """The process id of the writer process while one runs (``writer="process"``, or
        ``"auto"`` once started), else ``None``."""
        process = self._process
        return None if process is None or process.broken else process.pid

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def _on_thread(self, conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
        # aiosqlite hops to its thread once per statement. Connection._execute (private, but
        # unchanged from aiosqlite 0.20 to 0.22) queues one whole function instead, so a batch
        # of hundreds of statements costs one hop, and busy retries happen on that thread.
        raw = conn._conn
        result = await conn._execute(  # type: ignore[no-untyped-call]
            wsql.guarded, raw, self.path, self._busy_timeout, fn, *args
        )
        return cast(T, result)

    async def _connect(self) -> aiosqlite.Connection:
        conn = aiosqlite.connect(self.path, isolation_level=None, timeout=self._busy_timeout)
        # A daemon thread (aiosqlite's is not): an application that ends without closing
        # the store must still exit. A transaction cut short at exit is rolled back.
        conn._thread.daemon = True
        try:
            return await conn
        except sqlite3.Error as exc:
            # A failed connect leaves aiosqlite's thread stopping on its own; it must finish
            # while our event loop still runs, or it dies on a closed loop. It has nothing
            # left to do, so the join is immediate.
            conn._thread.join(timeout=1.0)
            raise wsql.store_error(exc, self.path) from exc

    async def open(self) -> None:
        """Connect, refuse foreign or newer databases, switch to WAL and migrate.

        Raises:
            StoreError: the file is not a durable database, is from a newer version of
                durable, is locked, or cannot be opened.
        """
        if self._writer_task is not None:
            return
        sql.check_header(self.path)
        writer = await self._connect()
        try:
            await self._on_thread(writer, sql.migrate, self.path, self._synchronous)
            reader = await self._connect()
            try:
                await self._on_thread(reader, sql.make_read_only)
            except BaseException:
                await reader.close()
                raise
            process = None
            if self._writer_mode == "process":
                process = ProcessWriter(self.path, self._synchronous, self._busy_timeout)
                try:
                    await process.start()
                except BaseException:
                    await reader.close()
                    raise
        except BaseException:
            await writer.close()
            raise
        self._reader, self._writer, self._process = reader, writer, process
        self._stopped = False
        self._auto = self._writer_mode == "auto" and can_spawn_writer()
        self.writer_error = None
        if self._writer_mode == "auto" and not self._auto:
            self.writer_error = "a writer process cannot be started on this system"
        self._loop = asyncio.get_running_loop()
        self._queue = WriteQueue(self._loop)
        self._writer_task = self._loop.create_task(
            self._write_loop(self._queue, writer), name=f"durable-sqlite-writer {self.path}"
        )

    async def close(self) -> None:
        """Commit every queued write, then close both connections. Idempotent."""
        task, queue = self._writer_task, self._queue
        if task is None or queue is None:
            return
        self._writer_task = self._queue = self._loop = None
        queue.put(None)
        try:
            await asyncio.wait([task])  # (a writer task cancelled by someone else is no error)
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        finally:
            starting, self._starting = self._starting, None
            if starting is not None:  # a start under way leaves no process behind
                starting.cancel()
                await asyncio.wait([starting])  # (a cancellation of close() itself stays)
            process, self._process = self._process, None
            if process is not None:
                await process.close()
                self._thread_batches += process.batches  # keep ``_batches`` counting
            reader, writer = self._reader, self._writer
            self._reader = self._writer = None
            for conn in (reader, writer):
                if conn is not None:
                    await conn.close()

    # --- the writer task ------------------------------------------------------------------

    async def _write_loop(self, queue: WriteQueue, conn: aiosqlite.Connection) -> None:
        while True:
            batch: list[Write | None] = []
            writes: list[Write] = []
            try:
                batch = await queue.take(MAX_BATCH)  # (cancelled here too: see below)
                writes = [w for w in batch if w is not None and not w.future.done()]
                await self._write_batch(conn, writes)
                if None in batch and self._process is not None:
                    await self._process.wait_idle()
            except Exception as exc:  # not SQL (the batch handles that): fail these, go on
                failed = StoreError(f"{self.path}: the store writer failed: {exc!r}")
                for write in writes:
                    fail(write.future, failed)
            except BaseException:  # stopped: nothing queued may wait forever
                self._stopped = True
                stopped = StoreError(f"{self.path}: the store writer was stopped")
                for write in writes:
                    fail(write.future, stopped)
                for queued in queue.drain():
                    if queued is not None:
                        fail(queued.future, stopped)
                raise
            if None in batch:  # close() puts None last, after every write
                return

    async def _write_batch(self, conn: aiosqlite.Connection, writes: list[Write]) -> None:
        process = await self._live_process()
        if (
            process is None
            and self._auto
            and len(writes) >= self._auto_start
            and self._writer_task is not None  # not the last batches, which close() drains
        ):
            self._auto = False  # one start, whatever comes of it
            loop = asyncio.get_running_loop()
            self._starting = loop.create_task(
                self._start_process(), name=f"durable-sqlite-writer-start {self.path}"
            )
        if process is not None and writes:
            writes = await self._send(process, writes)  # the ones it cannot take
        if writes:
            if process is not None:  # keep the order: the process's batches first
                await process.wait_idle()
            await self._flush(conn, writes)

    async def _live_process(self) -> ProcessWriter | None:
        """The writer process; a new one in place of one that died (killed, out of memory).

        The writes it had in flight failed with ``StoreError``; when no new one starts, the
        thread writes everything from then on. With ``writer="auto"`` the new one starts as
        the first did, in the background at the next large batch, and the thread writes
        meanwhile.
        """
        process = self._process
        if process is None or not process.broken:
            return process
        await process.close()
        self._thread_batches += process.batches  # keep ``_batches`` counting
        self._process = None
        if self._writer_mode == "auto":
            self._auto = True
            return None
        self._process = await self._new_process()
        return self._process

    async def _new_process(self) -> ProcessWriter | None:
        """A started writer process, or ``None`` (and :attr:`writer_error` says why)."""
        fresh = ProcessWriter(self.path, self._synchronous, self._busy_timeout)
        try:
            await fresh.start()
        except Exception as exc:  # StoreError, or an OSError the spawn did not expect
            self.writer_error = str(exc)
            return None
        return fresh

    async def _start_process(self) -> None:
        """``writer="auto"``: start the writer process; the batches after it is ready go
        there. Until then, and for good if it cannot start, the thread writes them."""
        try:
            fresh = await self._new_process()
        finally:
            self._starting = None
        # Even when close() has begun: it cancels and awaits this task before it takes the
        # process to close it, so the process is either killed here or closed there.
        self._process = fresh

    async def _send(self, process: ProcessWriter, writes: list[Write]) -> list[Write]:
        """Send ``writes`` to the writer process in batches of :data:`PROCESS_BATCH`; returns
        ``[]``, or those left to the thread: a few writes while the process is idle (see
        :data:`PROCESS_MIN`), all of them when one has no form for the process, or those
        not sent yet when a chunk cannot be encoded (the thread then writes them, with its
        own errors) or the process died (then the thread takes them, not a failure)."""
        if len(writes) < self._process_min and process.idle:
            return writes
        jobs = process_jobs(writes)
        if jobs is None:
            return writes
        for i in range(0, len(writes), PROCESS_BATCH):
            chunk = writes[i : i + PROCESS_BATCH]
            try:
                await process.send(jobs[i : i + PROCESS_BATCH], [w.future for w in chunk])
            except (Gone, TypeError, ValueError, OverflowError):  # dead, or msgspec refused
                return writes[i:]
        return []

    async def _flush(self, conn: aiosqlite.Connection, writes: list[Write]) -> None:
        try:
            outcomes = await self._on_thread(
                conn, wsql.apply_batch, self.path, [w.fn for w in writes]
            )
        except Exception as exc:
            message = exc.message if isinstance(exc, StoreError) else f"{self.path}: {exc!r}"
            for write in writes:
                fail(write.future, StoreError(message))
            return
        except BaseException:
            for write in writes:
                fail(write.future, StoreError(f"{self.path}: the store writer was stopped"))
            raise
        self._thread_batches += 1
        for write, (ok, value) in zip(writes, outcomes, strict=True):
            if write.future.done():
                continue
            if ok:
                write.future.set_result(value)
            else:
                write.future.set_exception(value)

    def _submit(self, fn: wsql.Job, job: Job | None = None) -> asyncio.Future[Any]:
        """Queue ``fn`` for the next batch; the future resolves once its batch committed.

        ``job`` is the same write for the writer process, when it can run there.
        """
        if self._queue is None or self._loop is None:
            raise StoreError(f"{self!r} is not open")
        if self._stopped:
            raise StoreError(f"{self.path}: the store writer was stopped")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(Write(fn, future, job))
        return future

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T | sql.RaiseAfterCommit],
        job: Job | None = None,
    ) -> T:
        return cast(T, await self._submit(fn, job))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise StoreError(f"{self!r} is not open")
        return await self._on_thread(self._reader, fn, *args)

    # --- the Store protocol -----------------------------------------------------------------

    async def create_execution(
        self, row: ExecutionRow, events: list[bytes]
    ) -> tuple[ExecutionRow, bool]:
        """Insert ``row`` and its first events, or return the stored row with ``False``."""
        sql.check_seed(row.seed)
        events = list(events)
        return await self._write(
            lambda conn: sql.create(conn, row, events), (proc.CREATE, (row, events))
        )

    async def get_execution(self, execution_id: str) -> ExecutionRow | None:
        """The row, or ``None``.

        Rows asked for while a read of rows is on its way share the next trip to the
        reader's thread (500 ``handle.result()`` calls at once make one or two, not 500).
        """
        if not isinstance(execution_id, str):
            raise TypeError(f"an execution id is a string, not {execution_id!r}")
        if self._reader is None:
            raise StoreError(f"{self!r} is not open")
        loop = self._loop or asyncio.get_running_loop()  # (None once close() has begun)
        future: asyncio.Future[ExecutionRow | None] = loop.create_future()
        if self._row_reads is None:
            self._row_reads = []
            task = loop.create_task(self._read_rows(), name=f"durable-rows {self.path}")
            self._row_tasks.add(task)  # (the loop keeps only a weak reference)
            task.add_done_callback(self._row_tasks.discard)
        self._row_reads.append((execution_id, future))
        return await future

    async def _read_rows(self) -> None:
        """Read the rows asked for, trip after trip, until no one asks any more."""
        while self._row_reads:
            reads, self._row_reads = self._row_reads, []
            try:
                ids = [execution_id for execution_id, _ in reads]
                outcomes = await self._read(sql.select_rows, ids)
            except BaseException as exc:  # the whole read failed: each caller gets its own
                message = exc.message if isinstance(exc, StoreError) else repr(exc)
                for _, future in reads + (self._row_reads or []):
                    fail(future, StoreError(message))
                self._row_reads = None
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, future), outcome in zip(reads, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, sqlite3.Error):
                    future.set_exception(wsql.store_error(outcome, self.path))
                else:
                    future.set_result(outcome)
        self._row_reads = None

    async def list_executions(self, query: ListQuery) -> list[ExecutionRow]:
        """Rows matching ``query``, newest ``created_at`` first."""
        return await self._read(sql.list_rows, query)

    async def load(self, execution_id: str) -> tuple[ExecutionRow, list[bytes]] | None:
        """The row and every event in order, read in one transaction."""
        return await self._read(sql.load, execution_id)

    async def commit(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` in the next group commit; returns once it is durable.

        Raises:
            LeaseLostError: the lease or the expected sequence does not match.
            StoreError: the transaction failed (every checkpoint in it failed too; nothing
                of it was written), or the writer process died before it answered (the
                checkpoint may then have been committed, as with any write whose caller
                is cancelled while it waits).
        """
        if sql.is_plain(checkpoint):  # the hot path: awaits its future with no coroutine between
            await self._submit(checkpoint)
        else:
            await self._write(
                functools.partial(sql.commit, cp=checkpoint), (proc.COMMIT, checkpoint)
            )

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_expires: float,
        limit: int,
        workflows: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` due executions with free leases, earliest ``wake_at`` first.

        With ``workflows``, only executions of those workflows (none for an empty list).
        """
        names = workflow_filter(workflows)
        return await self._write(
            lambda conn: sql.claim(conn, owner, now, lease_expires, limit, names)
        )

    async def renew(self, leases: list[Lease], *, lease_expires: float) -> list[str]:
        """Extend these leases and their ``wake_at``; returns the ids no longer held."""
        leases = list(leases)
        return await self._write(lambda conn: sql.renew(conn, leases, lease_expires))

    async def release(self, lease: Lease, *, wake_at: float | None, now: float) -> None:
        """Drop ``lease`` and set ``wake_at``; ignored when the lease is not held."""
        await self._write(lambda conn: sql.release(conn, lease, wake_at, now))

    async def next_wake_at(
        self, exclude_owner: str | None = None, workflows: Sequence[str] | None = None
    ) -> float | None:
        """The smallest ``wake_at`` of rows not leased by ``exclude_owner``, or ``None``.

        With ``workflows``, of executions of those workflows only (none for an empty list).
        """
        names = workflow_filter(workflows)
        return await self._read(lambda conn: sql.next_wake_at(conn, exclude_owner, names))

    async def lease_owners(self) -> list[str]:
        """Distinct owners holding leases (expired or not), sorted."""
        return await self._read(sql.lease_owners)

    async def expire_leases(self, owners: list[str], *, now: float) -> int:
        """Make these owners' leases claimable at ``now``; returns how many."""
        owners = list(owners)
        return await self._write(lambda conn: sql.expire(conn, owners, now))

    async def complete_callback(
        self,
        callback_id: str,
        *,
        status: str,
        result: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> CallbackRow:
        """Record an outside system's answer and make the execution due unless it is leased.

        Raises:
            ValueError: ``status`` is neither ``SUCCEEDED`` nor ``FAILED``.
            CallbackNotFoundError: no callback has this id.
            CallbackAlreadyCompletedError: it is not pending, or it timed out just now (that
                outcome is committed).
        """
        cb.check_answer(status)
        return await self._write(
            lambda conn: sql.complete_callback(conn, callback_id, status, result, error, now)
        )

    async def heartbeat_callback(self, callback_id: str, *, now: float) -> CallbackRow:
        """Push the heartbeat deadline to ``now + heartbeat_timeout``; errors as for complete."""
        return await self._write(lambda conn: sql.heartbeat_callback(conn, callback_id, now))

    async def collect_callbacks(self, lease: Lease, *, now: float) -> list[CallbackRow]:
        """Expire due pending callbacks, then return the undelivered ones, oldest first.

        Raises:
            LeaseLostError: ``lease`` is not held (nothing is written).
        """
        return await self._write(lambda conn: sql.collect_callbacks(conn, lease, now))

    async def get_callback(self, callback_id: str) -> CallbackRow | None:
        """The callback, or ``None``."""
        return await self._read(sql.select_callback, callback_id)

    async def purge(
        self, *, finished_before: float | None = None, expired_at: float | None = None
    ) -> list[str]:
        """Delete ended executions (with their events and callbacks) in one transaction.

        An execution goes when it is not ``RUNNING`` and ``ended_at <= finished_before``,
        or it has a ``retention`` and ``ended_at + retention <= expired_at``; ``None``
        disables a criterion. Returns the deleted ids by ``ended_at``, then id.
        """
        return await self._write(lambda conn: sql.purge(conn, finished_before, expired_at))

    async def stop(
        self, execution_id: str, *, now: float, error: ErrorInfo, event: bytes
    ) -> list[str]:
        """Stop a running execution and its running descendants in one transaction.

        Returns the ids stopped, the given one first and parents before children; ``[]``
        when the execution is not running.

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        return await self._write(lambda conn: sql.stop(conn, execution_id, now, error, event))
