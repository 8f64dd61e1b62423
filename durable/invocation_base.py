"""What an invocation is made of, and the services primitives call on it.

:class:`InvocationBase` holds the state of one invocation (the replay state, the fibers, what
waits to be committed) and the small API every :class:`~durable.operation.Operation` uses:
record an event, block a fiber, start an attempt, spawn or cancel a child context. The driver
that steps the coroutines and writes the checkpoints is :class:`~durable.invocation.Invocation`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from durable.clock import Clock
from durable.context import DurableContext
from durable.events import Event
from durable.fiber import Fiber, Runtime
from durable.operation import Operation, Outcome, Raise
from durable.replay import OpRecord, ReplayState
from durable.serde import Serde
from durable.stores.base import ExecutionRow, Finish, Lease, NewCallback, NewChild
from durable.types import ErrorInfo

__all__ = ["InvocationBase"]


class InvocationBase:
    """The state of one invocation and the services primitives call on it."""

    def __init__(
        self,
        rt: Runtime,
        lease: Lease,
        row: ExecutionRow,
        events: list[bytes],
        scope: anyio.CancelScope | None = None,
    ) -> None:
        self.rt = rt
        self.scope = scope
        """The cancel scope the worker runs this invocation in: :meth:`abandon` cancels it
        (and with it the invocation's task group, if one is open)."""
        self.lease = lease
        self.row = row
        self.execution_id = row.execution_id
        self.serde: Serde = rt.serde
        self.clock: Clock = rt.clock
        self.now: Callable[[], float] = rt.clock.now
        """The engine clock's time (its bound method: primitives read it several times a step)."""
        self.logger = rt.logger
        self.state = ReplayState.from_rows(events)
        self._rng: random.Random | None = None
        self.current_ctx: DurableContext | None = None
        """The context of the coroutine being advanced right now (replay fast paths check
        that an operation is awaited by its own coroutine, inside the driver)."""
        self._next_seq = row.next_seq + 1
        self._pending: list[Event] = []
        self._ready: deque[tuple[Fiber, Outcome | None]] = deque()
        self._blocked: dict[Fiber, tuple[Operation[Any], float | None]] = {}
        self._fibers: list[Fiber] = []
        self._running = 0
        self._arrivals: deque[tuple[Fiber, Operation[Any], Any]] = deque()
        self._arrived: anyio.Event | None = None
        """Set to wake the driver while it waits (made afresh for each wait: ``_loop``)."""
        self._queued: list[tuple[Fiber, Operation[Any], Coroutine[Any, Any, Any], bool]] = []
        self._durable_first = False
        """A queued attempt wants the events recorded so far committed before it starts."""
        self._inline_ok = False
        self._held: list[tuple[Fiber, Outcome]] = []
        self._hold = False
        self._inbox_requested = False
        self.callback_deadlines: dict[str, float | None] = {}
        """Operation id -> earliest timeout/heartbeat deadline of each pending callback."""
        self._new_callbacks: list[NewCallback] = []
        self._new_children: list[NewChild] = []
        self._cancelled: list[str] = []
        self._draining = False
        self._parked = False
        self._delivered: list[str] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._fatal: Exception | None = None
        self._finishing: Finish | None = None
        self._recorded_any = False
        self._last_inbox = 0.0
        self.store_failure: ErrorInfo | None = None
        self.ended = False
        """Set once the invocation wrote its last checkpoint (or lost its lease)."""

    # -- services for primitives -------------------------------------------------------

    @property
    def rng(self) -> random.Random:
        """Randomness for retry jitter (recorded, so it need not replay): made on first use,
        as seeding one costs more than a whole replayed step."""
        if self._rng is None:
            self._rng = random.Random()
        return self._rng

    def record(self, event: Event) -> OpRecord | None:
        """Append a new event (durable at the next flush) and fold it into the state."""
        self._pending.append(event)
        self._recorded_any = True
        return self.state.apply(event)

    def block(self, fiber: Fiber, op: Operation[Any], wake_at: float | None) -> None:
        """``fiber`` waits on ``op``; re-decide it at ``wake_at`` (``None``: outside event)."""
        self._blocked[fiber] = (op, wake_at)

    def hold_until_durable(self) -> None:
        """The outcome being returned must not reach the workflow before the next commit."""
        self._hold = True

    def spawn_child(
        self, parent: Fiber, op: Operation[Any], coro: Coroutine[Any, Any, Any], ctx: DurableContext
    ) -> Fiber:
        """Run ``coro`` as a child context of ``parent``; ``op.on_child_done`` gets its end."""
        child = Fiber(coro, ctx, parent, op)
        parent.children.append(child)
        self._fibers.append(child)
        self._ready.append((child, None))
        return child

    def cancel_fiber(self, fiber: Fiber) -> None:
        """Stop a child context and everything under it: its running attempts are cancelled,
        its coroutine closed, and nothing it was doing is recorded from now on."""
        for child in fiber.children:
            self.cancel_fiber(child)
        if fiber.cancelled or fiber.done:
            return
        fiber.cancelled = True
        self._blocked.pop(fiber, None)
        for scope in fiber.scopes:
            scope.cancel()
        self._close(fiber)

    def add_callback(self, callback: NewCallback, deadline: float | None) -> None:
        """A callback created now: stored with the next commit, expiring at ``deadline``."""
        self._new_callbacks.append(callback)
        self.callback_deadlines[callback.operation_id] = deadline

    @property
    def accepting_work(self) -> bool:
        """False while the worker shuts down: no new step attempt may start."""
        return not self._draining

    def park(self, fiber: Fiber, op: Operation[Any]) -> None:
        """``fiber`` needs new work while draining: it resumes in the next invocation."""
        self._blocked[fiber] = (op, None)
        self._parked = True

    def drain(self) -> None:
        """Let running attempts finish and checkpoint, start nothing new, then suspend."""
        self._draining = True
        self._wake()

    def abandon(self) -> None:
        """The execution was stopped elsewhere: end this invocation, writing nothing more."""
        self.ended = True
        if self.scope is not None:  # (only the worker's invocations are ever abandoned)
            self.scope.cancel()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    def cancel_callback(self, callback_id: str) -> None:
        """Refuse later answers to this callback (marked ``CANCELLED`` with the next commit)."""
        self._cancelled.append(callback_id)

    def add_child(self, child: NewChild) -> None:
        """A child execution started now: created with the next commit."""
        self._new_children.append(child)

    def request_inbox(self) -> None:
        """Read the callback inbox (answers, expiries) before going on."""
        self._inbox_requested = True
        self._wake()

    def start_task(
        self,
        fiber: Fiber,
        op: Operation[Any],
        work: Coroutine[Any, Any, Any],
        *,
        durable_first: bool = False,
    ) -> None:
        """Run ``work``; its result comes back through ``op.on_arrival``.

        With ``durable_first`` the events recorded so far are committed before it starts.
        When it is the only thing the invocation could wait for, the driver awaits it
        directly (no task); otherwise it runs as a task, concurrently with its siblings.
        """
        self._running += 1
        self._queued.append((fiber, op, work, durable_first))
        self._durable_first = self._durable_first or durable_first

    def dispose(self) -> None:
        """Drop what ties the invocation's objects into reference cycles, once it is over.

        Contexts point back to their invocation and child fibers to their parents, so an
        ended invocation left as it is becomes cyclic garbage: freed only by the garbage
        collector's full passes, which with hundreds of executions ending per second cost
        more than the executions themselves. Cut here, reference counting frees it at once.
        """
        for fiber in self._fibers:
            if isinstance(fiber.outcome, Raise):
                # Its traceback holds the driver's frames, whose locals hold this outcome: drop
                # it (what the log and the history needed of it was taken when it was raised).
                fiber.outcome.error.__traceback__ = None
            fiber.parent = fiber.parent_op = None  # (an operation holds its child's fiber)
        self._fatal = None  # (its traceback, or an error it holds, leads back here)
        self._fibers.clear()
        self._blocked.clear()  # (a suspended invocation ends with its waiting fibers here)
        self._arrivals.clear()  # (attempts that ended after their batch or the invocation)

    def _close_fibers(self) -> None:
        for fiber in self._fibers:
            if not fiber.done and not fiber.cancelled:
                self._close(fiber)

    def _close(self, fiber: Fiber) -> None:
        try:
            fiber.coro.close()
        except Exception as exc:  # a finally block that awaited a durable call, or raised
            self.logger.warning(
                "workflow coroutine did not close cleanly",
                execution_id=self.execution_id,
                error=str(exc),
            )
