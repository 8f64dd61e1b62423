"""Failure modes found in review (most of these tests fail on the engine before its fixes)."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from durable import (
    CallbackAlreadyCompletedError,
    DurableContext,
    Engine,
    ExecutionFailedError,
    ExecutionStatus,
    Jitter,
    PayloadTooLargeError,
    RetryPolicy,
    StepError,
    StepSemantics,
    StoreError,
    VirtualClock,
    poll_until,
)
from durable.invocation import Invocation
from durable.stores import MemoryStore
from durable.stores.base import Checkpoint
from tests.helpers import drive, settle


class FlakyStore(MemoryStore):
    """A memory store whose next ``fail`` commits matching ``when`` raise StoreError."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0
        self.when: Any = lambda cp: True

    async def commit(self, checkpoint: Checkpoint) -> None:
        if self.fail and self.when(checkpoint):
            self.fail -= 1
            raise StoreError("database is locked (injected)")
        await super().commit(checkpoint)


class BuggyThenSlowStore(MemoryStore):
    """The commit with a StepSucceeded event raises a RuntimeError (as an engine bug would);
    the final commit that follows (the execution failed) waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True
        self.final_blocked = anyio.Event()
        self.final_cancelled = anyio.Event()
        self.gate = anyio.Event()

    async def commit(self, checkpoint: Checkpoint) -> None:
        if self.armed and any(b"StepSucceeded" in e for e in checkpoint.events):
            self.armed = False
            raise RuntimeError("engine bug (injected)")
        if checkpoint.finish is not None and not self.final_blocked.is_set():
            self.final_blocked.set()
            try:
                await self.gate.wait()
            except anyio.get_cancelled_exc_class():
                self.final_cancelled.set()
                raise
        await super().commit(checkpoint)


def side_by_side(*values: int) -> Any:
    """A workflow running one step per value in ``ctx.parallel``."""

    def branch(value: int) -> Any:
        async def run(ctx: DurableContext) -> int:
            return await ctx.step(lambda: value, name=f"branch-{value}")

        return run

    async def wf(ctx: DurableContext) -> list[int]:
        result = await ctx.parallel([branch(value) for value in values])
        return result.get_results()

    return wf


async def test_a_failed_finishing_commit_is_written_again() -> None:
    store = FlakyStore()
    engine = Engine(store=store, clock=VirtualClock(), poll_interval=0.01)

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        return await ctx.step(lambda: "done", name="only")

    store.when = lambda cp: cp.finish is not None
    store.fail = 1
    async with engine:
        handle = await engine.start(wf)
        assert await handle.result(timeout=10) == "done"
        history = await engine.history(handle.execution_id)
    types = [e.event_type for e in history]
    assert types[-2:] == ["InvocationCompleted", "ExecutionSucceeded"]
    assert types.count("ExecutionSucceeded") == 1


async def test_a_store_error_while_steps_run_side_by_side_is_retried_not_a_failure() -> None:
    # The driver opens a task group only for attempts that run beside others; a store error
    # raised while that group is open must reach the invocation as itself (retry later),
    # not wrapped in an exception group (which would fail the execution as an engine bug).
    store = FlakyStore()
    engine = Engine(store=store, clock=VirtualClock(), poll_interval=0.01)
    wf = engine.workflow(side_by_side(1, 2), name="wf")
    store.when = lambda cp: any(b"StepSucceeded" in e for e in cp.events)
    store.fail = 1
    async with engine:
        handle = await engine.start(wf)
        assert await handle.result(timeout=10) == [1, 2]
        history = await engine.history(handle.execution_id)
    assert store.fail == 0  # the error was raised
    assert "ExecutionFailed" not in [e.event_type for e in history]


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_abandon_cancels_what_the_invocation_still_awaits(parallel: bool) -> None:
    # An error in the driver fails the execution; while that last commit is under way the
    # execution is stopped elsewhere (abandon). With steps side by side the driver's task
    # group has already closed by then: abandon() must still reach the invocation.
    store = BuggyThenSlowStore()
    engine = Engine(store=store, clock=VirtualClock(), poll_interval=0.01)

    async def sequential(ctx: DurableContext) -> int:
        return await ctx.step(lambda: 1, name="one")

    wf = engine.workflow(side_by_side(1, 2) if parallel else sequential, name="wf")
    async with engine:
        handle = await engine.start(wf)
        with anyio.fail_after(10):
            await store.final_blocked.wait()
            invocation = engine.worker.active[handle.execution_id]
            assert invocation is not None
            invocation.abandon()  # what engine.stop() and a lost lease do
            await store.final_cancelled.wait()
        store.gate.set()
        await settle(engine)
        assert handle.execution_id not in engine.worker.active


async def test_an_error_escaping_a_parallel_attempt_fails_the_execution_with_that_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Attempts turn every error of user code into an outcome; one that escapes anyway is an
    # engine bug. It fails the execution as an error in the driver does, under its own name
    # (not as the task group's "unhandled errors in a TaskGroup").
    from durable.step import StepOp

    original = StepOp._attempt
    calls = 0

    async def broken(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("bug in the attempt wrapper (injected)")
        return await original(self, *args)

    monkeypatch.setattr(StepOp, "_attempt", broken)
    engine = Engine(":memory:", clock=VirtualClock())
    wf = engine.workflow(side_by_side(1, 2), name="wf")
    async with engine:
        with pytest.raises(ExecutionFailedError) as info:
            await engine.run(wf, timeout=10)
    assert info.value.error.type == "ValueError"
    assert "bug in the attempt wrapper" in info.value.error.message


async def test_an_at_most_once_start_that_was_never_committed_is_not_an_interruption() -> None:
    store = FlakyStore()
    engine = Engine(store=store, clock=VirtualClock(), poll_interval=0.01)
    runs: list[int] = []

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        return await ctx.step(
            lambda: runs.append(1) or "paid",
            name="charge",
            semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
            retry=RetryPolicy.none(),
        )

    store.when = lambda cp: any(b"StepStarted" in e for e in cp.events) and not cp.release
    store.fail = 1
    async with engine:
        assert await engine.run(wf, timeout=10) == "paid"
    assert runs == [1]


async def test_a_raising_retry_predicate_fails_the_execution_not_the_engine() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    def boom() -> None:
        raise ValueError("no code attribute here")

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(boom, retry=RetryPolicy(retry_on=lambda exc: exc.code == 503))  # type: ignore[attr-defined]

    @engine.workflow
    async def fine(ctx: DurableContext) -> str:
        return "still alive"

    async with engine:
        with pytest.raises(ExecutionFailedError) as info:
            await engine.run(wf)
        assert await engine.run(fine) == "still alive"
    assert info.value.error.type == "AttributeError"


async def test_bad_names_and_policies_are_refused_at_the_call() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def wf(ctx: DurableContext, case: str) -> None:
        if case == "name":
            await ctx.step(lambda: 1, name=123)  # type: ignore[arg-type]
        elif case == "retry":
            await ctx.step(lambda: 1, retry="3 attempts")  # type: ignore[arg-type]
        elif case == "inf":
            await ctx.wait(math.inf)
        else:
            await ctx.wait(timedelta.max)

    async with engine:
        for case, message in [
            ("name", "must be a string"),
            ("retry", "must be a RetryPolicy"),
            ("inf", "at most 100 years"),
            ("max", "at most 100 years"),
        ]:
            with pytest.raises(ExecutionFailedError, match=message):
                await engine.run(wf, case)
            history = await engine.list(limit=1)
            assert history[0].status is ExecutionStatus.FAILED


def test_retry_policy_coerces_and_validates() -> None:
    assert RetryPolicy(jitter="NONE").jitter is Jitter.NONE  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        RetryPolicy(jitter="bogus")  # type: ignore[arg-type]
    assert RetryPolicy(retry_on=TimeoutError).retry_on == (TimeoutError,)  # type: ignore[arg-type]
    assert not RetryPolicy(retry_on=TimeoutError).should_retry(ValueError())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception types"):
        RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=True)


async def test_a_step_raising_cancelled_error_itself_is_a_failure_not_a_loop() -> None:
    engine = Engine(":memory:", clock=VirtualClock())
    runs: list[int] = []

    async def rude() -> None:
        runs.append(1)
        raise asyncio.CancelledError("the client gave up")

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        try:
            await ctx.step(rude, retry=RetryPolicy.none())
        except StepError as exc:
            return exc.error_type
        return "no error"

    async with engine:
        assert await engine.run(wf, timeout=10) == "CancelledError"
    assert runs == [1]


async def test_a_subtype_change_is_non_deterministic(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "nd.db")
    v1 = Engine(url, clock=clock)

    @v1.workflow(name="job")
    async def job_v1(ctx: DurableContext) -> Any:
        await ctx.step(lambda s=None: 1, name="check")
        await ctx.wait(60)

    async with v1:
        await v1.start(job_v1, execution_id="j")
        await settle(v1)

    v2 = Engine(url, clock=clock)

    @v2.workflow(name="job")
    async def job_v2(ctx: DurableContext) -> Any:
        await ctx.wait_for_condition(
            lambda s: s, initial_state=1, name="check", strategy=poll_until(lambda s: True)
        )
        await ctx.wait(60)

    async with v2:
        clock.advance(60)
        with pytest.raises(ExecutionFailedError) as info:
            await v2.handle("j").result()
    assert info.value.error.type == "NonDeterministicError"
    assert "WaitForCondition" in info.value.error.message


async def test_a_callback_times_out_on_time_even_when_not_awaited() -> None:
    clock = VirtualClock()
    engine = Engine(":memory:", clock=clock)

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        cb = await ctx.create_callback(timeout=10)
        await ctx.wait(1000)
        try:
            await cb.result()
        except Exception as exc:
            return type(exc).__name__
        return "answered"

    async with engine:
        handle = await engine.start(wf)
        jumps = await drive(engine, clock, handle)
        history = await engine.history(handle.execution_id)
    assert jumps == [10, 990]
    timed_out = next(e for e in history if e.event_type == "CallbackTimedOut")
    assert timed_out.timestamp.timestamp() == history[0].timestamp.timestamp() + 10


async def test_a_late_answer_to_a_failed_wait_for_callback_is_refused() -> None:
    clock = VirtualClock()
    engine = Engine(":memory:", clock=clock)
    ids: list[str] = []

    def submit(callback_id: str) -> None:
        ids.append(callback_id)
        raise ConnectionError("mail server down")

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        try:
            await ctx.wait_for_callback(submit, retry=RetryPolicy.none())
        except StepError:
            return "gave up"
        return "answered"

    async with engine:
        assert await engine.run(wf) == "gave up"
        with pytest.raises(CallbackAlreadyCompletedError, match="CANCELLED"):
            await engine.send_callback_success(ids[0], "too late")


async def test_now_after_an_oversized_child_is_the_same_on_replay() -> None:
    clock = VirtualClock()
    engine = Engine(":memory:", clock=clock, max_payload=512)
    seen: list[float] = []

    async def big(ctx: DurableContext) -> str:
        return "x" * 1000

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.run_in_child_context(big)
        seen.append(ctx.now().timestamp())
        await ctx.wait(3600)

    async with engine:
        handle = await engine.start(wf)
        await drive(engine, clock, handle)
    assert len(seen) == 2
    assert seen[0] == seen[1]


async def test_a_client_started_execution_gets_the_workflow_timeout(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "t.db")
    async with Engine(url, worker=False, clock=clock) as client:
        await client.start("slow", None, execution_id="s")
    worker = Engine(url, clock=clock)

    @worker.workflow(timeout=60)
    async def slow(ctx: DurableContext) -> None:
        await ctx.wait(3600)

    async with worker:
        handle = worker.handle("s")
        await drive(worker, clock, handle)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
    assert info.value.status == "TIMED_OUT"
    assert "60 s timeout" in info.value.error.message


async def test_a_worker_only_claims_workflows_it_knows(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "two.db")
    other = Engine(url, clock=clock)

    @other.workflow
    async def unrelated(ctx: DurableContext) -> None: ...

    knows = Engine(url, clock=clock)

    @knows.workflow
    async def job(ctx: DurableContext) -> str:
        return "ran"

    async with other, Engine(url, worker=False, clock=clock) as client:
        await client.start("job", None, execution_id="j")
        await settle(other)
        row = await other.store.get_execution("j")
        assert row is not None
        assert row.lease_owner is None  # not claimed and parked by the wrong worker
    async with knows:
        assert await knows.handle("j").result() == "ran"


async def test_callback_failures_respect_the_payload_limit() -> None:
    engine = Engine(":memory:", clock=VirtualClock(), max_payload=1024)
    ids: list[str] = []

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        cb = await ctx.create_callback()
        await ctx.step(ids.append, cb.id, name="hand-out")
        return await cb.result()

    async with engine:
        await engine.start(wf)
        await settle(engine)
        with pytest.raises(PayloadTooLargeError):
            await engine.send_callback_failure(ids[0], error_type="E", message="x" * 5000)


async def test_idempotent_start_ignores_dict_key_order() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def wf(ctx: DurableContext, order: dict[str, int]) -> int:
        return order["qty"]

    async with engine:
        first = await engine.start(wf, {"id": 1, "qty": 2}, execution_id="o")
        again = await engine.start(wf, {"qty": 2, "id": 1}, execution_id="o")
        assert await again.result() == await first.result() == 2


async def test_logger_has_the_usual_levels() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        ctx.logger.critical("on fire")
        ctx.logger.warn("careful")
        ctx.logger.msg("hello")

    with structlog.testing.capture_logs() as logs:
        async with engine:
            await engine.run(wf)
    assert [e["event"] for e in logs if e.get("execution_id")] == ["on fire", "careful", "hello"]


async def test_history_json_survives_non_string_keys() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        return await ctx.step(lambda: {1: "one", (2, 3): "pair"}, name="odd")

    async with engine:
        handle = await engine.start(wf)
        await handle.result()
        history = await engine.history(handle.execution_id)
    succeeded = next(e for e in history if e.event_type == "StepSucceeded").to_json()
    assert succeeded["StepSucceededDetails"]["Result"]["Payload"] == (
        '{"1": "one", "(2, 3)": "pair"}'
    )


async def test_a_lost_lease_stops_the_invocation() -> None:
    clock = VirtualClock()
    engine = Engine(":memory:", clock=clock, lease_time=0.05)
    started = anyio.Event()
    cancelled = anyio.Event()

    async def long_step() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(long_step)

    async with engine:
        handle = await engine.start(wf)
        await started.wait()
        row = await engine.store.get_execution(handle.execution_id)
        assert row is not None
        # another worker takes the execution over (its lease bumps the epoch)
        clock.advance(1)
        await engine.store.claim(
            owner="someone-else", now=clock.now(), lease_expires=clock.now() + 60, limit=1
        )
        with anyio.fail_after(5):
            await cancelled.wait()  # the renewal noticed and stopped running the step


async def test_awaiting_results_leaves_no_waiters_behind() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def quick(ctx: DurableContext, n: int) -> int:
        return n

    @engine.workflow
    async def slow_one(ctx: DurableContext) -> None:
        await ctx.wait(3600)

    async with engine:
        for i in range(20):
            handle = await engine.start(quick, i)
            assert await handle.result() == i
            assert await handle.result() == i  # already finished: read, not awaited
        slow = await engine.start(slow_one)
        with pytest.raises(TimeoutError):
            await slow.result(timeout=0.01)  # the waiter gives up: it must not stay behind
        assert engine._finished == {}
        assert engine._waiting == {}


async def test_a_check_raising_cancelled_error_fails_the_poll_not_the_worker() -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    async def rude(state: int) -> int:
        raise asyncio.CancelledError("client gave up")

    @engine.workflow
    async def poll(ctx: DurableContext) -> str:
        try:
            await ctx.wait_for_condition(rude, initial_state=0, strategy=poll_until(bool))
        except Exception as exc:
            return type(exc).__name__ + ": " + getattr(exc, "error_type", "")
        return "no error"

    @engine.workflow
    async def fine(ctx: DurableContext) -> str:
        return "worker alive"

    async with engine:
        assert await engine.run(poll, timeout=10) == "WaitForConditionError: CancelledError"
        assert await engine.run(fine, timeout=10) == "worker alive"


async def test_steps_do_not_share_context_variables() -> None:
    import contextvars

    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="<unset>")
    engine = Engine(":memory:", clock=VirtualClock())

    async def set_tenant() -> None:
        tenant.set("acme")

    async def read_tenant() -> str:
        return tenant.get()

    @engine.workflow
    async def wf(ctx: DurableContext) -> str:
        await ctx.step(set_tenant)
        return await ctx.step(read_tenant)

    async with engine:
        assert await engine.run(wf) == "<unset>"  # as if each attempt ran in its own task


async def test_an_invocation_task_that_fails_is_logged_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(":memory:", clock=VirtualClock())

    @engine.workflow
    async def wf(ctx: DurableContext) -> int:
        return await ctx.step(lambda: 7, name="seven")

    real = Invocation.run
    calls: list[str] = []

    async def broken_once(self: Invocation) -> None:
        calls.append(self.execution_id)
        if len(calls) == 1:
            raise RuntimeError("an engine bug")
        await real(self)

    monkeypatch.setattr(Invocation, "run", broken_once)
    with structlog.testing.capture_logs() as logs:
        async with engine:
            first = await engine.start(wf, execution_id="first")
            await settle(engine)
            second = await engine.start(wf, execution_id="second")
            assert await second.result() == 7  # the worker still runs executions
            assert await first.result() == 7  # its lease was released: it ran again
    failed = [e for e in logs if e["event"] == "invocation task failed"]
    assert len(failed) == 1
    assert "an engine bug" in failed[0]["error"]
    assert calls.count("first") == 2


async def test_an_invocation_cut_short_by_the_store_stops_its_running_attempts() -> None:
    store = FlakyStore()
    engine = Engine(store=store, clock=VirtualClock(), poll_interval=0.01)
    stopped = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async def slow(ctx: DurableContext) -> None:
        await ctx.step(forever, name="forever")

    async def quick(ctx: DurableContext) -> int:
        return await ctx.step(lambda: 1, name="quick")

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.parallel([slow, quick])

    store.when = lambda cp: any(b"StepSucceeded" in event for event in cp.events)
    store.fail = 1  # quick's result cannot be written: the invocation ends there
    async with engine:
        await engine.start(wf)
        with anyio.fail_after(10):  # a guard against a hang, not a timer
            await stopped.wait()  # the attempt still running was cancelled, not awaited
