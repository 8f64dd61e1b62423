"""``Workflow``: what ``@engine.workflow`` returns."""

from __future__ import annotations

import functools
import inspect
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from durable.events import Event, EventType, encode_event
from durable.serde import input_type, return_type
from durable.stores.base import ExecutionRow
from durable.types import Duration, ExecutionStatus, to_seconds

if TYPE_CHECKING:
    from durable.context import DurableContext

__all__ = ["Workflow", "WorkflowFn", "new_execution", "new_execution_id"]

T = TypeVar("T")
WorkflowFn = Callable[..., Coroutine[Any, Any, T]]


class Workflow(Generic[T]):
    """A registered workflow: the ``async def`` plus its name and options.

    It keeps the function's ``__name__``, ``__doc__`` and ``__wrapped__``; start it with
    ``engine.start(workflow, input)`` (or by its registered name).

    Attributes:
        name: the registered name (the function's ``__name__`` unless given).
        timeout: seconds after its start at which an execution times out, or ``None``.
        retention: seconds a finished execution is kept before purging, or ``None``.
        version: recorded as ``ExecutedVersion`` when invoked as a child.
    """

    def __init__(
        self,
        fn: WorkflowFn[T],
        *,
        name: str | None = None,
        timeout: Duration | None = None,
        retention: Duration | None = None,
        version: str = "$LATEST",
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@engine.workflow needs an 'async def', got {getattr(fn, '__name__', fn)!r}"
            )
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(
                f"workflow {fn.__name__!r} must take (ctx) or (ctx, input), "
                f"it takes {len(params)} parameters"
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.timeout = None if timeout is None else to_seconds(timeout, what="workflow timeout")
        self.retention = (
            None if retention is None else to_seconds(retention, what="workflow retention")
        )
        self.version = version
        self.takes_input = len(params) == 2
        self.input_type = input_type(fn, 1) if self.takes_input else Any
        self.result_type = return_type(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, ctx: DurableContext, input: Any = None) -> Coroutine[Any, Any, T]:
        """Create the workflow coroutine (the engine does this; users call ``engine.start``)."""
        if self.takes_input:
            return self.fn(ctx, input)
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}>"


def new_execution_id() -> str:
    """A new execution id: a UUIDv7 (RFC 9562) in 32 hex digits, ordered by creation time.

    The first 48 bits are the Unix time in milliseconds, the rest random (74 bits), so ids
    made one after the other sort together. The store keeps each execution's events in the
    order of its id: with ordered ids the executions running now write to the same few
    B-tree pages at the end of the index, where random ids (UUIDv4) scatter their writes
    over the whole database, which grows slower to write as it grows (``bench_concurrency.py
    --sustained``).
    """
    random = secrets.randbits(74)
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80
    value |= 0x7 << 76 | (random >> 62) << 64 | 0b10 << 62 | random & (1 << 62) - 1
    return f"{value:032x}"


def new_execution(
    name: str,
    execution_id: str,
    data: bytes,
    now: float,
    *,
    workflow: Workflow[Any] | None,
    parent_id: str | None = None,
    parent_callback_id: str | None = None,
) -> tuple[ExecutionRow, list[bytes]]:
    """The row and first event (``ExecutionStarted``) of a new, runnable execution."""
    row = ExecutionRow(
        execution_id=execution_id,
        workflow=name,
        status=ExecutionStatus.RUNNING.value,
        input=data,
        created_at=now,
        updated_at=now,
        seed=secrets.randbits(63),
        wake_at=now,
        deadline=now + workflow.timeout if workflow is not None and workflow.timeout else None,
        retention=workflow.retention if workflow is not None else None,
        parent_id=parent_id,
        parent_callback_id=parent_callback_id,
    )
    # AWS names the event after the execution (the id users choose), as DESIGN.md shows
    started = Event(
        t=EventType.EXECUTION_STARTED, ts=now, id=execution_id, name=execution_id, input=data
    )
    return row, [encode_event(started)]
