"""The callback inbox, from the driver's side: answers, expiries and child executions.

Answers to callbacks (and the ends of child executions started by ``ctx.invoke``, which
answer an internal callback) wait in the store until the invocation that owns the
execution records them as events; these functions do that for an :class:`Invocation`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from durable.errors import DurableError
from durable.events import Event, EventType, encode_event
from durable.stores.base import CallbackStatus
from durable.types import ErrorInfo

if TYPE_CHECKING:
    from durable.invocation import Invocation

__all__ = ["INBOX_KINDS", "collect_inbox", "earliest", "stop_orphaned_children"]

INBOX_KINDS = ("Callback", "ChainedInvoke")
"""Operations whose outcome arrives through the callback inbox."""

_INVOKE_OUTCOME = {
    CallbackStatus.SUCCEEDED: EventType.CHAINED_INVOKE_SUCCEEDED,
    CallbackStatus.FAILED: EventType.CHAINED_INVOKE_FAILED,
    CallbackStatus.TIMED_OUT: EventType.CHAINED_INVOKE_FAILED,
}

_CALLBACK_OUTCOME = {
    CallbackStatus.SUCCEEDED: EventType.CALLBACK_SUCCEEDED,
    CallbackStatus.FAILED: EventType.CALLBACK_FAILED,
    CallbackStatus.TIMED_OUT: EventType.CALLBACK_TIMED_OUT,
}


def earliest(*times: float | None) -> float | None:
    """The earliest of the known times, or ``None``."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


async def collect_inbox(inv: Invocation) -> None:
    """Record the callback answers and expiries waiting in the store (durably)."""
    inv._inbox_requested = False
    inv._last_inbox = time.monotonic()
    now = inv.now()
    for row in await inv.rt.store.collect_callbacks(inv.lease, now=now):
        op_id = row.operation_id
        if row.status == CallbackStatus.PENDING:
            inv.callback_deadlines[op_id] = earliest(row.timeout_at, row.heartbeat_at)
            continue
        inv._delivered.append(row.callback_id)
        inv.callback_deadlines.pop(op_id, None)
        record = inv.state.ops.get(op_id)
        if record is None or record.done:
            continue
        event_type, error = _CALLBACK_OUTCOME[row.status], row.error
        if record.kind == "ChainedInvoke":
            event_type = _INVOKE_OUTCOME[row.status]
            if row.status == CallbackStatus.TIMED_OUT and record.child_id is not None:
                error = await _stop_overdue_child(inv, record.child_id, row.timeout_at, now)
        inv.record(
            Event(
                t=event_type,
                ts=now,
                id=op_id,
                st=record.sub_type,
                name=record.name,
                parent=record.parent,
                result=row.result,
                error=error,
            )
        )
    for fiber, (op, _) in list(inv._blocked.items()):
        if op.kind in INBOX_KINDS:
            del inv._blocked[fiber]
            outcome = inv._guard(op.resolve, inv, fiber)
            if outcome is not None:
                inv._held.append((fiber, outcome))
    # recorded answers are read from the state by fibers not blocked yet: commit first
    await inv._flush()


async def _stop_overdue_child(
    inv: Invocation, child_id: str, timeout_at: float | None, now: float
) -> ErrorInfo:
    """An invoke timed out: the parent stops waiting, and the child stops running."""
    record = inv.state.ops
    limit = ""
    for op in record.values():
        if op.child_id == child_id and timeout_at is not None:
            limit = f" within {timeout_at - op.started_ts:g} s"
    error = ErrorInfo(
        type="Invoke.Timeout",
        message=f"child execution {child_id!r} did not finish{limit}; it was stopped",
    )
    stopped = Event(t=EventType.EXECUTION_STOPPED, ts=now, error=error)
    await inv.rt.store.stop(child_id, now=now, error=error, event=encode_event(stopped))
    return error


async def stop_orphaned_children(inv: Invocation, now: float) -> None:
    """Children nobody awaits any more (a cancelled branch, a failed parent) are stopped."""
    for record in inv.state.ops.values():
        if record.kind != "ChainedInvoke" or record.done or record.child_id is None:
            continue
        error = ErrorInfo(
            type="ExecutionStopped",
            message=f"its parent execution {inv.execution_id!r} ended",
        )
        stopped = Event(t=EventType.EXECUTION_STOPPED, ts=now, error=error)
        try:
            await inv.rt.store.stop(
                record.child_id, now=now, error=error, event=encode_event(stopped)
            )
        except DurableError as exc:  # best effort: the parent's end is already durable
            inv.logger.warning(
                "could not stop a child execution", child=record.child_id, error=str(exc)
            )
