"""The engine end to end, on every store, with a virtual clock."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import structlog

from durable import (
    DurableContext,
    Engine,
    ExecutionAlreadyExistsError,
    ExecutionFailedError,
    ExecutionNotFoundError,
    ExecutionStatus,
    NonDeterministicError,
    PayloadTooLargeError,
    RetryPolicy,
    SerializationError,
    StepError,
    StepTimeoutError,
    StoreError,
    VirtualClock,
    WorkflowNotFoundError,
)
from durable.stores import SQLiteStore
from durable.types import ErrorInfo
from tests.helpers import drive, settle

EngineFactory = Callable[..., Engine]


@pytest.fixture(params=["memory", "sqlite"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> EngineFactory:
    """Build engines on the parametrized store, sharing one database file per test."""

    def factory(clock: VirtualClock | None = None, **kwargs: Any) -> Engine:
        url = ":memory:" if request.param == "memory" else str(tmp_path / "test.db")
        return Engine(url, clock=clock or VirtualClock(), poll_interval=0.05, **kwargs)

    return factory


@pytest.fixture
async def clock_engine(make_engine: EngineFactory) -> AsyncIterator[tuple[VirtualClock, Engine]]:
    clock = VirtualClock()
    return clock, make_engine(clock)


def types_of(history: list[Any]) -> list[str]:
    return [event.event_type for event in history]


def hanging_step() -> tuple[anyio.Event, Callable[[], Coroutine[Any, Any, None]]]:
    """A step body that never returns, and the event set once it has started."""
    started = anyio.Event()

    async def hangs() -> None:
        started.set()
        await anyio.Event().wait()

    return started, hangs


async def error_of_run(engine: Engine, workflow: Any) -> ErrorInfo:
    """Run ``workflow`` on ``engine`` (entered here) and return the error it failed with."""
    async with engine:
        with pytest.raises(ExecutionFailedError) as info:
            await engine.run(workflow)
    return info.value.error


async def test_order_workflow_steps_retry_and_wait(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    calls: list[str] = []

    async def reserve_inventory(items: list[str]) -> dict[str, Any]:
        calls.append("reserve")
        return {"reserved": items}

    def charge(amount: int) -> dict[str, str]:
        calls.append("charge")
        if calls.count("charge") == 1:
            raise TimeoutError("gateway timeout")
        return {"id": "p-9"}

    @engine.workflow
    async def place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        inventory = await ctx.step(reserve_inventory, order["items"])
        payment = await ctx.step(
            charge, order["amount"], name="process-payment", retry=RetryPolicy(max_attempts=3)
        )
        await ctx.wait(86_400, name="cool-off")
        return {"inventory": inventory, "payment": payment["id"]}

    async with engine:
        handle = await engine.start(place_order, {"items": ["a"], "amount": 5}, execution_id="o-1")
        jumps = await drive(engine, clock, handle)
        assert await handle.result() == {"inventory": {"reserved": ["a"]}, "payment": "p-9"}
        history = await engine.history("o-1")

    assert calls == ["reserve", "charge", "charge"]
    assert jumps[-1] == 86_400
    assert types_of(history) == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepFailed",
        "InvocationCompleted",
        "StepStarted",
        "StepSucceeded",
        "WaitStarted",
        "InvocationCompleted",
        "WaitSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    failed = history[4].to_json()
    assert failed["Name"] == "process-payment"
    assert failed["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] == "TimeoutError"
    assert failed["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"] == 1
    delay = failed["StepFailedDetails"]["RetryDetails"]["NextAttemptDelaySeconds"]
    assert isinstance(delay, int)
    assert 1 <= delay <= 5
    assert history[7].to_json()["StepSucceededDetails"]["RetryDetails"] == {"CurrentAttempt": 2}
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))


async def test_a_suspended_execution_holds_no_coroutine(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    finalized: list[str] = []

    @engine.workflow
    async def sleepy(ctx: DurableContext) -> str:
        try:
            await ctx.wait(30 * 86_400)
        finally:
            finalized.append("closed")
        return "woke"

    async with engine:
        handle = await engine.start(sleepy)
        await settle(engine)
        assert engine.worker.active == {}
        assert finalized == ["closed"]  # the coroutine was dropped, its finally ran
        assert await handle.status() is ExecutionStatus.RUNNING
        clock.advance(29 * 86_400)
        await settle(engine)
        assert await handle.status() is ExecutionStatus.RUNNING
        clock.advance(86_400)
        assert await handle.result() == "woke"


async def test_retries_exhausted_raise_step_error_the_workflow_can_catch(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        raise ValueError("card declined")

    @engine.workflow
    async def wf(ctx: DurableContext) -> dict[str, str]:
        try:
            await ctx.step(flaky, retry=RetryPolicy(max_attempts=3, initial_delay=3600))
        except StepError as exc:
            return {"type": exc.error_type, "message": exc.message}
        return {}

    async with engine:
        handle = await engine.start(wf)
        jumps = await drive(engine, clock, handle)
        assert await handle.result() == {"type": "ValueError", "message": "card declined"}
        history = await engine.history(handle.execution_id)
    assert len(attempts) == 3
    assert len(jumps) == 2
    assert all(1 <= j <= 7200 for j in jumps)
    failures = [e for e in history if e.event_type == "StepFailed"]
    assert [e.details["attempt"] for e in failures] == [1, 2, 3]
    assert "next_attempt_delay" not in failures[-1].details


async def test_uncaught_errors_keep_their_type_and_words(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _clock, engine = clock_engine

    def refuse() -> None:
        raise PermissionError("not approved")

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(refuse, retry=RetryPolicy.none())

    async with engine:
        handle = await engine.start(wf)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
        execution = await engine.get(handle.execution_id)
    assert info.value.error.type == "PermissionError"
    assert info.value.error.message == "not approved"
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.message == "not approved"


async def test_retry_on_limits_what_is_retried(clock_engine: tuple[VirtualClock, Engine]) -> None:
    _clock, engine = clock_engine
    attempts: list[int] = []

    def bad_input() -> None:
        attempts.append(1)
        raise KeyError("sku")

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(bad_input, retry=RetryPolicy(retry_on=(TimeoutError,)))

    async with engine:
        handle = await engine.start(wf)
        with pytest.raises(ExecutionFailedError, match="sku"):
            await handle.result()
    assert attempts == [1]


async def test_sync_steps_run_off_the_event_loop(clock_engine: tuple[VirtualClock, Engine]) -> None:
    _, engine = clock_engine
    loop_thread = threading.get_ident()

    def blocking() -> int:
        return threading.get_ident()

    async def non_blocking() -> int:
        return threading.get_ident()

    @engine.workflow
    async def wf(ctx: DurableContext) -> list[int]:
        return [await ctx.step(blocking), await ctx.step(non_blocking)]

    async with engine:
        sync_thread, async_thread = await engine.run(wf)
    assert sync_thread != loop_thread
    assert async_thread == loop_thread


async def test_step_timeout_follows_the_engine_clock(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    started, hangs = hanging_step()

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        try:
            await ctx.step(hangs, timeout=10, retry=RetryPolicy.none())
        except StepTimeoutError as exc:
            return exc.message
        return "no timeout"

    async with engine:
        handle = await engine.start(wf)
        await started.wait()
        clock.advance(9)
        await anyio.lowlevel.checkpoint()
        assert await handle.status() is ExecutionStatus.RUNNING
        clock.advance(1)
        message = await handle.result()
    assert "timed out after 10 s" in message


@dataclasses.dataclass
class Shipment:
    tracking: str
    items: list[str]


async def test_annotated_results_come_back_typed_live_and_on_replay(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    seen: list[Any] = []

    async def ship() -> Shipment:
        return Shipment("T-1", ["a"])

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        shipment = await ctx.step(ship)
        seen.append(shipment)
        await ctx.wait(1)
        return shipment.tracking

    async with engine:
        handle = await engine.start(wf)
        await drive(engine, clock, handle)
        assert await handle.result() == "T-1"
    assert seen == [Shipment("T-1", ["a"]), Shipment("T-1", ["a"])]


async def test_unserializable_step_result_is_a_clear_error_and_not_retried(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine
    runs: list[int] = []

    async def returns_a_lock() -> Any:
        runs.append(1)
        return threading.Lock()

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        await ctx.step(lambda: "fine", name="first")
        try:
            await ctx.step(returns_a_lock)
        except SerializationError as exc:
            return exc.message
        return "no error"

    async with engine:
        handle = await engine.start(wf)
        message = await handle.result()
        history = await engine.history(handle.execution_id)
    assert runs == [1]
    assert "result of step 'returns_a_lock' cannot be serialized" in message
    assert history[2].event_type == "StepSucceeded"  # what was recorded before is intact
    failed = [e for e in history if e.event_type == "StepFailed"]
    assert failed[0].details["error"].type == "SerializationError"


async def test_oversized_payloads_are_refused_before_anything_is_written(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(max_payload=1024)

    @engine.workflow
    async def wf(ctx: DurableContext, data: str) -> str:
        return await ctx.step(lambda: data * 4, name="grow")

    async with engine:
        with pytest.raises(PayloadTooLargeError, match="input of workflow 'wf'"):
            await engine.start(wf, "x" * 2000)
        assert await engine.list() == []
        handle = await engine.start(wf, "y" * 300)
        with pytest.raises(ExecutionFailedError, match="over the 1024-byte payload limit"):
            await handle.result()
        history = await engine.history(handle.execution_id)
    assert history[-2].event_type == "InvocationCompleted"
    assert [e.event_type for e in history if e.event_type.startswith("Step")] == [
        "StepStarted",
        "StepFailed",
    ]


async def test_start_is_idempotent_on_execution_id(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine
    runs: list[int] = []

    @engine.workflow
    async def wf(ctx: DurableContext, n: int) -> int:
        await ctx.step(lambda: runs.append(n), name="count")
        return n * 2

    @engine.workflow(name="other")
    async def other(ctx: DurableContext, n: int) -> int:
        return n

    async with engine:
        first = await engine.start(wf, 21, execution_id="same")
        assert await first.result() == 42
        again = await engine.start(wf, 21, execution_id="same")
        assert await again.result() == 42
        with pytest.raises(ExecutionAlreadyExistsError, match="different input"):
            await engine.start(wf, 22, execution_id="same")
        with pytest.raises(ExecutionAlreadyExistsError, match="workflow 'wf', not 'other'"):
            await engine.start(other, 21, execution_id="same")
        assert len(await engine.list()) == 1
    assert runs == [21]


async def test_unknown_workflows_and_executions_are_typed_errors(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine
    async with engine:
        with pytest.raises(WorkflowNotFoundError, match="'nope'"):
            await engine.start("nope", {})

        async def undecorated(ctx: DurableContext) -> None:
            return None

        with pytest.raises(TypeError, match=r"function 'undecorated'.*@engine\.workflow"):
            await engine.start(undecorated)  # type: ignore[call-overload]
        assert await engine.list() == []  # nothing was created
        with pytest.raises(ExecutionNotFoundError, match="'missing'"):
            await engine.get("missing")
        with pytest.raises(ExecutionNotFoundError):
            await engine.history("missing")
        with pytest.raises(ExecutionNotFoundError):
            await engine.handle("missing").result()


async def test_awaiting_a_non_durable_awaitable_fails_at_once(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await asyncio.sleep(0.01)  # any non-durable await: it fails at once

    error = await error_of_run(engine, wf)
    assert error.type == "NonDurableAwaitError"
    assert "ctx.step" in error.message


async def test_an_operation_awaited_in_another_context_fails_even_once_recorded(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine

    @engine.workflow
    async def wf(ctx: DurableContext) -> int:
        charge = ctx.step(lambda: 5, name="charge")
        await charge  # recorded: a replayed success must still not leak into a child

        async def child(child_ctx: DurableContext) -> int:
            return await charge

        return await ctx.run_in_child_context(child, name="reuse")

    error = await error_of_run(engine, wf)
    assert error.type == "NonDurableAwaitError"
    assert "different DurableContext" in error.message


async def test_a_recorded_result_that_no_longer_fits_its_annotation_is_a_clear_error(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "annotation.db")

    def produce_v1() -> str:
        return "forty-two"

    def produce_v2() -> int:
        return 42

    impl: list[Callable[[], Any]] = [produce_v1]
    engine = Engine(url, clock=clock)

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        try:
            value = await ctx.step(impl[0], name="produce")  # replayed after the wait
        except SerializationError as exc:
            return exc.message
        await ctx.wait(60)
        return f"no error: {value!r}"

    async with engine:
        handle = await engine.start(wf, execution_id="a")
        await settle(engine)
        impl[0] = produce_v2  # deployed with a new return type while it waited
        clock.advance(60)
        message = await handle.result()
    assert message == (
        "result of step 'produce' does not match its annotation: Expected `int`, got `str`"
    )


async def test_changed_code_is_a_non_determinism_error_and_history_is_kept(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "nd.db")
    v1 = Engine(url, clock=clock)

    @v1.workflow(name="order")
    async def order_v1(ctx: DurableContext) -> str:
        await ctx.step(lambda: 1, name="charge")
        await ctx.wait(60)
        return "done"

    async with v1:
        handle = await v1.start(order_v1, execution_id="o")
        await settle(v1)
        before = await v1.history("o")

    v2 = Engine(url, clock=clock)

    @v2.workflow(name="order")
    async def order_v2(ctx: DurableContext) -> str:
        await ctx.step(lambda: 1, name="refund")
        await ctx.wait(60)
        return "done"

    async with v2:
        clock.advance(60)
        with pytest.raises(ExecutionFailedError) as info:
            await v2.handle("o").result()
        after = await v2.history("o")
    assert info.value.error.type == "NonDeterministicError"
    assert "'charge'" in info.value.error.message
    assert "'refund'" in info.value.error.message
    assert "operation 1 of the workflow" in info.value.error.message
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]
    assert after[-1].event_type == "ExecutionFailed"
    assert handle.execution_id == "o"
    assert issubclass(NonDeterministicError, Exception)


async def test_now_random_and_uuid_are_the_same_on_every_replay(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    observed: list[tuple[Any, ...]] = []

    @engine.workflow
    async def wf(ctx: DurableContext) -> list[str]:
        first = (ctx.now(), ctx.random(), ctx.uuid4())
        observed.append(first)
        await ctx.wait(3600)
        second = (ctx.now(), ctx.random(), ctx.uuid4())
        observed.append(second)
        await ctx.wait(3600)
        return [str(v) for v in first + second]

    async with engine:
        handle = await engine.start(wf)
        start = clock.now()
        await drive(engine, clock, handle)
        result = await handle.result()
    # invocations: [first], [first, second], [first, second] -> every replay agrees
    assert observed[0] == observed[1] == observed[3]
    assert observed[2] == observed[4]
    assert observed[0][0].timestamp() == start
    assert observed[2][0].timestamp() == start + 3600
    assert observed[0][1] != observed[2][1]
    assert observed[0][2] != observed[2][2]
    assert result[0] == str(observed[0][0])


async def test_logger_is_silent_while_replaying(clock_engine: tuple[VirtualClock, Engine]) -> None:
    clock, engine = clock_engine
    flags: list[bool] = []

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        flags.append(ctx.is_replaying)
        ctx.logger.info("before wait")
        await ctx.wait(5)
        flags.append(ctx.is_replaying)
        ctx.logger.info("after wait")
        await ctx.wait(5)
        ctx.logger.info("finishing")

    with structlog.testing.capture_logs() as logs:
        async with engine:
            handle = await engine.start(wf)
            await drive(engine, clock, handle)
    lines = [entry["event"] for entry in logs if entry.get("execution_id") == handle.execution_id]
    assert lines == ["before wait", "after wait", "finishing"]
    # invocation 1: live; 2: replays the first wait, then live; 3: replays both waits
    assert flags == [False, True, False, True, True]


async def test_get_list_and_history(clock_engine: tuple[VirtualClock, Engine]) -> None:
    clock, engine = clock_engine

    @engine.workflow
    async def quick(ctx: DurableContext, n: int) -> int:
        return n

    @engine.workflow
    async def slow(ctx: DurableContext, n: int) -> int:
        await ctx.wait(100)
        return n

    async with engine:
        for i in range(3):
            await engine.run(quick, i, execution_id=f"q{i}")
            clock.advance(1)
        await engine.start(slow, 9, execution_id="s")
        await settle(engine)
        done = await engine.list(status=ExecutionStatus.SUCCEEDED)
        assert [e.execution_id for e in done] == ["q2", "q1", "q0"]
        running = await engine.list(status="RUNNING")
        assert [e.execution_id for e in running] == ["s"]
        assert [e.execution_id for e in await engine.list(workflow="slow")] == ["s"]
        assert len(await engine.list(limit=2)) == 2
        q1 = await engine.get("q1")
    assert q1.status is ExecutionStatus.SUCCEEDED
    assert q1.input == 1
    assert q1.result == 1
    assert q1.workflow == "quick"
    assert q1.ended_at is not None
    assert q1.ended_at >= q1.created_at


async def test_workflow_timeout(clock_engine: tuple[VirtualClock, Engine]) -> None:
    clock, engine = clock_engine

    @engine.workflow(timeout=3600)
    async def slow(ctx: DurableContext) -> None:
        await ctx.wait(7200)

    async with engine:
        handle = await engine.start(slow)
        await settle(engine)
        clock.advance(3600)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
    assert info.value.status == "TIMED_OUT"
    assert info.value.error.type == "Execution.TimedOut"


async def test_invalid_arguments_fail_the_workflow_clearly(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    _, engine = clock_engine

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.wait(0)

    async with engine:
        with pytest.raises(ExecutionFailedError, match="wait duration must be greater than zero"):
            await engine.run(wf)


async def test_executions_resume_after_a_clean_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "restart.db")
    ran: list[str] = []

    def app() -> tuple[Engine, Any]:
        engine = Engine(url, clock=clock)

        @engine.workflow
        async def wf(ctx: DurableContext) -> str:
            await ctx.step(lambda: ran.append("a"), name="a")
            await ctx.wait(3600)
            await ctx.step(lambda: ran.append("b"), name="b")
            return "ok"

        return engine, wf

    engine, wf = app()
    async with engine:
        await engine.start(wf, execution_id="r")
        await settle(engine)
    clock.advance(3600)
    engine, _ = app()
    async with engine:
        assert await engine.handle("r").result() == "ok"
    assert ran == ["a", "b"]


async def test_shutdown_mid_step_releases_the_execution(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "shutdown.db")
    started = anyio.Event()
    runs: list[int] = []

    def app(block: bool) -> tuple[Engine, Any]:
        engine = Engine(url, clock=clock)

        async def slow_step() -> str:
            runs.append(1)
            if block:
                started.set()
                await anyio.Event().wait()
            return "finished"

        @engine.workflow
        async def wf(ctx: DurableContext) -> str:
            return await ctx.step(slow_step)

        return engine, wf

    engine, wf = app(block=True)
    async with engine:
        await engine.start(wf, execution_id="s")
        await started.wait()
    engine, _ = app(block=False)
    async with engine:
        assert await engine.handle("s").result() == "finished"
        history = await engine.history("s")
    assert runs == [1, 1]
    shutdown = [
        e for e in history if e.event_type == "InvocationCompleted" and "error" in e.details
    ]
    assert shutdown[0].details["error"].type == "Runtime.Shutdown"
    assert [e.event_type for e in history].count("StepStarted") == 1


async def test_workflow_timeout_fires_while_a_step_runs(
    clock_engine: tuple[VirtualClock, Engine],
) -> None:
    clock, engine = clock_engine
    started, hangs = hanging_step()

    @engine.workflow(timeout=60)
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(hangs)

    async with engine:
        handle = await engine.start(wf)
        await started.wait()
        clock.advance(60)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
        history = await engine.history(handle.execution_id)
    assert info.value.status == "TIMED_OUT"
    assert history[-1].event_type == "ExecutionTimedOut"
    assert engine.worker.active == {}


async def test_huge_error_messages_are_truncated(clock_engine: tuple[VirtualClock, Engine]) -> None:
    _, engine = clock_engine

    def loud() -> None:
        raise ValueError("x" * 1_000_000)

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(loud, retry=RetryPolicy.none())

    async with engine:
        with pytest.raises(ExecutionFailedError) as info:
            await engine.run(wf)
    assert len(info.value.error.message) < 20_000
    assert info.value.error.message.endswith("(truncated)")


async def test_a_locked_database_loses_nothing_and_the_execution_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    clock = VirtualClock()
    engine = Engine(
        store=SQLiteStore(str(path), busy_timeout=0.05), clock=clock, poll_interval=0.02
    )
    release_step = anyio.Event()
    runs: list[str] = []

    async def first() -> str:
        runs.append("first")
        return "one"

    async def second() -> str:
        runs.append("second")
        await release_step.wait()
        return "two"

    @engine.workflow
    async def wf(ctx: DurableContext) -> list[str]:
        return [await ctx.step(first), await ctx.step(second)]

    with structlog.testing.capture_logs() as logs:
        async with engine:
            handle = await engine.start(wf, execution_id="locked")
            while runs != ["first", "second"]:
                await anyio.lowlevel.checkpoint()
            blocker = sqlite3.connect(path, timeout=0)
            blocker.execute("BEGIN EXCLUSIVE")
            release_step.set()  # its checkpoint now meets the lock
            while not any("will retry" in entry["event"] for entry in logs):  # noqa: ASYNC110 - polling captured logs
                await anyio.sleep(0.01)  # the checkpoint and the release both met the lock
            blocker.rollback()
            blocker.close()
            assert await handle.result(timeout=30) == ["one", "two"]
            history = await engine.history("locked")
    assert runs.count("first") == 1  # its checkpoint was committed before the lock
    assert runs.count("second") == 2  # re-run: its checkpoint never was (at least once)
    succeeded = [e.name for e in history if e.event_type == "StepSucceeded"]
    assert succeeded == ["first", "second"]


async def test_a_file_that_is_not_a_durable_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my precious notes\n" * 100)
    engine = Engine(str(path))
    with pytest.raises(StoreError, match="not a durable database"):
        async with engine:
            pass
    assert path.read_text() == "my precious notes\n" * 100
