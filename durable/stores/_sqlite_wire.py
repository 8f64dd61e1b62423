"""What the SQLite store and its writer process say to each other over the child's pipes.

The child (:mod:`durable.stores._sqlite_writer_process`) answers batches read from its
stdin, in order:

* request: a frame holding a list of jobs ``(kind, payload)``: :data:`PLAIN` with a
  :data:`PlainRow` (the write of every step), :data:`COMMIT` with any other checkpoint, or
  :data:`CREATE` with an execution row and its first events;
* reply: a frame holding ``(committed, batch_error, failures, results)``: once the batch is
  committed, ``(True, "", [(index, kind, message), ...], [(index, result), ...])`` with the
  jobs refused (their changes undone, the rest kept) and the results of those that return
  one; ``(False, message, [], [])`` when the transaction itself failed (nothing was written).

A frame is a 4-byte big-endian length and a msgpack body (msgspec; nothing is unpickled).
The first frame the child writes says it is ready: ``(True, pid)``, or ``(False, message)``.
A frame of length 0 (:data:`STOP`) asks the child to exit once the batches before it are
answered.
"""

from __future__ import annotations

import builtins

import msgspec

from durable import errors
from durable.stores.base import Checkpoint, Lease

__all__ = [
    "COMMIT",
    "CREATE",
    "HEADER",
    "PLAIN",
    "STOP",
    "PlainRow",
    "Reply",
    "error_from",
    "to_checkpoint",
    "to_row",
]

HEADER = 4
"""Bytes of the big-endian length in front of every frame."""

STOP = bytes(HEADER)
"""The frame that ends the child (see the module docstring)."""

PlainRow = tuple[str, str, int, int, list[bytes], float, bool, float | None, float | None]
"""A plain checkpoint on the wire: execution id, lease owner, lease epoch, first_seq, events,
now, release, wake_at, lease_expires."""

PLAIN, COMMIT, CREATE = 0, 1, 2
"""Job kinds: a plain checkpoint, any other checkpoint, a new execution."""

Reply = tuple[bool, str, list[tuple[int, str, str]], list[tuple[int, msgspec.Raw]]]
"""committed, batch error, failures (index, exception class name, message), results
(index, value)."""


def error_from(name: str, message: str) -> Exception:
    """The exception a job failed with in the child, rebuilt from its class name: one of
    :mod:`durable.errors` or a built-in exception; any other becomes ``StoreError``."""
    cls = getattr(errors, name, None) or getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            error: Exception = cls(message)
        except TypeError:  # another constructor signature (ExecutionFailedError)
            pass
        else:
            return error
    return errors.StoreError(f"{name}: {message}")


def to_row(cp: Checkpoint) -> PlainRow:
    """The wire form of a plain checkpoint (see ``_sqlite_schema.is_plain``)."""
    lease = cp.lease
    return (lease.execution_id, lease.owner, lease.epoch, cp.first_seq, cp.events, cp.now,
            cp.release, cp.wake_at, cp.lease_expires)  # fmt: skip


def to_checkpoint(row: PlainRow) -> Checkpoint:
    """The checkpoint a :data:`PlainRow` describes."""
    execution_id, owner, epoch, first_seq, events, now, release, wake_at, lease_expires = row
    return Checkpoint(Lease(execution_id, owner, epoch), first_seq, events, now,
                      release, wake_at, lease_expires)  # fmt: skip
