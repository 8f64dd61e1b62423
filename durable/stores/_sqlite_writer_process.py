"""The SQLite store's writer process: checkpoints committed outside the engine's GIL.

Started by :class:`~durable.stores._sqlite_process.ProcessWriter`, which calls :func:`main`
with ``PATH SYNCHRONOUS BUSY_TIMEOUT`` in a fresh interpreter. It owns one
connection to the (already migrated) database and answers the batches read from stdin, in
order, as :mod:`durable.stores._sqlite_wire` describes; nothing else imports this module.

End of input (the engine closed the pipe, or died) ends the process after the batch at hand:
a batch committed after its engine died only holds checkpoints whose waiters were never
released, which a crash may always leave behind.
"""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import sys
from typing import Any

import msgspec

from durable.errors import StoreError
from durable.stores import _sqlite_batch as wsql
from durable.stores import _sqlite_schema as sql
from durable.stores import _sqlite_wire as wire
from durable.stores.base import Checkpoint, ExecutionRow

__all__ = ["main"]

_request = msgspec.msgpack.Decoder(list[tuple[int, msgspec.Raw]])
_plain = msgspec.msgpack.Decoder(wire.PlainRow)
_commit = msgspec.msgpack.Decoder(Checkpoint)
_create = msgspec.msgpack.Decoder(tuple[ExecutionRow, list[bytes]])
_encoder = msgspec.msgpack.Encoder()


def _job(kind: int, payload: msgspec.Raw) -> wsql.Job:
    if kind == wire.PLAIN:
        return wire.to_checkpoint(_plain.decode(payload))
    if kind == wire.COMMIT:
        return functools.partial(sql.commit, cp=_commit.decode(payload))
    if kind == wire.CREATE:
        row, events = _create.decode(payload)
        return functools.partial(sql.create, row=row, events=events)
    raise ValueError(f"unknown job kind {kind!r}")


def _failure(index: int, error: BaseException) -> tuple[int, str, str]:
    name = type(error).__name__
    if wire.ERRORS.get(name) is type(error):
        return (index, name, str(error))
    return (index, "StoreError", f"{name}: {error}")


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
    """Serve batches from stdin until it ends; returns the exit status."""
    path, synchronous, timeout = argv[0], argv[1].upper(), float(argv[2])
    if synchronous not in wsql.SYNCHRONOUS:
        print(f"unknown synchronous mode {synchronous!r}", file=sys.stderr)
        return 2
    # Only the end of stdin ends this process: Ctrl-C in a terminal (SIGINT to the whole
    # process group) or a service manager's SIGTERM to every process of the service must
    # not cut the writes the engine makes while it shuts down gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
        conn.execute(f"PRAGMA synchronous = {synchronous}")  # one of four constants
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        wire.write_frame(out, _encoder.encode((False, wsql.store_error(exc, path).message)))
        return 1
    wire.write_frame(out, _encoder.encode((True, os.getpid())))
    try:
        while (body := wire.read_frame(inp)) is not None:
            wire.write_frame(out, _answer(conn, path, timeout, body))
    except BrokenPipeError:  # the engine is gone: nobody waits for the reply
        return 0
    finally:
        conn.close()
    return 0
