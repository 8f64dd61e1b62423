"""The engine's side of the SQLite writer process (``SQLiteStore(..., writer="process")``).

In the default mode every batch runs on aiosqlite's thread, which shares the GIL with the
event loop: each statement hands the GIL back and forth, so the loop and the writer mostly
take turns. :class:`ProcessWriter` sends batches of plain checkpoints (the write of every
step) to a child process instead (:mod:`durable.stores._sqlite_writer_process`), which
commits them on the other core while the loop drives the executions of the previous batch.
Up to :data:`DEPTH` batches are in flight; replies come back in order, and a batch's
waiters are released only after its reply says it was committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from durable.errors import StoreError
from durable.stores import _sqlite_wire as proc
from durable.stores.base import ExecutionRow

__all__ = ["DEPTH", "ProcessWriter"]

DEPTH = 2
"""Batches sent to the writer process and not yet answered, at most."""

# The child imports only what it runs: empty stand-ins for the ``durable`` and
# ``durable.stores`` packages skip their ``__init__`` (the whole public API), which cuts
# its start from about 200 ms to about 70 ms.
_BOOT = """\
import sys, types
for name, path in (("durable", sys.argv[1]), ("durable.stores", sys.argv[2])):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from durable.stores._sqlite_writer_process import main
sys.exit(main(sys.argv[3:]))
"""
_STORES = os.path.dirname(os.path.abspath(__file__))
_START_TIMEOUT = 30.0  # seconds for the child to start Python and open the database

_reply = msgspec.msgpack.Decoder(proc.Reply)
_ready = msgspec.msgpack.Decoder(tuple[bool, int | str])
_created = msgspec.msgpack.Decoder(tuple[ExecutionRow, bool])
_encoder = msgspec.msgpack.Encoder()

Job = tuple[int, Any]
"""A job for the process: ``(PLAIN, PlainRow)``, ``(COMMIT, Checkpoint)`` or
``(CREATE, (ExecutionRow, events))`` (see :mod:`durable.stores._sqlite_wire`)."""
Waiters = Sequence["asyncio.Future[Any]"]


def _fail_all(waiters: Waiters, error: BaseException) -> None:
    for future in waiters:
        if not future.done():
            future.set_exception(error)


class ProcessWriter:
    """A child process committing batches of plain checkpoints to ``path``.

    Args:
        path: the database file (already created and migrated).
        synchronous: SQLite's ``PRAGMA synchronous`` for the child's connection.
        busy_timeout: seconds the child waits for another connection's write lock.
    """

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self._args = (os.path.abspath(path), synchronous, repr(busy_timeout))
        self._process: asyncio.subprocess.Process | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._inflight: collections.deque[tuple[list[int], Waiters]] = collections.deque()
        self._room = asyncio.Event()  # set while fewer than DEPTH batches are in flight
        self._room.set()
        self._idle = asyncio.Event()  # set while no batch is in flight
        self._idle.set()
        self._replies: asyncio.Task[None] | None = None
        self._broken: str | None = None  # why the process cannot take more batches
        self.batches = 0  # batches committed

    @property
    def idle(self) -> bool:
        """True while no batch is in flight."""
        return self._idle.is_set()

    @property
    def broken(self) -> bool:
        """True once the process has exited: it takes no more batches."""
        return self._broken is not None

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child and wait until it has opened the database.

        Raises:
            StoreError: the child could not start or open the database.
        """
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BOOT, os.path.dirname(_STORES), _STORES, *self._args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._process, self._stdout = process, process.stdout
        try:
            body = await asyncio.wait_for(self._read(), _START_TIMEOUT)
            ok, detail = _ready.decode(body) if body is not None else (False, "it exited")
        except (TimeoutError, msgspec.DecodeError) as exc:
            ok, detail = False, f"no answer ({exc!r})"
        if not ok:
            await self._kill()
            raise StoreError(f"{self.path}: the writer process did not start: {detail}")
        self._replies = asyncio.get_running_loop().create_task(
            self._read_replies(), name=f"durable-sqlite-writer-process {self.path}"
        )

    async def send(self, jobs: list[Job], waiters: Waiters) -> None:
        """Send one batch; returns once it is on its way (waits while DEPTH are in flight).

        Raises whatever msgspec raises when a job cannot be encoded (nothing was sent).
        Each waiter gets its job's result once the batch is committed (``None`` for a
        checkpoint), the job's own error (``LeaseLostError``, ``ValueError``...; the job
        wrote nothing), or ``StoreError`` when the transaction or the process failed.
        """
        await self._room.wait()
        process = self._process
        if self._broken is not None or process is None or process.stdin is None:
            _fail_all(waiters, StoreError(self._broken or f"{self.path}: writer process closed"))
            return
        body = _encoder.encode(jobs)
        self._inflight.append(([kind for kind, _ in jobs], waiters))
        self._idle.clear()
        if len(self._inflight) >= DEPTH:
            self._room.clear()
        process.stdin.write(len(body).to_bytes(proc.HEADER, "big") + body)
        with contextlib.suppress(ConnectionError):  # the reply reader fails what is in flight
            await process.stdin.drain()

    async def wait_idle(self) -> None:
        """Return once every batch sent has been answered (or failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Let the child finish what was sent, then end it. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        await self.wait_idle()
        if process.stdin is not None:
            process.stdin.close()
        if self._replies is not None:
            await self._replies
        await process.wait()

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def _read(self) -> bytes | None:
        stdout = self._stdout
        if stdout is None:
            return None
        try:
            header = await stdout.readexactly(proc.HEADER)
            return await stdout.readexactly(int.from_bytes(header, "big"))
        except asyncio.IncompleteReadError:
            return None

    async def _read_replies(self) -> None:
        why = ""
        try:
            while (body := await self._read()) is not None:
                self._answer(_reply.decode(body))
        except Exception as exc:  # a reply that makes no sense: stop trusting the process
            why = f": {exc!r}"
            await self._kill()
        finally:
            process = self._process
            code = None if process is None else await process.wait()
            self._broken = f"{self.path}: the writer process exited (status {code}){why}"
            if process is None:
                self._broken = f"{self.path}: the writer process was closed{why}"
            while self._inflight:
                _fail_all(self._inflight.popleft()[1], StoreError(self._broken))
            self._room.set()
            self._idle.set()

    def _answer(self, reply: proc.Reply) -> None:
        kinds, waiters = self._inflight.popleft()
        self._room.set()
        if not self._inflight:
            self._idle.set()
        committed, batch_error, failures, results = reply
        if not committed:
            _fail_all(waiters, StoreError(batch_error))
            return
        self.batches += 1
        for index, name, message in failures:
            _fail_all(waiters[index : index + 1], proc.ERRORS.get(name, StoreError)(message))
        values = {i: _created.decode(raw) for i, raw in results if kinds[i] == proc.CREATE}
        for index, future in enumerate(waiters):
            if not future.done():
                future.set_result(values.get(index))
