"""``DurableTestRunner``: an engine on an in-memory store and a clock that skips time.

Time skipping: virtual time moves only inside the runner's awaiting calls (``run``,
``result``, ``handle.result``, ``wait_for_callback``, ``advance``,
``advance_to_next_timer``), and only when the engine is idle: nothing runs and nothing is
due. Then the clock jumps to the next wake-up the store knows (a timer, a retry, a callback
or workflow deadline, a dead worker's lease). Steps run for real and time stands still
while they do, so a step never sees its own ``timeout`` expire unless the test moves the
clock (``runner.clock.advance``) from inside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar, overload

import anyio

from durable.clock import VirtualClock
from durable.engine import Engine
from durable.errors import CallbackNotFoundError, WorkflowNotFoundError
from durable.handle import ExecutionHandle
from durable.serde import DEFAULT_MAX_PAYLOAD
from durable.testing import _inbox
from durable.testing._crash import CrashingStore, CrashPoint, CrashRule
from durable.testing._fakes import fake_workflow
from durable.testing._history import HistorySource
from durable.testing._replayer import ReplayResult, check_replay
from durable.testing._result import TestResult
from durable.types import Duration
from durable.workflow import Workflow

__all__ = ["DurableTestRunner", "TestHandle"]

T = TypeVar("T")

DEFAULT_MAX_JUMPS = 10_000


class TestHandle(ExecutionHandle[T]):
    """An execution started by ``runner.start``: its ``result()`` lets virtual time pass.

    Attributes:
        execution_id: the execution's id.
    """

    __test__ = False  # not a pytest test class
    __slots__ = ("_runner",)

    def __init__(self, runner: DurableTestRunner, execution_id: str) -> None:
        super().__init__(runner.engine, execution_id)
        self._runner = runner

    async def result(self, timeout: float | None = None) -> T:
        """Skip time until the execution ends, then return its result.

        Args:
            timeout: wall-clock seconds to wait at most (``TimeoutError`` after that).

        Raises:
            ExecutionFailedError: it failed, stopped or timed out (type and message
                verbatim).
            RuntimeError: it cannot end without the test (e.g. it waits for a callback).
        """
        with anyio.fail_after(timeout):
            await self._runner._until_finished(self.execution_id)
        return await super().result()

    def __repr__(self) -> str:
        return f"<TestHandle {self.execution_id!r}>"


class DurableTestRunner:
    """Run workflows in tests: in-memory store, virtual clock that skips time, crash
    injection, fakes for invoked workflows, and replay checks.

    Args:
        engine: an application's engine whose registered workflows to test. Its workflow
            objects are registered on the runner's own engine (a fresh one on an in-memory
            store and the virtual clock); ``engine`` itself is never touched or started.
            ``None``: register test workflows with ``@runner.workflow``.
        clock: the virtual clock to use (a new one by default).
        max_jumps: how many clock jumps one awaiting call may make before it gives up
            (a workflow that polls forever).

    Use it as ``async with DurableTestRunner(...) as runner:``. ``runner.workflow``
    registers a workflow exactly like ``engine.workflow``; ``runner.engine`` and
    ``runner.clock`` are the engine and clock it runs.

    Example::

        async with DurableTestRunner() as runner:

            @runner.workflow
            async def reminder(ctx: DurableContext, user: str) -> str:
                await ctx.wait(timedelta(days=7))
                return await ctx.step(send_reminder, user)

            result = await runner.run(reminder, "ana")     # milliseconds, not a week
            assert result.status == "SUCCEEDED"
            assert result.history[-1].timestamp - result.history[0].timestamp >= timedelta(days=7)
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        clock: VirtualClock | None = None,
        max_jumps: int = DEFAULT_MAX_JUMPS,
    ) -> None:
        if max_jumps < 1:
            raise ValueError(f"max_jumps must be at least 1, got {max_jumps!r}")
        self.clock = clock if clock is not None else VirtualClock()
        self.max_jumps = max_jumps
        self._store = CrashingStore()
        self.engine = Engine(
            ":memory:",
            store=self._store,
            clock=self.clock,
            max_payload=engine.serde.max_payload if engine is not None else DEFAULT_MAX_PAYLOAD,
            shutdown_grace=0,
        )
        if engine is not None:
            # The app's own Workflow objects (not copies); the app's engine is left alone.
            self.engine._workflows.update(engine.workflows)
        self.workflow = self.engine.workflow
        self._host: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<DurableTestRunner workflows={sorted(self.engine.workflows)}>"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> DurableTestRunner:
        if self._host is not None:
            raise RuntimeError("this DurableTestRunner is already running")
        ready = asyncio.Event()
        self._stop = asyncio.Event()
        # The engine lives in a task of its own, so the runner may be entered and left in
        # different tasks (pytest-asyncio sets fixtures up and tears them down that way).
        self._host = asyncio.create_task(self._serve(ready, self._stop))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({self._host, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self._host.done():
            host, self._host = self._host, None
            host.result()  # the engine could not start: raise why
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        host, self._host = self._host, None
        if host is not None and self._stop is not None:
            self._stop.set()
            await host

    async def _serve(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        async with self.engine:
            ready.set()
            await stop.wait()

    def _check_running(self) -> None:
        host = self._host
        if host is None:
            raise RuntimeError("use the runner inside 'async with DurableTestRunner() as runner:'")
        if host.done():
            host.result()
            raise RuntimeError("the runner's engine stopped")

    # -- starting and waiting ------------------------------------------------------------

    @overload
    async def start(
        self, workflow: Workflow[T], input: Any = None, *, execution_id: str | None = None
    ) -> TestHandle[T]: ...

    @overload
    async def start(
        self, workflow: str, input: Any = None, *, execution_id: str | None = None
    ) -> TestHandle[Any]: ...

    async def start(
        self, workflow: Workflow[Any] | str, input: Any = None, *, execution_id: str | None = None
    ) -> TestHandle[Any]:
        """Start an execution (as ``engine.start``); no time passes.

        Raises:
            WorkflowNotFoundError: the workflow is not registered on the runner.
        """
        self._check_running()
        handle = await self.engine.start(workflow, input, execution_id=execution_id)
        return TestHandle(self, handle.execution_id)

    @overload
    async def run(
        self, workflow: Workflow[T], input: Any = None, *, execution_id: str | None = None
    ) -> TestResult[T]: ...

    @overload
    async def run(
        self, workflow: str, input: Any = None, *, execution_id: str | None = None
    ) -> TestResult[Any]: ...

    async def run(
        self, workflow: Workflow[Any] | str, input: Any = None, *, execution_id: str | None = None
    ) -> TestResult[Any]:
        """Start an execution and skip time until it ends.

        Returns:
            Its :class:`TestResult`, whatever its status (a failed workflow does not raise).

        Raises:
            RuntimeError: it cannot end without the test (it waits for a callback: use
                :meth:`start`, :meth:`wait_for_callback` and :meth:`send_callback_success`),
                or it is still running after ``max_jumps`` clock jumps.
        """
        handle = await self.start(workflow, input, execution_id=execution_id)
        return await self.result(handle)

    @overload
    async def result(self, handle: ExecutionHandle[T]) -> TestResult[T]: ...

    @overload
    async def result(self, handle: str) -> TestResult[Any]: ...

    async def result(self, handle: ExecutionHandle[Any] | str) -> TestResult[Any]:
        """Skip time until the execution ends and return its :class:`TestResult`.

        Raises the same errors as :meth:`run`.
        """
        execution_id = _id_of(handle)
        await self._until_finished(execution_id)
        return await self.inspect(execution_id)

    @overload
    async def inspect(self, handle: ExecutionHandle[T]) -> TestResult[T]: ...

    @overload
    async def inspect(self, handle: str) -> TestResult[Any]: ...

    async def inspect(self, handle: ExecutionHandle[Any] | str) -> TestResult[Any]:
        """The execution as it stands now (after the engine settles; no time passes).

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        self._check_running()
        execution_id = _id_of(handle)
        await self.engine.wait_idle()
        execution = await self.engine.get(execution_id)
        return TestResult.build(
            execution_id=execution_id,
            workflow=execution.workflow,
            status=execution.status,
            result=execution.result,
            error=execution.error,
            history=await self.engine.history(execution_id),
        )

    async def _until_finished(self, execution_id: str) -> None:
        async def finished() -> bool:
            return (await self.engine.get(execution_id)).status.finished

        await self._skip_until(finished, lambda: _inbox.stuck(self.engine, execution_id, "end"))

    async def _skip_until(
        self, done: Callable[[], Awaitable[bool]], stuck: Callable[[], Awaitable[str]]
    ) -> None:
        """Settle; until ``done``, jump the clock to the next wake-up and settle again."""
        start = self.clock.now()
        for _ in range(self.max_jumps + 1):
            self._check_running()
            await self.engine.wait_idle()
            if await done():
                return
            wake = await self.engine.store.next_wake_at(self.engine.owner)
            if wake is None:
                raise RuntimeError(await stuck())
            self.clock.set(max(wake, self.clock.now()))
        raise RuntimeError(
            f"still not done after {self.max_jumps} clock jumps "
            f"({timedelta(seconds=self.clock.now() - start)} of virtual time); pass "
            "DurableTestRunner(max_jumps=...) if the workflow really polls that often"
        )

    # -- time --------------------------------------------------------------------------

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward by ``duration``, firing what comes due on the way in
        order (each at its own time), and let the engine settle.

        Args:
            duration: a ``timedelta`` or seconds (0 just settles).

        Raises:
            ValueError: ``duration`` is negative (virtual time never goes back).
        """
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"advance takes a timedelta or seconds, not {duration!r}")
        if not seconds >= 0:
            raise ValueError(
                f"cannot advance the clock by {duration!r}: virtual time only moves forward"
            )
        self._check_running()
        target = self.clock.now() + seconds
        for _ in range(self.max_jumps):
            await self.engine.wait_idle()
            wake = await self.engine.store.next_wake_at(self.engine.owner)
            if wake is None or wake > target:
                self.clock.set(max(target, self.clock.now()))
                await self.engine.wait_idle()
                return
            self.clock.set(max(wake, self.clock.now()))
        raise RuntimeError(
            f"advance({duration!r}) met more than {self.max_jumps} wake-ups; pass "
            "DurableTestRunner(max_jumps=...) if the workflow really polls that often"
        )

    async def advance_to_next_timer(self) -> timedelta | None:
        """Jump to the next wake-up (timer, retry, deadline, dead worker's lease) and settle.

        Returns:
            How far the clock moved, or ``None`` when nothing is scheduled.
        """
        self._check_running()
        await self.engine.wait_idle()
        wake = await self.engine.store.next_wake_at(self.engine.owner)
        if wake is None:
            return None
        before = self.clock.now()
        self.clock.set(max(wake, before))
        await self.engine.wait_idle()
        return timedelta(seconds=self.clock.now() - before)

    # -- callbacks ---------------------------------------------------------------------

    async def wait_for_callback(self, handle: ExecutionHandle[Any] | str, name: str) -> str:
        """The id of the pending callback named ``name``, once the workflow created it.

        Time skips (as in :meth:`run`) only while the workflow has not created it and the
        engine is idle: nothing else can make progress. With several callbacks of that
        name, the oldest one still pending is returned.

        Raises:
            RuntimeError: the execution ended, or can make no progress, without creating it.
        """
        execution_id = _id_of(handle)
        found: list[str] = []

        async def created() -> bool:
            for callback in await _inbox.callbacks_of(self.engine, execution_id):
                if callback.name == name:
                    found.append(callback.callback_id)
                    return True
            execution = await self.engine.get(execution_id)
            if execution.status.finished:
                names = await _inbox.callback_names(self.engine, execution_id)
                raise RuntimeError(
                    f"execution {execution_id!r} ended ({execution.status}) without a pending "
                    f"callback named {name!r}; {names}"
                )
            return False

        async def stuck() -> str:
            names = await _inbox.callback_names(self.engine, execution_id)
            why = await _inbox.stuck(self.engine, execution_id, f"create callback {name!r}")
            return f"{why}; {names}"

        await self._skip_until(created, stuck)
        return found[0]

    async def send_callback_success(self, callback_id: str, result: Any = None) -> None:
        """Complete a callback (as ``engine.send_callback_success``), then let the engine
        settle (no time passes).

        Raises:
            CallbackNotFoundError: no callback has this id (yet): the message lists the
                callbacks that exist.
            CallbackAlreadyCompletedError: it was already answered or timed out.
        """
        await self._answer(
            callback_id, lambda: self.engine.send_callback_success(callback_id, result)
        )

    async def send_callback_failure(
        self, callback_id: str, *, error_type: str, message: str
    ) -> None:
        """Fail a callback (as ``engine.send_callback_failure``), then settle.

        Raises the same errors as :meth:`send_callback_success`.
        """
        await self._answer(
            callback_id,
            lambda: self.engine.send_callback_failure(
                callback_id, error_type=error_type, message=message
            ),
        )

    async def send_callback_heartbeat(self, callback_id: str) -> None:
        """Heartbeat a callback (as ``engine.send_callback_heartbeat``), then settle.

        Raises the same errors as :meth:`send_callback_success`.
        """
        await self._answer(callback_id, lambda: self.engine.send_callback_heartbeat(callback_id))

    async def _answer(self, callback_id: str, send: Callable[[], Awaitable[None]]) -> None:
        self._check_running()
        try:
            await send()
        except CallbackNotFoundError:
            raise CallbackNotFoundError(await _inbox.unknown(self.engine, callback_id)) from None
        await self.engine.wait_idle()

    # -- fakes, crashes, replay ------------------------------------------------------------

    def register_fake(self, name: str, fn_or_result: Any = None) -> Workflow[Any]:
        """Register a stand-in workflow under ``name`` for ``ctx.invoke`` to run instead.

        It replaces a workflow of that name on the runner's engine (never on the app's).

        Args:
            name: the invoked workflow's name (``ctx.invoke`` resolves workflows by name).
            fn_or_result: an ``async def (ctx, input)`` (or ``(ctx)``) to run as the child
                workflow; an exception instance, which the child raises (the invoke fails
                with ``InvokeError`` carrying its type and message); or any other value,
                which the child returns.

        Returns:
            The registered stand-in.
        """
        fake = fake_workflow(name, fn_or_result)
        self.engine._workflows[name] = fake
        return fake

    def crash_at(
        self,
        operation: str,
        *,
        point: CrashPoint | str = CrashPoint.AFTER_START,
        attempt: int | None = None,
        execution_id: str | None = None,
    ) -> CrashRule:
        """Make the worker die once at the operation named ``operation``; the engine then
        takes the execution over as a new invocation, as after a real crash.

        The takeover happens when the dead worker's lease expires, which the runner's time
        skipping reaches at once; the resumed invocation records ``InvocationCompleted``
        with ``Runtime.ExitError`` first. See :class:`CrashPoint` for ``point``.

        Args:
            operation: the operation's name (a step's defaults to its function's name).
            point: where around it the worker dies.
            attempt: only at this step attempt (``None``: the first that matches).
            execution_id: only in this execution (``None``: any).

        Returns:
            The armed :class:`CrashRule` (``rule.fired`` tells whether it happened; use it
            as a context manager to disarm it at the end of a block).
        """
        rule = CrashRule(operation, CrashPoint(point), attempt, execution_id)
        return self._store.add_rule(rule)

    async def replay_check(
        self, workflow: Workflow[Any] | str, history_json: HistorySource
    ) -> ReplayResult:
        """Replay a recorded history against the current code of ``workflow`` (see
        :func:`~durable.testing.check_replay`); the runner's workflows (fakes included)
        are the ones ``ctx.invoke`` may name.

        Raises:
            NonDeterministicError: the code does not reproduce the history.
            ValueError: ``history_json`` is not a history.
            WorkflowNotFoundError: ``workflow`` is a name the runner does not know.
        """
        workflows = self.engine.workflows
        wf = workflows.get(workflow) if isinstance(workflow, str) else workflow
        if wf is None:
            known = ", ".join(sorted(workflows)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow named {workflow!r} is registered on the runner (registered: {known})"
            )
        return await check_replay(
            wf,
            history_json,
            workflows=_others(workflows.values(), wf),
            max_payload=self.engine.serde.max_payload,
        )


def _others(workflows: Iterable[Workflow[Any]], wf: Workflow[Any]) -> list[Workflow[Any]]:
    return [w for w in workflows if w.name != wf.name]


def _id_of(handle: ExecutionHandle[Any] | str) -> str:
    return handle if isinstance(handle, str) else handle.execution_id
