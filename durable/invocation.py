"""The replay driver: one *invocation* of one execution.

It runs the workflow coroutine from the top with ``send``/``throw``. Each primitive the
workflow awaits arrives here as an :class:`~durable.operation.Operation`; when the history
already holds its outcome the driver sends it straight back in a plain loop (replay, no
asyncio involved); otherwise the operation turns into real work: a step attempt as a task,
a timer as a wake-up time. When every live coroutine waits on something outside the
process, the invocation ends: ``InvocationCompleted`` is recorded, the lease released with
the next wake-up time, and the coroutines are closed (their ``finally`` blocks run, as in
every replay engine). New events become durable before the workflow sees their outcome.

Its state and the services primitives call on it live in :mod:`durable.invocation_base`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from durable.context import DurableContext
from durable.errors import (
    DurableError,
    LeaseLostError,
    NonDeterministicError,
    NonDurableAwaitError,
    SerializationError,
    StoreError,
)
from durable.events import Event, EventType, encode_event
from durable.fiber import Fiber, InOwnContext, Runtime, describe_awaited
from durable.inbox import INBOX_KINDS, collect_inbox, stop_orphaned_children
from durable.invocation_base import InvocationBase
from durable.operation import Operation, Outcome, Raise, Value
from durable.step import cancelled_by_us
from durable.stores.base import Checkpoint, Finish
from durable.types import ErrorInfo, ExecutionStatus
from durable.workflow import Workflow

__all__ = ["Fiber", "Invocation", "Runtime"]

UNKNOWN_WORKFLOW_RETRY = 30.0
"""Seconds before an execution of a workflow this worker does not know is looked at again."""


class Invocation(InvocationBase):
    """Drives one execution from the top until it suspends or finishes."""

    def _spawn(self, fiber: Fiber, op: Operation[Any], work: Coroutine[Any, Any, Any]) -> None:
        scope = anyio.CancelScope()
        fiber.scopes.add(scope)

        async def run() -> None:
            payload: Any = None
            try:
                if fiber.cancelled:  # its batch completed before this attempt got going
                    work.close()
                    return
                with scope:
                    payload = await work
            finally:
                self._running -= 1
                fiber.scopes.discard(scope)
            if scope.cancel_called or fiber.cancelled:
                work.close()
                return
            self._arrivals.append((fiber, op, payload))
            self._wake()

        assert self._tg is not None
        self._tg.start_soon(run)

    def _inline(self) -> bool:
        """Whether the one queued attempt is all there is to wait for (sequential code)."""
        return (
            len(self._queued) == 1
            and self._running == 1
            and not self._blocked
            and not self._arrivals
            and self.row.deadline is None
            and not self._draining
        )

    async def _start_queued(self) -> None:
        if self._durable_first:
            await self._flush()  # AT_MOST_ONCE: the start is durable before the body runs
            self._durable_first = False
        queued = self._queued
        if len(queued) == 1 and self._inline_ok:
            fiber, op, work, _ = queued.pop()  # (the list is kept: one less per step)
            try:
                payload = await InOwnContext(work)
            except anyio.get_cancelled_exc_class():
                if cancelled_by_us():
                    raise
                self._fatal = RuntimeError(
                    f"{op.position} was cancelled by something other than the engine"
                )
                return
            finally:
                self._running -= 1
            self._arrivals.append((fiber, op, payload))
            return
        self._queued = []
        for fiber, op, work, _ in queued:
            self._spawn(fiber, op, work)

    # -- driving -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the invocation to its end; never raises for workflow or store errors.

        Sequential code runs its step attempts inline. A task group opens only for the first
        attempt that runs beside others, and stays open to the end
        (:meth:`_loop_in_task_group`): opening and closing one (and the pass through the
        event loop its exit makes) cost a tenth of a ten-step execution.

        Raises:
            CancelledError: the invocation was abandoned (:meth:`abandon` cancels the
                worker's scope around it, which ends there) or its worker stops.
        """
        try:
            try:
                await self._drive()
            except LeaseLostError:
                self.ended = True
                self.logger.warning(
                    "lease lost; another worker owns the execution now",
                    execution_id=self.execution_id,
                )
            except StoreError as exc:
                self.store_failure = ErrorInfo(type="Runtime.StoreError", message=str(exc))
                self.logger.error(
                    "store refused a checkpoint; the execution will be retried",
                    execution_id=self.execution_id,
                    error=str(exc),
                )
            except Exception as exc:  # an engine bug or input it did not foresee
                self.logger.exception(
                    "invocation failed unexpectedly", execution_id=self.execution_id
                )
                if not self.ended and self._finishing is None:
                    await self._fail_safely(exc)
        finally:
            self._close_fibers()
            for _, _, work, _ in self._queued:  # kept: release() reads them
                work.close()  # attempts that never started (lease lost in the flush before)

    async def _fail_safely(self, exc: Exception) -> None:
        """Fail the execution with ``exc``; if even that cannot be written, it is retried."""
        try:
            await self._end(ExecutionStatus.FAILED, None, ErrorInfo.from_exception(exc))
        except DurableError as store_exc:
            self.store_failure = ErrorInfo(type="Runtime.StoreError", message=str(store_exc))

    async def _drive(self) -> None:
        if self.lease.taken_over:
            self.record(
                Event(
                    t=EventType.INVOCATION_COMPLETED,
                    ts=self.now(),
                    error=ErrorInfo(
                        type="Runtime.ExitError",
                        message="the worker running this execution exited mid-invocation",
                    ),
                )
            )
        if self.state.final is not None:
            # The log says it ended but the row does not (its finishing commit was cut short
            # after the events were written): finish the row from the log.
            final = self.state.final
            status = _STATUS_OF_FINAL[final.t]
            self._finishing = Finish(status=status.value, result=final.result, error=final.error)
            await self._flush(finish=self._finishing)
            self.rt.on_finished(self.execution_id, self._finishing)
            return
        workflow = self.rt.workflows.get(self.row.workflow)
        if workflow is None:
            self.logger.error(
                "no workflow registered under this name on this worker",
                execution_id=self.execution_id,
                workflow=self.row.workflow,
            )
            await self._flush(release=True, wake_at=self.now() + UNKNOWN_WORKFLOW_RETRY)
            return
        if self.row.deadline is None and workflow.timeout is not None:
            # started by a client that did not know the workflow's options
            self.row.deadline = self.row.created_at + workflow.timeout
        if self.row.deadline is not None and self.now() >= self.row.deadline:
            await self._end(ExecutionStatus.TIMED_OUT, None, self._timeout_error())
            return
        ops = self.state.ops
        if any(not ops[op_id].done for op_id in self.state.inbox_ops):
            self._inbox_requested = True
        root = self._root_fiber(workflow)
        await self._loop(root)

    def _root_fiber(self, workflow: Workflow[Any]) -> Fiber:
        ctx = DurableContext(self, None, start_time=self.state.started_ts, seed=self.row.seed)
        try:
            value = self.serde.decode(
                self.row.input, workflow.input_type, what=f"input of workflow {workflow.name!r}"
            )
        except SerializationError as exc:
            self._fatal = exc
            value = None
        fiber = Fiber(workflow(ctx, value), ctx)
        self._fibers.append(fiber)
        self._ready.append((fiber, None))
        return fiber

    async def _loop(self, root: Fiber, *, resume: bool = False) -> None:
        """Drive the workflow to its end or its suspension. ``resume``: go on from starting
        the queued attempts (see :meth:`_loop_in_task_group`)."""
        workflow = self.rt.workflows[self.row.workflow]
        while True:
            if not resume:
                if self._inbox_requested:
                    await collect_inbox(self)
                self._step_ready()
                if self.row.deadline is not None and self.now() >= self.row.deadline:
                    await self._end(ExecutionStatus.TIMED_OUT, None, self._timeout_error())
                    return
                if self._fatal is not None:
                    error = ErrorInfo.from_exception(self._fatal)
                    await self._end(ExecutionStatus.FAILED, None, error)
                    return
                if root.outcome is not None:
                    await self._complete(workflow, root.outcome)
                    return
                if self._held:
                    # New outcomes are durable before any workflow code sees them.
                    await self._flush()
                    self._ready.extend(held for held in self._held if not held[0].cancelled)
                    self._held.clear()
                    continue
            resume = False
            if self._queued:
                self._inline_ok = self._inline()
                if not self._inline_ok and self._tg is None:
                    await self._loop_in_task_group(root)  # goes on from here, in the group
                    return
                await self._start_queued()
            if self._inbox_requested:
                continue
            if self._running == 0 and not self._arrivals:
                if self._recorded_any:  # a wake-up that changed nothing leaves no trace
                    self.record(Event(t=EventType.INVOCATION_COMPLETED, ts=self.now()))
                wake_at = self.now() if self._parked else self._next_wake()
                await self._flush(release=True, wake_at=wake_at)
                return
            if not self._arrivals:
                self._arrived = anyio.Event()
                poll = self.rt.poll_interval if self._awaits_inbox() else math.inf
                await self.clock.wait(self._arrived, self._next_wake(), poll)
                if poll != math.inf and time.monotonic() - self._last_inbox >= poll:
                    self._inbox_requested = True  # answers from other processes
            self._collect()

    async def _loop_in_task_group(self, root: Fiber) -> None:
        """The rest of :meth:`_loop` inside a task group, from the first attempt that runs
        beside others on: attempts started from now on run in it, and those still running
        when the invocation ends are cancelled with it.

        What the driver raises comes out as itself (a task group would wrap it in an
        exception group), and so does an exception that escaped an attempt (an engine bug:
        attempts turn every error of the code they run into an outcome), which then fails
        the execution as an error in the driver does.
        """
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await self._loop(root, resume=True)
                except Exception as exc:  # raised again below, as itself
                    error = exc
                finally:
                    if self._running:  # running step attempts end with the invocation
                        tg.cancel_scope.cancel()  # (~10 us: skipped when none runs)
        except BaseExceptionGroup as group:
            if group.subgroup(lambda exc: not isinstance(exc, Exception)) is not None:
                raise  # KeyboardInterrupt, SystemExit: as they are
            if error is None:
                error = _first_leaf(group)
        finally:
            self._tg = None
        if error is not None:
            raise error

    def _awaits_inbox(self) -> bool:
        return any(op.kind in INBOX_KINDS for op, _ in self._blocked.values())

    def _collect(self) -> None:
        """Turn finished work and due timers into outcomes (held until committed)."""
        outcomes: list[tuple[Fiber, Outcome]] = []
        while self._arrivals:
            fiber, op, payload = self._arrivals.popleft()
            if fiber.cancelled:
                continue
            outcome = self._guard(op.on_arrival, self, fiber, payload)
            if outcome is not None:
                outcomes.append((fiber, outcome))
        now = self.now()
        deadlines = self.callback_deadlines
        if deadlines and any(t is not None and t <= now for t in deadlines.values()):
            self._inbox_requested = True  # a callback expired, awaited or not
        for fiber, (op, wake_at) in list(self._blocked.items()) if self._blocked else ():
            if wake_at is not None and wake_at <= now:
                del self._blocked[fiber]
                outcome = self._guard(op.resolve, self, fiber)
                if outcome is not None:
                    outcomes.append((fiber, outcome))
        self._held.extend(outcomes)

    def _guard(self, decide: Callable[..., Outcome | None], *args: Any) -> Outcome | None:
        """``decide(*args)``, its errors turned into an outcome or a fatal error."""
        try:
            return decide(*args)
        except NonDeterministicError as exc:
            self._fatal = exc
            return None
        except DurableError as exc:
            return Raise(exc, self.now())
        except Exception as exc:  # e.g. a retry_on predicate that raised: fail, never half-record
            self._fatal = exc
            return None

    def _next_wake(self) -> float | None:
        times = [t for _, t in self._blocked.values() if t is not None]
        times += [t for t in self.callback_deadlines.values() if t is not None]
        if self.row.deadline is not None:
            times.append(self.row.deadline)
        return min(times) if times else None

    def _step_ready(self) -> None:
        """Advance every ready fiber until it blocks or ends: replay happens here."""
        while self._ready and self._fatal is None:
            fiber, outcome = self._ready.popleft()
            if not fiber.cancelled:
                self.current_ctx = fiber.ctx
                try:
                    self._advance(fiber, outcome)
                finally:
                    self.current_ctx = None

    def _advance(self, fiber: Fiber, outcome: Outcome | None) -> None:
        coro = fiber.coro
        while True:
            try:
                if outcome is None:
                    yielded = coro.send(None)
                else:
                    fiber.ctx._time = outcome.ts
                    if isinstance(outcome, Value):
                        yielded = coro.send(outcome.value)
                    else:
                        yielded = coro.throw(outcome.error)
            except StopIteration as stop:
                self._finish_fiber(fiber, Value(stop.value, self.now()))
                return
            except Exception as exc:
                self._finish_fiber(fiber, Raise(exc, self.now()))
                return
            if not isinstance(yielded, Operation):
                self._fatal = NonDurableAwaitError(
                    f"workflow {self.row.workflow!r} awaited {describe_awaited(yielded)}, "
                    "which is not a durable operation. Workflows may only await ctx "
                    "primitives; wrap I/O, sleeps and other awaits in ctx.step(...) or use "
                    "ctx.wait(...) for delays."
                )
                return
            if yielded.ctx is not fiber.ctx:
                self._fatal = NonDurableAwaitError(
                    f"{yielded.position} was created on a different DurableContext than the "
                    "one running it; inside a child context use the ctx it receives."
                )
                return
            recorded = len(self._pending)
            try:
                outcome = yielded.resolve(self, fiber)
            except NonDeterministicError as exc:
                self._fatal = exc
                return
            except DurableError as exc:
                outcome = Raise(exc, self.now())
            except Exception as exc:  # e.g. a retry_on predicate that raised
                self._fatal = exc
                return
            if outcome is None:
                return
            if self._hold or len(self._pending) > recorded:  # durable before visible
                self._hold = False
                self._held.append((fiber, outcome))
                return

    def _finish_fiber(self, fiber: Fiber, outcome: Outcome) -> None:
        fiber.outcome = outcome
        if fiber.parent is None or fiber.parent_op is None:
            return
        parent, op = fiber.parent, fiber.parent_op
        result = self._guard(op.on_child_done, self, parent, outcome)
        if result is not None:
            self._held.append((parent, result))  # the child's end was just recorded

    # -- ending ------------------------------------------------------------------------

    async def _complete(self, workflow: Workflow[Any], outcome: Outcome) -> None:
        if isinstance(outcome, Raise):
            await self._end(ExecutionStatus.FAILED, None, ErrorInfo.from_exception(outcome.error))
            return
        try:
            data = self.serde.encode(outcome.value, what=f"result of workflow {workflow.name!r}")
        except SerializationError as exc:
            await self._end(ExecutionStatus.FAILED, None, ErrorInfo.from_exception(exc))
            return
        await self._end(ExecutionStatus.SUCCEEDED, data, None)

    def _timeout_error(self) -> ErrorInfo:
        assert self.row.deadline is not None
        limit = self.row.deadline - self.row.created_at
        return ErrorInfo(
            type="Execution.TimedOut",
            message=f"execution exceeded the {limit:g} s timeout of workflow {self.row.workflow!r}",
        )

    async def _end(
        self, status: ExecutionStatus, result: bytes | None, error: ErrorInfo | None
    ) -> None:
        now = self.now()
        self.record(Event(t=EventType.INVOCATION_COMPLETED, ts=now))
        event_type = {
            ExecutionStatus.SUCCEEDED: EventType.EXECUTION_SUCCEEDED,
            ExecutionStatus.FAILED: EventType.EXECUTION_FAILED,
            ExecutionStatus.TIMED_OUT: EventType.EXECUTION_TIMED_OUT,
            ExecutionStatus.STOPPED: EventType.EXECUTION_STOPPED,
        }[status]
        self.record(Event(t=event_type, ts=now, result=result, error=error))
        self._finishing = Finish(status=status.value, result=result, error=error)
        await self._flush(finish=self._finishing)
        await stop_orphaned_children(self, now)
        self.rt.on_finished(self.execution_id, self._finishing)

    async def _flush(
        self, *, release: bool = False, wake_at: float | None = None, finish: Finish | None = None
    ) -> None:
        if not (
            self._pending
            or self._new_callbacks
            or self._delivered
            or self._cancelled
            or release
            or finish
        ):
            # (children are only ever created together with their ChainedInvokeStarted)
            return
        events = [encode_event(event) for event in self._pending]
        checkpoint = Checkpoint(
            lease=self.lease,
            first_seq=self._next_seq,
            events=events,
            now=self.now(),
            release=release,
            wake_at=wake_at,
            finish=finish,
            callbacks=self._new_callbacks,
            delivered=self._delivered,
            children=self._new_children,
            cancelled=self._cancelled,
        )
        await self.rt.store.commit(checkpoint)
        self._next_seq += len(events)
        self._pending.clear()
        # Fresh lists only for those handed over with items (no store keeps them): most
        # checkpoints have none, and four new lists per step are garbage-collector work.
        if self._new_callbacks:
            self._new_callbacks = []
        if self._delivered:
            self._delivered = []
        if self._new_children:
            self._new_children = []
        if self._cancelled:
            self._cancelled = []
        if release or finish is not None:
            self.ended = True

    async def release(self) -> None:
        """Give the execution back after this invocation was cut short.

        A finish that could not be written is written again. Otherwise records why it was cut
        short (``Runtime.Shutdown``, or ``Runtime.StoreError`` after the store refused a
        checkpoint) and makes the execution due at once. Starts of ``AT_MOST_ONCE`` attempts
        that never ran are dropped, so they are not mistaken for interrupted ones.
        """
        if self._finishing is not None:
            await self._flush(finish=self._finishing)
            self.rt.on_finished(self.execution_id, self._finishing)
            return
        unlaunched = {op.op_id for _, op, _, _ in self._queued}
        for _, _, work, _ in self._queued:
            work.close()
        self._queued.clear()
        self._pending = [
            e for e in self._pending if not (e.t == EventType.STEP_STARTED and e.id in unlaunched)
        ]
        error = self.store_failure or ErrorInfo(
            type="Runtime.Shutdown", message="the worker shut down"
        )
        self.record(Event(t=EventType.INVOCATION_COMPLETED, ts=self.now(), error=error))
        await self._flush(release=True, wake_at=self.now())


_STATUS_OF_FINAL: dict[str, ExecutionStatus] = {
    EventType.EXECUTION_SUCCEEDED: ExecutionStatus.SUCCEEDED,
    EventType.EXECUTION_FAILED: ExecutionStatus.FAILED,
    EventType.EXECUTION_STOPPED: ExecutionStatus.STOPPED,
    EventType.EXECUTION_TIMED_OUT: ExecutionStatus.TIMED_OUT,
}


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    assert isinstance(found, Exception)
    return found
