"""The SQLite store's writer process: checkpoints committed outside the engine's GIL.

Started by :class:`~durable.stores._sqlite_process.ProcessWriter`, which calls :func:`main`
in a fresh interpreter. It owns one connection to the (already migrated) database and
answers the batches read from stdin, in order, as :mod:`durable.stores._sqlite_wire`
describes; nothing else imports this module.

It ends at a :data:`~durable.stores._sqlite_wire.STOP` frame, at the end of stdin (the
engine closed the pipe, or died), or when its parent is gone (a process forked from the
engine may keep the pipe open), after the batch at hand: a batch committed after its engine
died only holds checkpoints whose waiters were never released, which a crash may always
leave behind.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import sqlite3
import sys
from typing import Any, NoReturn

import msgspec

from durable.errors import StoreError
from durable.stores import _sqlite_batch as wsql
from durable.stores import _sqlite_schema as sql
from durable.stores import _sqlite_wire as wire
from durable.stores.base import Checkpoint, ExecutionRow

__all__ = ["main"]

_PARENT_CHECK = 1.0  # seconds between checks that the engine is still our parent

_request = msgspec.msgpack.Decoder(list[tuple[int, msgspec.Raw]])
_plain = msgspec.msgpack.Decoder(wire.PlainRow)
_commit = msgspec.msgpack.Decoder(Checkpoint)
_create = msgspec.msgpack.Decoder(tuple[ExecutionRow, list[bytes]])
_encoder = msgspec.msgpack.Encoder()


class _Input:
    """Frames from a pipe, ending when it closes or the process that started us is gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.parent = os.getppid()

    def _read(self, size: int) -> bytes | None:
        chunks: list[bytes] = []
        while size:
            ready, _, _ = select.select([self.fd], [], [], _PARENT_CHECK)
            if not ready:
                if os.getppid() != self.parent:
                    return None  # orphaned: the engine died, a fork of it holds the pipe
                continue
            chunk = os.read(self.fd, size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def frame(self) -> bytes | None:
        """The next frame's body, or ``None`` at the end (a partial frame counts as end)."""
        header = self._read(wire.HEADER)
        if header is None or header == wire.STOP:
            return None
        return self._read(int.from_bytes(header, "big"))


def _write(fd: int, body: bytes) -> None:
    data = memoryview(len(body).to_bytes(wire.HEADER, "big") + body)
    while data:
        data = data[os.write(fd, data) :]


def _refuse(error: Exception, conn: sqlite3.Connection) -> NoReturn:
    raise error


def _job(kind: int, payload: msgspec.Raw) -> wsql.Job:
    try:
        if kind == wire.PLAIN:
            return wire.to_checkpoint(_plain.decode(payload))
        if kind == wire.COMMIT:
            return functools.partial(sql.commit, cp=_commit.decode(payload))
        if kind == wire.CREATE:
            row, events = _create.decode(payload)
            return functools.partial(sql.create, row=row, events=events)
        raise ValueError(f"unknown job kind {kind!r}")
    except (msgspec.DecodeError, ValueError) as exc:  # this job fails alone, in its turn
        return functools.partial(_refuse, exc)


def _failure(index: int, error: BaseException) -> tuple[int, str, str]:
    return (index, type(error).__name__, str(error))


def _answer(conn: sqlite3.Connection, path: str, timeout: float, body: bytes) -> bytes:
    jobs = [_job(kind, payload) for kind, payload in _request.decode(body)]
    try:
        outcomes = wsql.guarded(conn, path, timeout, wsql.apply_batch, path, jobs)
    except StoreError as exc:
        return _encoder.encode((False, exc.message, [], []))
    failures = [_failure(i, value) for i, (ok, value) in enumerate(outcomes) if not ok]
    results: list[tuple[int, Any]] = [
        (i, value) for i, (ok, value) in enumerate(outcomes) if ok and value is not None
    ]
    return _encoder.encode((True, "", failures, results))


def main(argv: list[str]) -> int:
    """Serve batches from stdin; returns the exit status.

    ``argv``: the path as the store names it (for messages), the path to open,
    ``synchronous`` and ``busy_timeout``.
    """
    path, location, synchronous, timeout = argv[0], argv[1], argv[2].upper(), float(argv[3])
    if synchronous not in wsql.SYNCHRONOUS:
        print(f"unknown synchronous mode {synchronous!r}", file=sys.stderr)
        return 2
    # Only the engine ends this process: Ctrl-C in a terminal (SIGINT to the whole process
    # group) or a service manager's SIGTERM to every process of the service must not cut
    # the writes the engine makes while it shuts down gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = _Input(sys.stdin.fileno()), sys.stdout.fileno()
    try:
        conn = sqlite3.connect(location, isolation_level=None, timeout=timeout)
        conn.execute(f"PRAGMA synchronous = {synchronous}")  # one of four constants
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        _write(out, _encoder.encode((False, wsql.store_error(exc, path).message)))
        return 1
    _write(out, _encoder.encode((True, os.getpid())))
    try:
        while (body := inp.frame()) is not None:
            _write(out, _answer(conn, path, timeout, body))
    except BrokenPipeError:  # the engine is gone: nobody waits for the reply
        return 0
    finally:
        conn.close()
    return 0
