"""``Engine``: the registry, the store, the clock and the worker loop of one process."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import anyio.abc

from durable.clock import Clock, SystemClock
from durable.errors import (
    DurableError,
    ExecutionAlreadyExistsError,
    ExecutionFailedError,
    ExecutionNotFoundError,
    ExecutionNotRunningError,
    PayloadTooLargeError,
    WorkflowNotFoundError,
)
from durable.events import Event, EventType, HistoryEvent, decode_events, encode_event
from durable.handle import ExecutionHandle
from durable.invocation import Runtime
from durable.log import get_logger
from durable.serde import DEFAULT_MAX_PAYLOAD, Serde
from durable.stores import open_store
from durable.stores.base import CallbackStatus, ExecutionRow, Finish, Lease, ListQuery, Store
from durable.types import Duration, ErrorInfo, Execution, ExecutionStatus, to_seconds
from durable.worker import Worker, make_owner_id
from durable.workflow import Workflow, WorkflowFn, new_execution, new_execution_id

__all__ = ["Engine"]

T = TypeVar("T")


class Engine:
    """An embedded durable-execution engine.

    Args:
        url: where executions are stored: a file path, ``sqlite:///path.db`` (which may
            end with store options, e.g. ``?writer=process``: see
            :func:`~durable.stores.open_store`), or ``:memory:`` (an in-memory store, gone
            with the process).
        worker: run the worker loop in this process (``False``: a client-only engine that
            starts executions and reads results while other processes run them).
        clock: the time source (a :class:`~durable.clock.VirtualClock` in tests).
        store: a ready :class:`~durable.stores.base.Store` instead of ``url``.
        max_payload: largest encoded value (input, result, step result), in bytes.
        lease_time: seconds a worker's claim on a running execution lasts without renewal;
            a crashed worker's executions are taken over after at most this long.
        concurrency: invocations this worker runs at once.
        poll_interval: wall-clock seconds between looks at the store for work that other
            processes added.
        shutdown_grace: on leaving ``async with``, how long running step attempts may go on
            to finish and checkpoint (nothing new starts) before they are cancelled.
        purge_interval: how often the worker deletes executions past their workflow's
            ``retention``.

    Example::

        engine = Engine("orders.db")

        @engine.workflow
        async def place_order(ctx: DurableContext, order: dict) -> dict: ...

        async with engine:
            result = await engine.run(place_order, {"id": "o-1"}, execution_id="o-1")
    """

    def __init__(
        self,
        url: str = "durable.db",
        *,
        worker: bool = True,
        clock: Clock | None = None,
        store: Store | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        lease_time: Duration = 5.0,
        concurrency: int = 100,
        poll_interval: Duration = 0.2,
        shutdown_grace: Duration = 10.0,
        purge_interval: Duration = 60.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        self.url = url
        self.store: Store = store if store is not None else open_store(url)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.serde = Serde(max_payload)
        self.is_worker = worker
        self.owner = make_owner_id()
        self.logger = get_logger("durable", engine=self.owner)
        self._workflows: dict[str, Workflow[Any]] = {}
        # the futures of result() calls waiting for an execution to end, by its id
        self._finished: dict[str, list[asyncio.Future[None]]] = {}
        self._endings: dict[str, Finish] = {}  # announced ends, kept while someone waits
        self._waiting: dict[str, int] = {}
        self._runtime = Runtime(
            store=self.store,
            serde=self.serde,
            clock=self.clock,
            owner=self.owner,
            lease_time=to_seconds(lease_time, what="lease_time"),
            logger=self.logger,
            workflows=self._workflows,
            on_finished=self._on_finished,
            purge_interval=to_seconds(purge_interval, what="purge_interval"),
            poll_interval=to_seconds(poll_interval, what="poll_interval"),
        )
        self.shutdown_grace = to_seconds(shutdown_grace, what="shutdown_grace", allow_zero=True)
        self._poll = to_seconds(poll_interval, what="poll_interval")
        self.worker = Worker(self._runtime, concurrency=concurrency, poll_interval=self._poll)
        self._stack: contextlib.AsyncExitStack | None = None

    # -- registration ------------------------------------------------------------------

    @overload
    def workflow(self, fn: WorkflowFn[T], /) -> Workflow[T]: ...

    @overload
    def workflow(
        self,
        *,
        name: str | None = None,
        timeout: Duration | None = None,
        retention: Duration | None = None,
        version: str = "$LATEST",
    ) -> Callable[[WorkflowFn[T]], Workflow[T]]: ...

    def workflow(  # type: ignore[misc]  # mypy cannot match the bare/parametrized overloads
        self,
        fn: WorkflowFn[T] | None = None,
        /,
        *,
        name: str | None = None,
        timeout: Duration | None = None,
        retention: Duration | None = None,
        version: str = "$LATEST",
    ) -> Workflow[T] | Callable[[WorkflowFn[T]], Workflow[T]]:
        """Register an ``async def (ctx, input)`` as a workflow (bare or with options).

        Args:
            name: registered name; ``fn.__name__`` by default.
            timeout: an execution still running this long after its start times out.
            retention: how long a finished execution is kept.
            version: recorded as the executed version of chained invokes.
        """

        def register(f: WorkflowFn[T]) -> Workflow[T]:
            wf = Workflow(f, name=name, timeout=timeout, retention=retention, version=version)
            existing = self._workflows.get(wf.name)
            if existing is not None and existing.fn is not f:
                raise ValueError(f"a workflow named {wf.name!r} is already registered")
            self._workflows[wf.name] = wf
            return wf

        return register(fn) if fn is not None else register

    @property
    def workflows(self) -> dict[str, Workflow[Any]]:
        """The registered workflows by name (a copy)."""
        return dict(self._workflows)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        if self._stack is not None:
            raise RuntimeError("this engine is already running")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            if self.is_worker:
                tg = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(tg.cancel_scope.cancel)
                await tg.start(self.worker.serve)
                stack.push_async_callback(self.worker.shutdown, self.shutdown_grace)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    def _require_open(self) -> None:
        if self._stack is None:
            raise RuntimeError("use the engine inside 'async with engine:' first")

    # -- starting ----------------------------------------------------------------------

    def _resolve(self, workflow: Workflow[Any] | str) -> tuple[str, Workflow[Any] | None]:
        if isinstance(workflow, str):
            name = workflow
        elif isinstance(workflow, Workflow):
            name = workflow.name
        else:
            what = getattr(workflow, "__name__", None)
            raise TypeError(
                f"expected a workflow (what @engine.workflow returns) or its name, got "
                f"{f'function {what!r}' if what else repr(workflow)}: decorate it with "
                "@engine.workflow, or pass the name it was registered under"
            )
        registered = self._workflows.get(name)
        if registered is None and self.is_worker:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow named {name!r} is registered on this engine (registered: {known})"
            )
        return name, registered

    @overload
    async def start(
        self, workflow: Workflow[T], input: Any = None, *, execution_id: str | None = None
    ) -> ExecutionHandle[T]: ...

    @overload
    async def start(
        self, workflow: str, input: Any = None, *, execution_id: str | None = None
    ) -> ExecutionHandle[Any]: ...

    async def start(
        self,
        workflow: Workflow[Any] | str,
        input: Any = None,
        *,
        execution_id: str | None = None,
    ) -> ExecutionHandle[Any]:
        """Start an execution (idempotent on ``execution_id``).

        Starting an existing id with the same workflow and input returns a handle to that
        execution, whatever its status. Without ``execution_id`` the engine makes one: a
        time-ordered UUIDv7 in 32 hex digits (see :func:`durable.workflow.new_execution_id`).

        Raises:
            WorkflowNotFoundError: the workflow is not registered (worker engines).
            ExecutionAlreadyExistsError: the id exists with another workflow or input.
            SerializationError, PayloadTooLargeError: the input cannot be stored.
        """
        self._require_open()
        name, wf = self._resolve(workflow)
        execution_id = execution_id or new_execution_id()
        data = self.serde.encode(input, what=f"input of workflow {name!r}")
        now = self.clock.now()
        row, events = new_execution(name, execution_id, data, now, workflow=wf)
        run_here = wf is not None and self.is_worker and self.worker.has_capacity
        if run_here:
            row.lease_owner = self.owner
            row.lease_epoch = 1
            row.lease_expires = row.wake_at = now + self._runtime.lease_time
        stored, created = await self.store.create_execution(row, events)
        if not created:
            self._check_duplicate(stored, name, data)
        elif run_here:
            self.worker.run_now(Lease(execution_id, self.owner, 1), stored, events)
        elif self.is_worker:
            self.worker.nudge()
        return ExecutionHandle(self, execution_id)

    def _check_duplicate(self, stored: ExecutionRow, name: str, data: bytes) -> None:
        if stored.workflow != name:
            raise ExecutionAlreadyExistsError(
                f"execution {stored.execution_id!r} already exists for workflow "
                f"{stored.workflow!r}, not {name!r}"
            )
        # compare values, not bytes: {"a": 1, "b": 2} is the same input as {"b": 2, "a": 1}
        if stored.input != data and self.serde.decode(stored.input) != self.serde.decode(data):
            raise ExecutionAlreadyExistsError(
                f"execution {stored.execution_id!r} already exists with a different input"
            )

    async def run(
        self,
        workflow: Workflow[T] | str,
        input: Any = None,
        *,
        execution_id: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Start an execution and wait for its result (see :meth:`start`)."""
        handle = await self.start(workflow, input, execution_id=execution_id)
        result: T = await handle.result(timeout=timeout)
        return result

    def handle(self, execution_id: str) -> ExecutionHandle[Any]:
        """A handle to an existing execution (not checked until used)."""
        return ExecutionHandle(self, execution_id)

    # -- callbacks ---------------------------------------------------------------------

    async def send_callback_success(self, callback_id: str, result: Any = None) -> None:
        """Complete a callback with ``result``; the waiting workflow resumes with it.

        Raises:
            CallbackNotFoundError: no callback has this id.
            CallbackAlreadyCompletedError: it was already answered, timed out or its
                execution ended.
            SerializationError, PayloadTooLargeError: the result cannot be stored (nothing
                is written).
        """
        self._require_open()
        data = self.serde.encode(result, what=f"result of callback {callback_id!r}")
        row = await self.store.complete_callback(
            callback_id,
            status=CallbackStatus.SUCCEEDED,
            result=data,
            error=None,
            now=self.clock.now(),
        )
        self._wake(row.execution_id)

    async def send_callback_failure(
        self, callback_id: str, *, error_type: str, message: str
    ) -> None:
        """Fail a callback; the workflow's ``cb.result()`` raises ``CallbackFailedError``
        carrying ``error_type`` and ``message`` verbatim.

        Raises the same errors as :meth:`send_callback_success`.
        """
        self._require_open()
        error = ErrorInfo(type=str(error_type), message=str(message))
        size = len(self.serde.encode(error, what=f"failure of callback {callback_id!r}"))
        if size > self.serde.max_payload:
            raise PayloadTooLargeError(
                f"failure of callback {callback_id!r} is {size} bytes encoded, over the "
                f"{self.serde.max_payload}-byte payload limit"
            )
        row = await self.store.complete_callback(
            callback_id,
            status=CallbackStatus.FAILED,
            result=None,
            error=error,
            now=self.clock.now(),
        )
        self._wake(row.execution_id)

    async def send_callback_heartbeat(self, callback_id: str) -> None:
        """Tell a callback with a ``heartbeat_timeout`` that its outside system is alive.

        Records no event; pushes the heartbeat deadline. Raises like
        :meth:`send_callback_success`.
        """
        self._require_open()
        row = await self.store.heartbeat_callback(callback_id, now=self.clock.now())
        self._wake(row.execution_id)

    def _wake(self, execution_id: str) -> None:
        """An execution's inbox changed: tell its invocation here, or look for work."""
        if not self.is_worker:
            return
        invocation = self.worker.active.get(execution_id)
        if invocation is not None:
            invocation.request_inbox()
        else:
            self.worker.nudge()

    # -- stopping ----------------------------------------------------------------------

    async def stop(self, execution_id: str, *, reason: str | None = None) -> list[str]:
        """Stop a running execution and its running child executions (``STOPPED``).

        Pending timers and callbacks are cancelled; steps running somewhere finish, but their
        results are not used (the worker running it loses its lease). ``handle.result()``
        raises ``ExecutionFailedError`` with status ``STOPPED``. Returns the ids stopped.

        Raises:
            ExecutionNotFoundError: no execution has this id.
            ExecutionNotRunningError: it already ended.
        """
        self._require_open()
        now = self.clock.now()
        error = ErrorInfo(type="ExecutionStopped", message=reason or "stopped by request")
        event = encode_event(Event(t=EventType.EXECUTION_STOPPED, ts=now, error=error))
        stopped = await self.store.stop(execution_id, now=now, error=error, event=event)
        if not stopped:
            row = await self.store.get_execution(execution_id)
            status = row.status if row is not None else "unknown"
            raise ExecutionNotRunningError(
                f"execution {execution_id!r} is not running (it is {status})"
            )
        for stopped_id in stopped:
            invocation = self.worker.active.get(stopped_id) if self.is_worker else None
            if invocation is not None:
                invocation.abandon()
            self._on_finished(stopped_id)
        return stopped

    async def purge(self, *, finished_before: datetime | float) -> int:
        """Delete executions that ended before ``finished_before`` (with their events and
        callbacks); running executions are never touched. Returns how many were deleted."""
        self._require_open()
        cutoff = (
            finished_before.timestamp()
            if isinstance(finished_before, datetime)
            else float(finished_before)
        )
        return len(await self.store.purge(finished_before=cutoff))

    # -- reading -----------------------------------------------------------------------

    async def get(self, execution_id: str) -> Execution[Any]:
        """The execution's current state.

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        self._require_open()
        row = await self.store.get_execution(execution_id)
        if row is None:
            raise ExecutionNotFoundError(f"no execution with id {execution_id!r}")
        return self._to_execution(row)

    async def list(
        self,
        *,
        status: ExecutionStatus | str | None = None,
        workflow: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Execution[Any]]:
        """Executions, newest first, optionally filtered by status, workflow or parent."""
        self._require_open()
        query = ListQuery(
            status=None if status is None else ExecutionStatus(status).value,
            workflow=workflow,
            parent_id=parent_id,
            limit=limit,
            offset=offset,
        )
        return [self._to_execution(row) for row in await self.store.list_executions(query)]

    async def history(self, execution_id: str) -> builtins.list[HistoryEvent]:
        """Every event of the execution, in order (``event_id`` from 1).

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        self._require_open()
        loaded = await self.store.load(execution_id)
        if loaded is None:
            raise ExecutionNotFoundError(f"no execution with id {execution_id!r}")
        return [
            HistoryEvent.from_event(i, event)
            for i, event in enumerate(decode_events(loaded[1]), start=1)
        ]

    def _to_execution(self, row: ExecutionRow) -> Execution[Any]:
        wf = self._workflows.get(row.workflow)
        input_type = wf.input_type if wf is not None else Any
        result_type = wf.result_type if wf is not None else Any

        def moment(ts: float | None) -> datetime | None:
            return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)

        return Execution(
            execution_id=row.execution_id,
            workflow=row.workflow,
            status=ExecutionStatus(row.status),
            input=self._decode_lenient(row.input, input_type),
            result=None if row.result is None else self._decode_lenient(row.result, result_type),
            error=row.error,
            created_at=datetime.fromtimestamp(row.created_at, tz=UTC),
            updated_at=datetime.fromtimestamp(row.updated_at, tz=UTC),
            ended_at=moment(row.ended_at),
            parent_id=row.parent_id,
        )

    def _decode_lenient(self, data: bytes, type_: Any) -> Any:
        try:
            return self.serde.decode(data, type_)
        except DurableError:  # stored before the annotation changed: show it untyped
            return self.serde.decode(data)

    # -- waiting -----------------------------------------------------------------------

    def _on_finished(self, execution_id: str, finish: Finish | None = None) -> None:
        waiters = self._finished.pop(execution_id, None)
        if waiters is not None:
            if finish is not None:  # what was just written: the waiters need not read it
                self._endings[execution_id] = finish
            for waiter in waiters:
                _wake(waiter)

    def _outcome(self, status: ExecutionStatus, workflow: str, finish: Finish) -> Any:
        """The result of a finished execution, or its error raised."""
        if status is ExecutionStatus.SUCCEEDED:
            assert finish.result is not None
            wf = self._workflows.get(workflow)
            return self._decode_lenient(finish.result, wf.result_type if wf else Any)
        error = finish.error or ErrorInfo(type=status.value, message=status.value)
        raise ExecutionFailedError(error, status=status.value)

    async def _result(self, execution_id: str, timeout: float | None) -> Any:
        self._require_open()
        self._waiting[execution_id] = self._waiting.get(execution_id, 0) + 1
        loop = asyncio.get_running_loop()
        try:
            # (no cancel scope at all without a timeout: entering one costs more than a step)
            with anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
                while True:
                    # registered before the read: an end announced after it still wakes us
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._finished.setdefault(execution_id, []).append(waiter)
                    try:
                        row = await self.store.get_execution(execution_id)
                        if row is None:
                            raise ExecutionNotFoundError(f"no execution with id {execution_id!r}")
                        status = ExecutionStatus(row.status)
                        if status.finished:
                            finish = Finish(status=row.status, result=row.result, error=row.error)
                            return self._outcome(status, row.workflow, finish)
                        # Running here, its end is announced locally: the store is re-read
                        # only rarely (it may suspend and finish elsewhere). Else every poll.
                        # (A timer and a future: a cancel scope per wait cost a tenth of S2.)
                        local = self.is_worker and execution_id in self.worker.active
                        timer = loop.call_later(self._poll * (10 if local else 1), _wake, waiter)
                        try:
                            await waiter
                        finally:
                            timer.cancel()
                    finally:
                        self._forget_waiter(execution_id, waiter)
                    ending = self._endings.get(execution_id)
                    if ending is not None:  # announced with what was written: no re-read
                        return self._outcome(ExecutionStatus(ending.status), row.workflow, ending)
        finally:
            left = self._waiting.pop(execution_id) - 1
            if left:
                self._waiting[execution_id] = left
            else:  # the last waiter leaves: nothing stays behind (timeouts, cancellation too)
                self._finished.pop(execution_id, None)
                self._endings.pop(execution_id, None)

    def _forget_waiter(self, execution_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._finished.get(execution_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._finished[execution_id]

    async def wait_idle(self) -> None:
        """Return once this worker runs nothing and nothing is due now (for tests).

        Only meaningful for a worker engine whose executions no other process holds.
        """
        self._require_open()
        while True:
            if not self.worker.active and not self.worker.claiming:
                await self.worker.purge_settled()
                next_wake = await self.store.next_wake_at(self.owner, list(self._workflows))
                nothing_due = next_wake is None or next_wake > self.clock.now()
                busy = self.worker.active or self.worker.claiming  # (the awaits let it claim)
                if nothing_due and not busy:
                    return
            self.worker.nudge()
            assert self.worker.idle is not None, "wait_idle needs a worker engine"
            await self.worker.idle.wait()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
