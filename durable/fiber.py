"""What the driver is made of: the runtime it borrows from its engine, and fibers.

A :class:`Fiber` is one workflow coroutine the driver steps (the workflow itself, or a child
context, branch or map item).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from durable.clock import Clock
from durable.serde import Serde
from durable.stores.base import Finish, Store
from durable.workflow import Workflow

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.operation import Operation, Outcome

__all__ = ["Fiber", "InOwnContext", "Runtime", "describe_awaited"]


@dataclass(slots=True)
class Runtime:
    """What an invocation needs from its engine (so the driver never imports the engine)."""

    store: Store
    serde: Serde
    clock: Clock
    owner: str
    lease_time: float
    logger: Any
    workflows: Mapping[str, Workflow[Any]]
    on_finished: Callable[[str, Finish | None], None]
    """Announces an execution's end (with what was written, when known) to local waiters."""
    purge_interval: float = 60.0
    poll_interval: float = 0.2


class Fiber:
    """One coroutine the driver steps: the workflow itself or a child context."""

    __slots__ = ("cancelled", "children", "coro", "ctx", "outcome", "parent", "parent_op", "scopes")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        ctx: DurableContext,
        parent: Fiber | None = None,
        parent_op: Operation[Any] | None = None,
    ) -> None:
        self.coro = coro
        self.ctx = ctx
        self.outcome: Outcome | None = None
        self.parent = parent
        """The fiber waiting for this one (``None`` for the workflow itself)."""
        self.parent_op = parent_op
        """The operation of ``parent`` that started this child context."""
        self.children: list[Fiber] = []
        self.scopes: set[anyio.CancelScope] = set()
        self.cancelled = False

    @property
    def done(self) -> bool:
        """The coroutine returned or raised."""
        return self.outcome is not None


class InOwnContext:
    """Await a coroutine in a copy of the current context, without a task of its own.

    An attempt awaited inline must not see (or leave behind) context variables of the driver
    or of earlier attempts, exactly as if it ran in its own task.
    """

    __slots__ = ("_coro", "_run")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._run = contextvars.copy_context().run

    def __await__(self) -> Generator[Any, Any, Any]:
        run, send, throw = self._run, self._coro.send, self._coro.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                return stop.value
            finally:
                # an error that escapes would otherwise hold this frame through its traceback,
                # and this frame the error: a cycle keeping the attempt's objects alive
                error = None
            try:
                value = yield yielded
            except BaseException as exc:  # thrown in by the event loop (e.g. cancellation)
                value, error = None, exc


def describe_awaited(obj: object) -> str:
    """How an error message names something a workflow awaited."""
    if obj is None:
        return "a bare yield (e.g. asyncio.sleep(0))"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"
