"""Callback rules shared by every store, so that each backend words and decides them alike.

The stores differ only in where rows live; whether a pending callback has expired, which
deadline decides, how a child execution's end answers its parent's callback, and what every
refusal says are decided here, once.
"""

from __future__ import annotations

from collections.abc import Iterable

from durable.errors import CallbackAlreadyCompletedError, CallbackNotFoundError
from durable.stores.base import CallbackRow, CallbackStatus, Finish, NewCallback, NewChild
from durable.types import ErrorInfo, ExecutionStatus

__all__ = [
    "ANSWERS",
    "OPERATION_ENDED",
    "check_answer",
    "check_cancelled",
    "check_children",
    "check_delivered",
    "child_answer",
    "check_new",
    "expiry",
    "new_row",
    "not_found",
    "not_pending",
    "operation_ended",
    "timed_out",
]

ANSWERS = (CallbackStatus.SUCCEEDED, CallbackStatus.FAILED)
"""The statuses an outside system may complete a callback with."""

OPERATION_ENDED = "Callback.Cancelled"
"""``error.type`` of a callback a checkpoint cancelled (its operation ended without it).

A callback cancelled because its execution ended keeps ``error = None``; the two causes are
told apart by this error, which both stores store alike.
"""


def operation_ended(operation_id: str) -> ErrorInfo:
    """The error stored on a callback a checkpoint cancelled (``Checkpoint.cancelled``)."""
    return ErrorInfo(
        type=OPERATION_ENDED,
        message=f"operation {operation_id!r}, which was waiting for this callback, has ended",
    )


def check_answer(status: str) -> None:
    """Refuse a completion status other than ``SUCCEEDED`` or ``FAILED``.

    Raises:
        ValueError: naming the status.
    """
    if status not in ANSWERS:
        raise ValueError(
            f"a callback is completed with status {' or '.join(ANSWERS)}, not {status!r}"
        )


def new_row(execution_id: str, new: NewCallback) -> CallbackRow:
    """The ``PENDING`` row a checkpoint inserts for ``new``."""
    heartbeat_at = None if new.heartbeat_timeout is None else new.created_at + new.heartbeat_timeout
    return CallbackRow(
        callback_id=new.callback_id,
        execution_id=execution_id,
        operation_id=new.operation_id,
        status=CallbackStatus.PENDING,
        created_at=new.created_at,
        timeout_at=new.timeout_at,
        heartbeat_timeout=new.heartbeat_timeout,
        heartbeat_at=heartbeat_at,
    )


def check_new(news: list[NewCallback], existing: Iterable[str]) -> None:
    """Refuse callback ids that are already stored or repeated within one checkpoint.

    Raises:
        ValueError: naming the id (the checkpoint writes nothing).
    """
    taken = set(existing)
    for new in news:
        if new.callback_id in taken:
            raise ValueError(f"callback {new.callback_id!r} already exists")
        taken.add(new.callback_id)


def check_delivered(
    execution_id: str, ids: Iterable[str], found: dict[str, tuple[str, str]]
) -> None:
    """Refuse to mark delivered a callback that is unknown, another's, or still pending.

    ``found`` maps each stored id among ``ids`` to its ``(execution_id, status)``. An outcome
    can only be delivered once it exists; marking a pending callback delivered would lose the
    answer it is waiting for.

    Raises:
        ValueError: naming the id (the checkpoint writes nothing).
    """
    for callback_id in ids:
        if callback_id not in found:
            raise ValueError(f"cannot mark callback {callback_id!r} delivered: no such callback")
        owner, status = found[callback_id]
        if owner != execution_id:
            raise ValueError(
                f"cannot mark callback {callback_id!r} delivered by execution "
                f"{execution_id!r}: it belongs to execution {owner!r}"
            )
        if status == CallbackStatus.PENDING:
            raise ValueError(f"cannot mark callback {callback_id!r} delivered: it is still PENDING")


def check_cancelled(execution_id: str, ids: Iterable[str], owners: dict[str, str]) -> None:
    """Refuse to cancel a callback that is unknown or belongs to another execution.

    ``owners`` maps each stored id among ``ids`` (and the ids the same checkpoint creates)
    to the execution that owns it. Its status does not matter here: one that is no longer
    pending is left as it is.

    Raises:
        ValueError: naming the id (the checkpoint writes nothing).
    """
    for callback_id in ids:
        owner = owners.get(callback_id)
        if owner is None:
            raise ValueError(f"cannot cancel callback {callback_id!r}: no such callback")
        if owner != execution_id:
            raise ValueError(
                f"cannot cancel callback {callback_id!r} for execution {execution_id!r}: "
                f"it belongs to execution {owner!r}"
            )


def check_children(
    execution_id: str, children: list[NewChild], callback_owners: dict[str, str]
) -> None:
    """Refuse a child that does not hang off one of the writing execution's callbacks.

    ``callback_owners`` maps each stored callback id among the children's
    ``parent_callback_id`` (and the ids the same checkpoint creates) to the execution that
    owns it. A child must name ``execution_id`` as its ``parent_id`` and one of its callbacks
    as its ``parent_callback_id``: its end answers that callback, and ``stop`` finds it
    through ``parent_id``.

    Raises:
        ValueError: naming the child (the checkpoint writes nothing).
    """
    for child in children:
        row = child.row
        what = f"child execution {row.execution_id!r} of execution {execution_id!r}"
        if row.parent_id != execution_id:
            raise ValueError(f"{what} has parent_id {row.parent_id!r}")
        if not -(2**63) <= row.seed < 2**63:
            raise ValueError(
                f"ExecutionRow.seed must fit in a signed 64-bit integer, got {row.seed}"
            )
        callback_id = row.parent_callback_id
        if callback_id is None:
            raise ValueError(f"{what} has no parent_callback_id")
        owner = callback_owners.get(callback_id)
        if owner is None:
            raise ValueError(f"{what} names callback {callback_id!r}, which does not exist")
        if owner != execution_id:
            raise ValueError(f"{what} names callback {callback_id!r} of execution {owner!r}")


def child_answer(execution_id: str, finish: Finish) -> tuple[str, bytes | None, ErrorInfo | None]:
    """``(status, result, error)`` that a child's ``finish`` answers its parent's callback with.

    ``SUCCEEDED`` with the finish result; anything else ``FAILED`` with the finish error, or
    an error whose type is the status when the finish has none.
    """
    if finish.status == ExecutionStatus.SUCCEEDED:
        return CallbackStatus.SUCCEEDED, finish.result, None
    error = finish.error or ErrorInfo(
        type=finish.status, message=f"child execution {execution_id} ended {finish.status}"
    )
    return CallbackStatus.FAILED, None, error


def expiry(row: CallbackRow, now: float) -> tuple[ErrorInfo, float] | None:
    """The timeout error and its deadline when pending ``row`` is past a deadline at ``now``.

    The earlier deadline decides; when both fall at the same time, ``Callback.Timeout`` does.
    ``None`` when the callback is not pending or no deadline has passed.
    """
    if row.status != CallbackStatus.PENDING:
        return None
    # (deadline, rank, error): ties go to the overall timeout.
    passed: list[tuple[float, int, ErrorInfo]] = []
    if row.timeout_at is not None and row.timeout_at <= now:
        seconds = row.timeout_at - row.created_at
        message = f"callback timed out after {seconds:g} s"
        passed.append((row.timeout_at, 0, ErrorInfo(type="Callback.Timeout", message=message)))
    if (
        row.heartbeat_at is not None
        and row.heartbeat_timeout is not None
        and row.heartbeat_at <= now
    ):
        message = f"no heartbeat for {row.heartbeat_timeout:g} s"
        passed.append((row.heartbeat_at, 1, ErrorInfo(type="Callback.Heartbeat", message=message)))
    if not passed:
        return None
    deadline, _, error = min(passed, key=lambda item: item[:2])
    return error, deadline


def not_found(callback_id: str) -> CallbackNotFoundError:
    """The error for an id no callback has."""
    return CallbackNotFoundError(f"no callback has id {callback_id!r}")


def not_pending(row: CallbackRow) -> CallbackAlreadyCompletedError:
    """The error for a callback that is no longer ``PENDING``."""
    callback_id, status = row.callback_id, row.status
    ended_operation = row.error is not None and row.error.type == OPERATION_ENDED
    if status == CallbackStatus.CANCELLED and ended_operation:
        why = (
            f"it was cancelled because operation {row.operation_id!r}, which was waiting for "
            "it, has ended"
        )
    elif status == CallbackStatus.CANCELLED:
        why = f"it was cancelled because execution {row.execution_id!r} has ended"
    elif status == CallbackStatus.TIMED_OUT:
        why = "it already timed out"
    else:
        why = "it was already completed"
    return CallbackAlreadyCompletedError(f"callback {callback_id!r} is {status}: {why}")


def timed_out(row: CallbackRow) -> CallbackAlreadyCompletedError:
    """The error for a callback that timed out when this very call looked at it."""
    detail = "" if row.error is None else f" ({row.error.type}: {row.error.message})"
    return CallbackAlreadyCompletedError(
        f"callback {row.callback_id!r} is {row.status}: it timed out{detail}"
    )
