"""``ctx.parallel`` and ``ctx.map``: child contexts run concurrently, admitted by index.

A batch is a context (sub type ``Parallel`` / ``Map``); each branch or item is a child
context under it (``ParallelBranch`` / ``MapIteration``) with its own operation ids, so
ids never depend on which item finished first. Items start in index order up to
``max_concurrency``; as each one ends the completion rules are checked; when they are met,
items still running are cancelled (nothing further is recorded for them) and items never
started are never run. The batch's :class:`BatchResult` is checkpointed as one value.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from durable.child import ChildContextOp
from durable.completion import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    Completion,
    completion_reason,
)
from durable.errors import ChildContextError, PayloadTooLargeError
from durable.events import EventType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpStatus
from durable.types import ErrorInfo

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["BatchOp", "ItemFn"]

ItemFn = Callable[["DurableContext"], Coroutine[Any, Any, Any]]


class _ItemOp(ChildContextOp[Any]):
    """One branch or map item: a child context that reports its end to its batch."""

    __slots__ = ("batch", "index")

    def __init__(
        self, batch: BatchOp, index: int, ctx: DurableContext, fn: ItemFn, name: str | None
    ) -> None:
        super().__init__(ctx, fn, name=name, sub_type=batch.item_sub_type)
        self.batch = batch
        self.index = index

    def on_child_done(self, inv: Invocation, fiber: Fiber, outcome: Outcome) -> Outcome | None:
        """Checkpoint the item, then let the batch decide what happens next."""
        item_outcome = super().on_child_done(inv, fiber, outcome)
        assert item_outcome is not None
        return self.batch.item_done(inv, self.index, item_outcome)


class BatchOp(Operation[BatchResult[Any]]):
    """The awaitable ``ctx.parallel`` and ``ctx.map`` return."""

    kind = "Context"
    __slots__ = (
        "_ctx",
        "_done",
        "_fiber",
        "_items",
        "_next",
        "_running",
        "completion",
        "item_sub_type",
        "makers",
        "max_concurrency",
        "names",
    )

    def __init__(
        self,
        ctx: DurableContext,
        makers: list[ItemFn],
        names: list[str | None],
        *,
        name: str | None,
        sub_type: str,
        item_sub_type: str,
        max_concurrency: int | None,
        completion: Completion,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
        completion.check(len(makers))
        super().__init__(ctx, name, sub_type=sub_type)
        self.makers = makers
        self.names = names
        self.item_sub_type = item_sub_type
        self.max_concurrency = max_concurrency or max(len(makers), 1)
        self.completion = completion
        self._items: dict[int, BatchItem[Any]] = {}
        self._running: dict[int, _ItemOp] = {}
        self._next = 0
        self._done = False

    @property
    def label(self) -> str:
        """How errors name this batch."""
        kind = (self.sub_type or "batch").lower()
        return f"{kind} {self.name!r}" if self.name else f"{kind} {self.op_id}"

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """The recorded result, or start admitting items."""
        record = self.record_for(inv)
        if record is not None and record.status is OpStatus.SUCCEEDED and record.result:
            data = inv.serde.decode(record.result, what=f"result of {self.label}")
            return Value(BatchResult.from_builtins(data), record.ended_ts)
        if record is not None and record.status is OpStatus.FAILED:
            assert record.error is not None
            error = ChildContextError(record.error.message, error_type=record.error.type)
            return Raise(error, record.ended_ts)
        if record is None:
            record = inv.record(self.event(EventType.CONTEXT_STARTED, inv.now()))
            assert record is not None
        self._fiber = fiber
        self._ctx = fiber.ctx._child(self.op_id, start_time=record.started_ts)
        outcome = self._pump(inv)
        if outcome is not None:
            inv.hold_until_durable()
        return outcome

    def _pump(self, inv: Invocation) -> Outcome | None:
        """Admit items in index order while there is room; settle recorded ones at once."""
        while not self._done and self._next < len(self.makers):
            if len(self._running) >= self.max_concurrency:
                return None
            index = self._next
            self._next += 1
            item = _ItemOp(self, index, self._ctx, self.makers[index], self.names[index])
            outcome = item.resolve(inv, self._fiber)
            if outcome is None:
                self._running[index] = item
                continue
            self._settle(index, outcome)
            finished = self._check(inv)
            if finished is not None:
                return finished
        return self._check(inv)

    def item_done(self, inv: Invocation, index: int, outcome: Outcome) -> Outcome | None:
        """An item's child context ended (its end is recorded): check, then admit more."""
        self._running.pop(index, None)
        if self._done:
            return None
        self._settle(index, outcome)
        finished = self._check(inv)
        if finished is not None:
            return finished
        return self._pump(inv)

    def _settle(self, index: int, outcome: Outcome) -> None:
        if isinstance(outcome, Value):
            self._items[index] = BatchItem(index, BatchItemStatus.SUCCEEDED, outcome.value)
            return
        error = outcome.error
        info = ErrorInfo(
            type=getattr(error, "error_type", type(error).__name__),
            message=getattr(error, "message", str(error)),
        )
        self._items[index] = BatchItem(index, BatchItemStatus.FAILED, error=info)

    def _check(self, inv: Invocation) -> Outcome | None:
        if self._done:
            return None
        succeeded = sum(i.status is BatchItemStatus.SUCCEEDED for i in self._items.values())
        reason = completion_reason(
            self.completion,
            total=len(self.makers),
            succeeded=succeeded,
            failed=len(self._items) - succeeded,
        )
        if reason is None:
            return None
        self._done = True
        for index, item in sorted(self._running.items()):
            if item.fiber is not None:
                inv.cancel_fiber(item.fiber)
            self._items[index] = BatchItem(index, BatchItemStatus.STARTED)
        self._running.clear()
        result: BatchResult[Any] = BatchResult(
            all=[self._items[i] for i in sorted(self._items)], completion_reason=reason
        )
        return self._record_result(inv, result)

    def _record_result(self, inv: Invocation, result: BatchResult[Any]) -> Outcome:
        record = inv.state.ops[self.op_id]
        now = inv.now()
        if record.done:  # a batch re-run because its result was too large to store
            return Value(result, record.ended_ts)
        try:
            data = inv.serde.encode(result.to_builtins(), what=f"result of {self.label}")
        except PayloadTooLargeError:
            inv.record(self.event(EventType.CONTEXT_SUCCEEDED, now))
            return Value(result, now)
        inv.record(self.event(EventType.CONTEXT_SUCCEEDED, now, result=data))
        return Value(result, now)
