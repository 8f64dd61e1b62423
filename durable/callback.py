"""Callbacks: pause a workflow until a person or an outside system answers.

``ctx.create_callback()`` records ``CallbackStarted`` with an unguessable id (192 random
bits, hex) and stores a pending callback row in the same commit, before the workflow can hand
the id to anyone. Answers (``engine.send_callback_success/failure``), heartbeats and
expiries go through the store's callback inbox; the worker that runs the execution records
them as ``CallbackSucceeded`` / ``CallbackFailed`` / ``CallbackTimedOut`` events and resumes
whoever awaits ``cb.result()``. An answer that arrives early, or while no worker runs,
waits in the inbox.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from durable.child import ChildContextOp
from durable.errors import CallbackFailedError, CallbackTimeoutError, DurableError
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpStatus, operation_id
from durable.stores.base import NewCallback
from durable.types import ErrorInfo, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = [
    "Callback",
    "CallbackResultOp",
    "CreateCallbackOp",
    "WaitForCallbackOp",
    "callback_error",
    "new_callback_id",
]

T = TypeVar("T")

TIMEOUT_TYPES = ("Callback.Timeout", "Callback.Heartbeat")


def new_callback_id() -> str:
    """An unguessable callback id: 192 bits from the OS's CSPRNG, as 48 hex digits (safe in
    URLs and shells: it never starts with ``-``)."""
    return secrets.token_hex(24)


def callback_error(info: ErrorInfo) -> DurableError:
    """The exception a recorded callback failure raises in the workflow."""
    if info.type in TIMEOUT_TYPES:
        return CallbackTimeoutError(info.message, error_type=info.type)
    return CallbackFailedError(info.message, error_type=info.type)


class Callback(Generic[T]):
    """A pending answer from outside: hand :attr:`id` out, then ``await cb.result()``.

    Attributes:
        id: the callback id to give the outside system (unguessable).
    """

    __slots__ = ("_op", "id")

    def __init__(self, op: CreateCallbackOp, callback_id: str) -> None:
        self._op = op
        self.id = callback_id

    def result(self) -> CallbackResultOp[T]:
        """Wait for the answer.

        Raises (when awaited):
            CallbackFailedError: the outside system reported a failure (its type, message).
            CallbackTimeoutError: ``Callback.Timeout`` or ``Callback.Heartbeat`` expired.
        """
        return CallbackResultOp(self._op)

    def __repr__(self) -> str:
        return f"<Callback {self.id}>"


class CreateCallbackOp(Operation[Callback[Any]]):
    """The awaitable ``ctx.create_callback`` returns."""

    kind = "Callback"
    default_sub_type = SubType.CALLBACK.value
    __slots__ = ("heartbeat_timeout", "timeout")

    def __init__(
        self,
        ctx: DurableContext,
        *,
        name: str | None,
        timeout: float | None,
        heartbeat_timeout: float | None,
    ) -> None:
        super().__init__(ctx, name)
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Return the recorded callback, or create one (durable before its id is seen)."""
        record = self.record_for(inv)
        if record is not None:
            assert record.callback_id is not None
            return Value(Callback(self, record.callback_id), record.started_ts)
        now = inv.now()
        callback_id = new_callback_id()
        inv.record(
            self.event(
                EventType.CALLBACK_STARTED,
                now,
                callback_id=callback_id,
                timeout=self.timeout,
                heartbeat_timeout=self.heartbeat_timeout,
            )
        )
        timeout_at = None if self.timeout is None else now + self.timeout
        heartbeat_at = None if self.heartbeat_timeout is None else now + self.heartbeat_timeout
        deadlines = [t for t in (timeout_at, heartbeat_at) if t is not None]
        inv.add_callback(
            NewCallback(
                callback_id=callback_id,
                operation_id=self.op_id,
                created_at=now,
                timeout_at=timeout_at,
                heartbeat_timeout=self.heartbeat_timeout,
            ),
            min(deadlines) if deadlines else None,
        )
        inv.hold_until_durable()
        return Value(Callback(self, callback_id), now)


class CallbackResultOp(Operation[T]):
    """The awaitable ``cb.result()`` returns: the same operation as its callback."""

    kind = "Callback"
    default_sub_type = SubType.CALLBACK.value
    __slots__ = ()

    def __init__(self, created: CreateCallbackOp) -> None:
        super().__init__(created.ctx, created.name, of=created)

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """The recorded answer, or wait for one (until the earliest deadline)."""
        record = self.record_for(inv)
        assert record is not None, "a callback's result is awaited before it was created"
        if record.status is OpStatus.SUCCEEDED:
            value = None if record.result is None else inv.serde.decode(record.result)
            return Value(value, record.ended_ts)
        if record.status is OpStatus.FAILED:
            assert record.error is not None
            return Raise(callback_error(record.error), record.ended_ts)
        deadline = inv.callback_deadlines.get(self.op_id)
        if deadline is not None and inv.now() >= deadline:
            inv.request_inbox()  # the store decides, atomically with any late answer
            deadline = None
        inv.block(fiber, self, deadline)
        return None


class WaitForCallbackOp(ChildContextOp[T]):
    """``ctx.wait_for_callback``: a child context that creates a callback, runs the
    submitter as a step with the callback id, and returns the callback's answer."""

    rerun_failures = True
    __slots__ = ("heartbeat_timeout", "retry", "submitter", "timeout")

    def __init__(
        self,
        ctx: DurableContext,
        submitter: Callable[[str], Any],
        *,
        name: str | None,
        timeout: float | None,
        heartbeat_timeout: float | None,
        retry: RetryPolicy | None,
    ) -> None:
        super().__init__(ctx, self._run, name=name, sub_type=SubType.WAIT_FOR_CALLBACK.value)
        self.submitter = submitter
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.retry = retry

    def body(self, child: DurableContext) -> Coroutine[Any, Any, Any]:
        """Create, submit, await."""
        return self._run(child)

    def on_child_done(self, inv: Invocation, fiber: Fiber, outcome: Outcome) -> Outcome | None:
        """When the context fails before its answer came, its callback is cancelled, so a
        late answer is refused instead of landing in a closed context."""
        created = inv.state.ops.get(operation_id(self.op_id, 1))
        if (
            isinstance(outcome, Raise)
            and created is not None
            and not created.done
            and created.callback_id is not None
        ):
            inv.cancel_callback(created.callback_id)
        return super().on_child_done(inv, fiber, outcome)

    async def _run(self, child: DurableContext) -> Any:
        callback: Callback[Any] = await child.create_callback(
            name=self.name, timeout=self.timeout, heartbeat_timeout=self.heartbeat_timeout
        )
        await child.step(self.submitter, callback.id, retry=self.retry)
        return await callback.result()
