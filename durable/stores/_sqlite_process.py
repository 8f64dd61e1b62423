"""The engine's side of the SQLite writer process (``SQLiteStore(..., writer="process")``,
and ``writer="auto"``, the default, once a batch shows many executions writing at once).

On aiosqlite's thread every batch shares the GIL with the event loop: each statement hands
the GIL back and forth, so the loop and the writer mostly take turns. :class:`ProcessWriter`
sends batches of checkpoints and new executions to a child process instead
(:mod:`durable.stores._sqlite_writer_process`), which commits them on the other core while
the loop drives the executions of the previous batch. Up to :data:`DEPTH` batches are in
flight; replies come back in order, and a batch's waiters are released only after its reply
says it was committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from durable.errors import StoreError
from durable.stores import _sqlite_wire as wire
from durable.stores.base import ExecutionRow

__all__ = ["DEPTH", "Gone", "Job", "ProcessWriter"]

DEPTH = 2
"""Batches sent to the writer process and not yet answered, at most."""

# The child gets the engine's sys.path (so it imports the same msgspec and durable, and
# nothing from its working directory that the engine would not), and empty stand-ins for
# the ``durable`` and ``durable.stores`` packages: it skips their ``__init__`` (the whole
# public API). ``-S``: no ``site`` either (its path entries are in the engine's sys.path
# already). It starts in about 50 ms instead of 200. (Not ``-I``: that would also ignore
# ``PYTHONHOME``, which some relocated Pythons need to find their standard library.)
_BOOT = """\
import json, sys, types
sys.path[:] = json.loads(sys.argv[1])
for name, path in (("durable", sys.argv[2]), ("durable.stores", sys.argv[3])):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from durable.stores._sqlite_writer_process import main
sys.exit(main(sys.argv[4:]))
"""
_STORES = os.path.dirname(os.path.abspath(__file__))
_START_TIMEOUT = 30.0  # seconds for the child to start Python and open the database

_reply = msgspec.msgpack.Decoder(wire.Reply)
_ready = msgspec.msgpack.Decoder(tuple[bool, int | str])
_created = msgspec.msgpack.Decoder(tuple[ExecutionRow, bool])
_encoder = msgspec.msgpack.Encoder()

Job = tuple[int, Any]
"""A job for the process: ``(PLAIN, PlainRow)``, ``(COMMIT, Checkpoint)`` or
``(CREATE, (ExecutionRow, events))`` (see :mod:`durable.stores._sqlite_wire`)."""
Waiters = Sequence["asyncio.Future[Any]"]


class Gone(StoreError):
    """The process takes no more batches (it exited or is closing); nothing was sent."""


def _fail_all(waiters: Waiters, error: BaseException) -> None:
    for future in waiters:
        if not future.done():
            future.set_exception(error)


async def _connect(
    from_child: int, to_child: int
) -> tuple[asyncio.StreamReader, asyncio.BaseTransport, asyncio.StreamWriter]:
    """Streams over the parent's ends of the child's stdout and stdin, and the stdout
    stream's transport (each fd is owned by its transport from here on, or closed when
    this fails)."""
    loop = asyncio.get_running_loop()
    reading: io.FileIO | None = None
    writing: io.FileIO | None = None
    pipe: asyncio.BaseTransport | None = None
    try:
        reading = io.FileIO(from_child, "r")
        writing = io.FileIO(to_child, "w")
        reader = asyncio.StreamReader()
        pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), reading
        )
        # A StreamReaderProtocol is also what a StreamWriter needs to wait for drain().
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), writing
        )
    except BaseException:  # (closing a file its failed transport closed already is a no-op)
        if pipe is not None:
            pipe.close()
        for file, fd in ((reading, from_child), (writing, to_child)):
            if file is not None:
                file.close()
            else:
                os.close(fd)
        raise
    return reader, pipe, asyncio.StreamWriter(transport, protocol, None, loop)


class ProcessWriter:
    """A child process committing batches to ``path``.

    Args:
        path: the database file (already created and migrated), as the store names it.
        synchronous: SQLite's ``PRAGMA synchronous`` for the child's connection.
        busy_timeout: seconds the child waits for another connection's write lock.
    """

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self._args = (path, os.path.abspath(path), synchronous, repr(busy_timeout))
        self._process: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._stdout_pipe: asyncio.BaseTransport | None = None
        self._inflight: collections.deque[tuple[list[int], Waiters]] = collections.deque()
        self._room = asyncio.Event()  # set while fewer than DEPTH batches are in flight
        self._room.set()
        self._idle = asyncio.Event()  # set while no batch is in flight
        self._idle.set()
        self._replies: asyncio.Task[None] | None = None
        self._broken: str | None = None  # why the process takes no more batches
        self.batches = 0  # batches committed

    @property
    def idle(self) -> bool:
        """True while no batch is in flight."""
        return self._idle.is_set()

    @property
    def broken(self) -> bool:
        """True once the process takes no more batches (it exited, or is closing)."""
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
        argv = [sys.executable, "-S", "-c", _BOOT, json.dumps(sys.path)]
        argv += [os.path.dirname(_STORES), _STORES, *self._args]
        # The pipes are ours, not asyncio's ``PIPE``: on Python 3.11 a spawn cancelled
        # between its fork and the connection of its pipes (close() during a start, or the
        # event loop ending) waits forever for pipes that never connect.
        fds: list[int] = []
        try:
            fds += os.pipe()  # the child's stdin, our end to write to it
            fds += os.pipe()  # our end to read its stdout, the child's stdout
            child_in, to_child, from_child, child_out = fds
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=child_in, stdout=child_out
            )
        except BaseException as exc:
            for fd in fds:
                os.close(fd)
            if isinstance(exc, OSError):
                raise StoreError(f"{self.path}: the writer process did not start: {exc}") from exc
            raise
        os.close(child_in)  # the child's ends: only the child holds them now
        os.close(child_out)
        try:
            self._stdout, self._stdout_pipe, self._stdin = await _connect(from_child, to_child)
        except BaseException as exc:
            await self._kill()
            if isinstance(exc, Exception):
                message = f"{self.path}: the writer process's pipes did not connect: {exc!r}"
                raise StoreError(message) from exc
            raise
        try:
            body = await asyncio.wait_for(self._read(), _START_TIMEOUT)
            ok, detail = _ready.decode(body) if body is not None else (False, "it exited")
        except (TimeoutError, msgspec.DecodeError) as exc:
            ok, detail = False, f"no answer ({exc!r})"
        except BaseException:  # cancelled: leave no process behind
            await self._kill()
            raise
        if not ok:
            await self._kill()
            raise StoreError(f"{self.path}: the writer process did not start: {detail}")
        self._replies = asyncio.get_running_loop().create_task(
            self._read_replies(), name=f"durable-sqlite-writer-process {self.path}"
        )

    async def send(self, jobs: list[Job], waiters: Waiters) -> None:
        """Send one batch; returns once it is on its way (waits while DEPTH are in flight).

        Raises:
            Gone: the process takes no more batches (nothing was sent).
            TypeError, ValueError, OverflowError: a job cannot be encoded (nothing was sent).

        Each waiter gets its job's result once the batch is committed (``None`` for a
        checkpoint), the job's own error (``LeaseLostError``, ``ValueError``...; the job
        wrote nothing), or ``StoreError`` when the transaction or the process failed.
        """
        await self._room.wait()
        stdin = self._stdin
        if self._broken is not None or stdin is None:
            raise Gone(self._broken or f"{self.path}: the writer process was closed")
        body = _encoder.encode(jobs)
        frame = len(body).to_bytes(wire.HEADER, "big") + body  # > 4 GiB: OverflowError
        self._inflight.append(([kind for kind, _ in jobs], waiters))
        self._idle.clear()
        if len(self._inflight) >= DEPTH:
            self._room.clear()
        stdin.write(frame)
        with contextlib.suppress(ConnectionError):  # the reply reader fails what is in flight
            await stdin.drain()

    async def wait_idle(self) -> None:
        """Return once every batch sent has been answered (or failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Let the child answer what was sent, then end it. Idempotent."""
        process, stdin = self._process, self._stdin
        if process is None:
            return
        await self.wait_idle()
        self._broken = self._broken or f"{self.path}: the writer process was closed"
        self._stdin = None
        if stdin is not None:
            with contextlib.suppress(ConnectionError):
                # An explicit STOP: a process forked from the engine may hold the pipe open,
                # so its end alone might never come.
                stdin.write(wire.STOP)
                await stdin.drain()
            stdin.close()
        if self._replies is not None:
            await self._replies
        await process.wait()

    async def _kill(self) -> None:
        process = self._process
        try:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        finally:  # (also when cancelled while it waits)
            self._close_pipes()

    def _close_pipes(self) -> None:
        """Close the parent's ends of the pipes (the child is gone, or going)."""
        stdin, pipe = self._stdin, self._stdout_pipe
        self._stdin = self._stdout_pipe = None
        if stdin is not None:
            stdin.close()
        if pipe is not None:
            pipe.close()

    async def _read(self) -> bytes | None:
        stdout = self._stdout
        if stdout is None:
            return None
        try:
            header = await stdout.readexactly(wire.HEADER)
            return await stdout.readexactly(int.from_bytes(header, "big"))
        except asyncio.IncompleteReadError:
            return None

    async def _read_replies(self) -> None:
        why, ended = "was stopped with its event loop", False
        try:
            while (body := await self._read()) is not None:
                self._answer(body)
            why, ended = "exited", True
        except Exception as exc:  # a reply that makes no sense: stop trusting the process
            why = f"was stopped after a bad reply ({exc!r})"
        finally:
            # A bad reply, or cancelled (the loop ends without close()): the child must not
            # outlive us, and a transaction it had not committed is simply not there.
            process = self._process
            if not ended and process is not None and process.returncode is None:
                process.kill()
            code = None if process is None else await process.wait()
            self._broken = f"{self.path}: the writer process {why} (status {code})"
            self._close_pipes()
            while self._inflight:
                _fail_all(self._inflight.popleft()[1], StoreError(self._broken))
            self._room.set()
            self._idle.set()

    def _answer(self, body: bytes) -> None:
        committed, batch_error, failures, results = _reply.decode(body)
        kinds, waiters = self._inflight[0]  # decoded in full before it leaves the queue
        values = {i: _created.decode(raw) for i, raw in results if kinds[i] == wire.CREATE}
        errors = {i: wire.error_from(name, message) for i, name, message in failures}
        self._inflight.popleft()
        self._room.set()
        if not self._inflight:
            self._idle.set()
        if not committed:
            _fail_all(waiters, StoreError(batch_error))
            return
        self.batches += 1
        for index, future in enumerate(waiters):
            if future.done():
                continue
            if index in errors:
                future.set_exception(errors[index])
            else:
                future.set_result(values.get(index))
