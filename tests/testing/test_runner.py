"""DurableTestRunner: running workflows, time skipping, advancing the clock."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from durable import (
    CallbackTimeoutError,
    DurableContext,
    Engine,
    ExecutionFailedError,
    ExecutionStatus,
    Jitter,
    RetryPolicy,
    VirtualClock,
    WorkflowNotFoundError,
)
from durable.testing import DurableTestRunner, TestHandle

DAY = 86_400.0
HOURLY = RetryPolicy(
    max_attempts=4,
    initial_delay=timedelta(hours=1),
    max_delay=timedelta(hours=8),
    jitter=Jitter.NONE,
)


def notify(callback_id: str) -> None:
    """A submitter that tells nobody: the test answers the callback."""


def build_headline(runner: DurableTestRunner, charges: list[int]) -> Any:
    def charge(amount: int) -> dict[str, Any]:
        charges.append(amount)
        if len(charges) < 3:
            raise TimeoutError("gateway timeout")
        return {"id": "pay-1", "amount": amount}

    @runner.workflow
    async def order(ctx: DurableContext, amount: int) -> dict[str, Any]:
        await ctx.wait(timedelta(days=7), name="cool-off")
        payment = await ctx.step(charge, amount, name="charge", retry=HOURLY)
        try:
            decision = await ctx.wait_for_callback(
                notify, name="approval", timeout=timedelta(days=3)
            )
        except CallbackTimeoutError as exc:
            decision = {"timed_out": exc.error_type}
        return {"payment": payment["id"], "decision": decision}

    return order


async def test_headline_a_week_of_waiting_retries_and_a_callback_take_milliseconds() -> None:
    charges: list[int] = []
    async with DurableTestRunner() as runner:
        order = build_headline(runner, charges)
        began = time.monotonic()
        handle = await runner.start(order, 90)
        callback_id = await runner.wait_for_callback(handle, "approval")
        await runner.send_callback_success(callback_id, {"approved": True})
        result = await runner.result(handle)
        elapsed = time.monotonic() - began

    assert elapsed < 5  # a sanity bound: it never sleeps (it takes milliseconds)
    assert result.status == ExecutionStatus.SUCCEEDED
    assert result.result == {"payment": "pay-1", "decision": {"approved": True}}
    charge = result.get_step("charge")
    assert charge.attempt_count == 3
    assert charge.retry_delays == [3600, 7200]
    assert [e.message for e in charge.errors] == ["gateway timeout", "gateway timeout"]
    virtual = result.history[-1].timestamp - result.history[0].timestamp
    assert virtual == timedelta(days=7, hours=3)
    assert result.get_callback("approval").result == {"approved": True}


async def test_headline_unanswered_callback_times_out_after_three_virtual_days() -> None:
    async with DurableTestRunner() as runner:
        order = build_headline(runner, [])
        began = time.monotonic()
        result = await runner.run(order, 90)
        elapsed = time.monotonic() - began

    assert elapsed < 5
    assert result.result == {"payment": "pay-1", "decision": {"timed_out": "Callback.Timeout"}}
    callback = result.get_callback("approval")
    assert callback.status == "TIMED_OUT"
    assert callback.ended_at is not None
    assert callback.ended_at - callback.started_at == timedelta(days=3)


async def test_time_does_not_pass_outside_the_runners_awaiting_calls() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def waiter(ctx: DurableContext) -> str:
            await ctx.wait(timedelta(hours=1), name="hour")
            return "done"

        before = runner.clock.now()
        handle = await runner.start(waiter)
        snapshot = await runner.inspect(handle)
        assert snapshot.status == ExecutionStatus.RUNNING
        assert not snapshot.get_wait("hour").done
        assert runner.clock.now() == before  # start and inspect never move the clock
        assert await handle.status() == ExecutionStatus.RUNNING
        assert await handle.result() == "done"
        assert runner.clock.now() == before + 3600


async def test_a_handle_result_raises_for_a_failed_workflow_and_run_does_not() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def broken(ctx: DurableContext) -> None:
            await ctx.wait(5)
            raise ValueError("bad input")

        handle = await runner.start(broken)
        assert isinstance(handle, TestHandle)
        with pytest.raises(ExecutionFailedError, match="bad input"):
            await handle.result()
        result = await runner.run(broken)
    assert result.status == ExecutionStatus.FAILED
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("ValueError", "bad input")
    assert result.result is None


async def test_advance_fires_timers_in_order_at_their_own_times() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def two_waits(ctx: DurableContext) -> str:
            await ctx.wait(timedelta(days=1), name="first")
            await ctx.wait(timedelta(days=3), name="second")
            return "done"

        handle = await runner.start(two_waits)
        await runner.advance(timedelta(hours=23))
        assert not (await runner.inspect(handle)).get_wait("first").done
        await runner.advance(timedelta(days=4, hours=1))
        result = await runner.inspect(handle)
    assert result.status == ExecutionStatus.SUCCEEDED
    first, second = result.get_wait("first"), result.get_wait("second")
    assert second.started_at - first.started_at == timedelta(days=1)  # not at +5 days
    assert second.ended_at is not None
    assert second.ended_at - first.started_at == timedelta(days=4)


async def test_advance_takes_seconds_or_a_timedelta_and_zero_just_settles() -> None:
    async with DurableTestRunner() as runner:
        start = runner.clock.now()
        await runner.advance(90)
        await runner.advance(timedelta(minutes=1, seconds=0.5))
        await runner.advance(0)
        assert runner.clock.now() == start + 150.5


@pytest.mark.parametrize("duration", [-1, -0.001, timedelta(seconds=-5)])
async def test_advancing_the_clock_backwards_is_refused(duration: Any) -> None:
    async with DurableTestRunner() as runner:
        start = runner.clock.now()
        with pytest.raises(ValueError, match="virtual time only moves forward"):
            await runner.advance(duration)
        assert runner.clock.now() == start


async def test_advance_refuses_what_is_not_a_duration() -> None:
    async with DurableTestRunner() as runner:
        with pytest.raises(TypeError, match="timedelta or seconds"):
            await runner.advance("1h")  # type: ignore[arg-type]


async def test_advance_to_next_timer_jumps_exactly_to_it() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def sleeper(ctx: DurableContext) -> str:
            await ctx.wait(timedelta(minutes=90), name="nap")
            await ctx.wait(timedelta(minutes=30), name="snooze")
            return "awake"

        assert await runner.advance_to_next_timer() is None  # nothing scheduled yet
        handle = await runner.start(sleeper)
        assert await runner.advance_to_next_timer() == timedelta(minutes=90)
        assert await runner.advance_to_next_timer() == timedelta(minutes=30)
        assert (await runner.inspect(handle)).result == "awake"
        assert await runner.advance_to_next_timer() is None


async def test_run_explains_a_workflow_that_waits_for_the_test() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def needs_answer(ctx: DurableContext) -> Any:
            return await ctx.wait_for_callback(notify, name="manager")

        with pytest.raises(RuntimeError, match="cannot end without the test") as caught:
            await runner.run(needs_answer, execution_id="e-1")
    assert "callback 'manager'" in str(caught.value)
    assert "runner.wait_for_callback" in str(caught.value)


async def test_a_workflow_that_polls_forever_gives_up_after_max_jumps() -> None:
    async with DurableTestRunner(max_jumps=20) as runner:

        @runner.workflow
        async def forever(ctx: DurableContext) -> None:
            while True:
                await ctx.wait(60)

        with pytest.raises(RuntimeError, match="still not done after 20 clock jumps"):
            await runner.run(forever)


def test_max_jumps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_jumps"):
        DurableTestRunner(max_jumps=0)


async def test_the_runner_must_be_entered() -> None:
    runner = DurableTestRunner()

    @runner.workflow
    async def wf(ctx: DurableContext) -> None: ...

    with pytest.raises(RuntimeError, match="async with DurableTestRunner"):
        await runner.run(wf)
    async with runner:
        with pytest.raises(RuntimeError, match="already running"):
            await runner.__aenter__()
    with pytest.raises(RuntimeError, match="async with DurableTestRunner"):
        await runner.advance(1)


async def test_a_given_clock_is_used() -> None:
    clock = VirtualClock(start=1_000_000.0)
    async with DurableTestRunner(clock=clock) as runner:

        @runner.workflow
        async def stamp(ctx: DurableContext) -> float:
            await ctx.wait(10)
            return ctx.now().timestamp()

        result = await runner.run(stamp)
    assert runner.clock is clock
    assert result.result == 1_000_010.0


async def test_app_engine_workflows_run_on_a_fresh_engine_and_the_app_is_untouched() -> None:
    app = Engine(":memory:")

    @app.workflow(name="greet", timeout=timedelta(days=30))
    async def greet(ctx: DurableContext, name: str) -> str:
        await ctx.wait(timedelta(days=2))
        return await ctx.step(str.upper, f"hello {name}", name="shout")

    before = app.workflows
    async with DurableTestRunner(app) as runner:
        assert runner.engine is not app
        assert runner.engine.workflows["greet"] is greet  # the same Workflow object

        @runner.workflow
        async def only_in_tests(ctx: DurableContext) -> None: ...

        by_object = await runner.run(greet, "ana")
        by_name = await runner.run("greet", "bo")
    assert app.workflows == before  # nothing registered on the app's engine
    assert "only_in_tests" not in app.workflows
    assert by_object.result == "HELLO ANA"
    assert by_name.result == "HELLO BO"
    assert by_name.workflow == "greet"


async def test_starting_an_unknown_workflow_is_a_clear_error() -> None:
    async with DurableTestRunner() as runner:
        with pytest.raises(WorkflowNotFoundError, match="no workflow named 'nope'"):
            await runner.run("nope")


async def test_a_result_can_be_fetched_for_an_execution_id() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def quick(ctx: DurableContext, x: int) -> int:
            return await ctx.step(abs, x)

        await runner.start(quick, -3, execution_id="q-1")
        result = await runner.result("q-1")
        again = await runner.run(quick, -3, execution_id="q-1")  # idempotent start
    assert result.execution_id == "q-1"
    assert result.result == 3
    assert again.history == result.history


async def test_advance_through_too_many_wake_ups_gives_up() -> None:
    async with DurableTestRunner(max_jumps=5) as runner:

        @runner.workflow
        async def ticker(ctx: DurableContext) -> None:
            while True:
                await ctx.wait(1)

        await runner.start(ticker)
        with pytest.raises(RuntimeError, match="met more than 5 wake-ups"):
            await runner.advance(100)
