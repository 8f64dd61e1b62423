"""The awaitable every durable primitive returns, and how it talks to the driver.

Awaiting an :class:`Operation` yields the operation itself to whoever drives the workflow
coroutine (``send``/``throw``); the driver answers with the outcome. The operation id is
fixed when the primitive is *called*, not when it completes.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from durable.events import Event
from durable.replay import OpRecord, check_determinism

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["Operation", "Outcome", "Raise", "Value"]

T = TypeVar("T")


@dataclass(slots=True)
class Value:
    """Resume the workflow with this value (not frozen: one is made per replayed operation,
    and frozen dataclasses cost twice as much to build)."""

    value: Any
    ts: float


@dataclass(slots=True)
class Raise:
    """Resume the workflow by raising this error."""

    error: BaseException
    ts: float


Outcome = Value | Raise


class Operation(Generic[T]):
    """Base of every durable primitive's awaitable.

    Subclasses set ``kind``/``sub_type`` and implement :meth:`resolve` (what to do when the
    workflow awaits it, or when something it waits on changes) and, when they run work in
    the background, :meth:`on_arrival`.
    """

    kind: ClassVar[str] = ""
    default_sub_type: ClassVar[str | None] = None
    __slots__ = ("counter", "ctx", "name", "op_id", "sub_type")

    def __init__(
        self,
        ctx: DurableContext,
        name: str | None,
        *,
        sub_type: str | None = None,
        of: Operation[Any] | None = None,
    ) -> None:
        """Create the operation; ``of`` reuses another operation's id (``cb.result()``)."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"an operation name must be a string, got {name!r}")
        self.ctx = ctx
        self.name = name
        self.sub_type = sub_type or self.default_sub_type
        if of is None:
            counter = ctx._counter = ctx._counter + 1
            self.counter = counter
            self.op_id = ctx._ids(counter)
        else:
            self.counter, self.op_id = of.counter, of.op_id

    def __await__(self) -> Generator[Operation[T], Any, T]:
        result: T = yield self
        return result

    def record_for(self, inv: Invocation) -> OpRecord | None:
        """The recorded state of this operation, checked against this call (determinism)."""
        record = inv.state.ops.get(self.op_id)
        if record is not None:
            check_determinism(
                record,
                kind=self.kind,
                sub_type=self.sub_type,
                name=self.name,
                parent=self.ctx.context_id,
                position=self.position,
            )
        return record

    def event(self, event_type: str, ts: float, **fields: Any) -> Event:
        """A new event about this operation (its id, sub type, name and parent filled in)."""
        return Event(
            t=event_type,
            ts=ts,
            id=self.op_id,
            st=self.sub_type,
            name=self.name,
            parent=self.ctx.context_id,
            **fields,
        )

    @property
    def position(self) -> str:
        """``operation 3 of the workflow`` / ``operation 2 of context <id>``."""
        where = "the workflow" if self.ctx.context_id is None else f"context {self.ctx.context_id}"
        return f"operation {self.counter} of {where}"

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Decide: an outcome to resume with now, or ``None`` after blocking ``fiber``.

        Every primitive overrides it. (Not an ``abc`` method: the driver's ``isinstance``
        test on every awaited operation is three times slower against an ABC.)
        """
        raise TypeError(f"{type(self).__name__} does not implement resolve()")

    def on_arrival(self, inv: Invocation, fiber: Fiber, payload: Any) -> Outcome | None:
        """Background work of this operation finished with ``payload``; record and decide."""
        raise TypeError(f"{type(self).__name__} runs no background work")

    def on_child_done(self, inv: Invocation, fiber: Fiber, outcome: Outcome) -> Outcome | None:
        """A child context this operation started has ended with ``outcome``."""
        raise TypeError(f"{type(self).__name__} starts no child context")
