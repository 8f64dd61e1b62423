"""Child contexts: ``ctx.run_in_child_context`` and the contexts other primitives build on.

A child context runs ``async def fn(child_ctx)`` as its own coroutine with its own
operation-id namespace (the child's operations are numbered under the context's id). Its
result is checkpointed as one value (``ContextSucceeded``); on replay a succeeded context
returns that value without running ``fn`` again, unless the value was over the payload
limit: then it was not stored and ``fn`` re-runs, replaying its own checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from durable.errors import ChildContextError, PayloadTooLargeError, SerializationError
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpStatus
from durable.types import ErrorInfo

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["ChildContextOp"]

T = TypeVar("T")

ChildFn = Callable[["DurableContext"], Coroutine[Any, Any, Any]]


class ChildContextOp(Operation[T]):
    """The awaitable ``ctx.run_in_child_context`` returns (and the base of composite ones)."""

    kind = "Context"
    default_sub_type = SubType.RUN_IN_CHILD_CONTEXT.value
    rerun_failures: ClassVar[bool] = False
    """Re-run a failed child on replay so it raises its original error (not a summary)."""
    __slots__ = ("fiber", "fn")

    def __init__(
        self, ctx: DurableContext, fn: ChildFn, *, name: str | None, sub_type: str | None = None
    ) -> None:
        super().__init__(ctx, name, sub_type=sub_type)
        self.fn = fn
        self.fiber: Fiber | None = None
        """The child's coroutine while it runs in this invocation."""

    @property
    def label(self) -> str:
        """How errors name this context."""
        return f"child context {self.name!r}" if self.name else f"child context {self.op_id}"

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Return the recorded result, or (re-)run the child coroutine."""
        record = self.record_for(inv)
        if record is not None and record.status is OpStatus.SUCCEEDED and record.result:
            return Value(
                inv.serde.decode(record.result, what=f"result of {self.label}"), record.ended_ts
            )
        if record is not None and record.status is OpStatus.FAILED and not self.rerun_failures:
            assert record.error is not None
            return Raise(self.error_for(record.error), record.ended_ts)
        if record is None:
            record = inv.record(self.event(EventType.CONTEXT_STARTED, inv.now()))
            assert record is not None
        child = fiber.ctx._child(self.op_id, start_time=record.started_ts)
        self.fiber = inv.spawn_child(fiber, self, self.body(child), child)
        return None

    def body(self, child: DurableContext) -> Coroutine[Any, Any, Any]:
        """The coroutine the child context runs."""
        return self.fn(child)

    def error_for(self, info: ErrorInfo) -> BaseException:
        """The exception the parent sees for a recorded failure."""
        return ChildContextError(info.message, error_type=info.type)

    def on_child_done(self, inv: Invocation, fiber: Fiber, outcome: Outcome) -> Outcome | None:
        """Checkpoint the child's end as one value (or one error)."""
        record = inv.state.ops[self.op_id]
        if record.done:  # re-run of a context whose end is already recorded
            if isinstance(outcome, Raise):
                error = (
                    outcome.error
                    if self.rerun_failures
                    else self.error_for(record.error or ErrorInfo.from_exception(outcome.error))
                )
                return Raise(error, record.ended_ts)
            return Value(outcome.value, record.ended_ts)
        now = inv.now()
        if isinstance(outcome, Raise):
            info = ErrorInfo.from_exception(outcome.error)
            inv.record(self.event(EventType.CONTEXT_FAILED, now, error=info))
            error = outcome.error if self.rerun_failures else self.error_for(info)
            return Raise(error, now)
        try:
            data, value = inv.serde.roundtrip(outcome.value, Any, what=f"result of {self.label}")
        except PayloadTooLargeError:
            # Not stored: replay re-runs the child from its own checkpoints instead.
            inv.record(self.event(EventType.CONTEXT_SUCCEEDED, now))
            return Value(outcome.value, now)
        except SerializationError as exc:
            inv.record(
                self.event(EventType.CONTEXT_FAILED, now, error=ErrorInfo.from_exception(exc))
            )
            return Raise(exc, now)
        inv.record(self.event(EventType.CONTEXT_SUCCEEDED, now, result=data))
        return Value(value, now)
