"""``ctx.wait``: a durable timer. One row in the store, no task, no memory while it waits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable.errors import DurableError
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpStatus

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["WaitOp"]


class WaitOp(Operation[None]):
    """The awaitable ``ctx.wait`` returns."""

    kind = "Wait"
    default_sub_type = SubType.WAIT.value
    __slots__ = ("seconds",)

    def __init__(self, ctx: DurableContext, seconds: float, name: str | None) -> None:
        super().__init__(ctx, name)
        self.seconds = seconds

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Start the timer, or finish it when due; the recorded due time always wins."""
        record = self.record_for(inv)
        now = inv.now()
        if record is None:
            record = inv.record(
                self.event(
                    EventType.WAIT_STARTED, now, duration=self.seconds, until=now + self.seconds
                )
            )
            assert record is not None
        if record.status is OpStatus.SUCCEEDED:
            return Value(None, record.ended_ts)
        if record.status is OpStatus.FAILED:
            message = record.error.message if record.error else "wait cancelled"
            return Raise(DurableError(message, error_type="WaitCancelled"), record.ended_ts)
        assert record.until is not None
        if now >= record.until:
            inv.record(self.event(EventType.WAIT_SUCCEEDED, now, duration=self.seconds))
            return Value(None, now)
        inv.block(fiber, self, record.until)
        return None
