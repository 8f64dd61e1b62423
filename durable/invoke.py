"""``ctx.invoke``: run another registered workflow as a child execution and await it.

The child is an execution of its own (visible in ``engine.list()``, ``parent_id`` set), with
an id derived from the parent's (``<parent id>:<operation id>``), created in the same commit
as ``ChainedInvokeStarted``. Any worker may run it. Its end answers an internal callback of
the parent in the same transaction, so the parent resumes through the callback inbox, also
across restarts, and records ``ChainedInvokeSucceeded`` / ``ChainedInvokeFailed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from durable.callback import new_callback_id
from durable.errors import InvokeError
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpStatus
from durable.stores.base import NewCallback, NewChild
from durable.workflow import Workflow, new_execution

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["InvokeOp", "child_execution_id"]

T = TypeVar("T")


def child_execution_id(parent_id: str, op_id: str) -> str:
    """The id of the child execution an invoke starts: stable across replays."""
    return f"{parent_id}:{op_id}"


class InvokeOp(Operation[T]):
    """The awaitable ``ctx.invoke`` returns."""

    kind = "ChainedInvoke"
    default_sub_type = SubType.CHAINED_INVOKE.value
    __slots__ = ("data", "timeout", "workflow")

    def __init__(
        self,
        ctx: DurableContext,
        workflow: Workflow[T],
        data: bytes,
        *,
        name: str | None,
        timeout: float | None,
    ) -> None:
        super().__init__(ctx, name)
        self.workflow = workflow
        self.data = data
        self.timeout = timeout

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """The child's recorded end, or start it (once) and wait."""
        record = self.record_for(inv)
        if record is not None and record.status is OpStatus.SUCCEEDED:
            assert record.result is not None
            what = f"result of invoked workflow {self.workflow.name!r}"
            value = inv.serde.decode(record.result, self.workflow.result_type, what=what)
            return Value(value, record.ended_ts)
        if record is not None and record.status is OpStatus.FAILED:
            assert record.error is not None
            return Raise(
                InvokeError(record.error.message, error_type=record.error.type), record.ended_ts
            )
        if record is None:
            self._start_child(inv)
        inv.block(fiber, self, inv.callback_deadlines.get(self.op_id))
        return None

    def _start_child(self, inv: Invocation) -> None:
        now = inv.now()
        child_id = child_execution_id(inv.execution_id, self.op_id)
        callback_id = new_callback_id()
        inv.record(
            self.event(
                EventType.CHAINED_INVOKE_STARTED,
                now,
                input=self.data,
                function_name=self.workflow.name,
                version=self.workflow.version,
                child_id=child_id,
                callback_id=callback_id,
            )
        )
        timeout_at = None if self.timeout is None else now + self.timeout
        inv.add_callback(
            NewCallback(callback_id, self.op_id, created_at=now, timeout_at=timeout_at),
            timeout_at,
        )
        row, events = new_execution(
            self.workflow.name,
            child_id,
            self.data,
            now,
            workflow=self.workflow,
            parent_id=inv.execution_id,
            parent_callback_id=callback_id,
        )
        inv.add_child(NewChild(row, events))
