"""Crash injection: the worker dies at a named operation and the engine takes over."""

from __future__ import annotations

from typing import Any

import pytest

from durable import DurableContext, Jitter, RetryPolicy, StepError, StepSemantics
from durable.testing import CrashPoint, DurableTestRunner

AT_MOST_ONCE = StepSemantics.AT_MOST_ONCE_PER_RETRY
RETRY = RetryPolicy(max_attempts=3, initial_delay=1, jitter=Jitter.NONE)


def charging(calls: list[int]) -> Any:
    def charge(amount: int) -> dict[str, int]:
        calls.append(amount)
        return {"charged": amount}

    return charge


def types_and_errors(history: list[Any]) -> list[str]:
    out = []
    for event in history:
        error = event.details.get("error")
        out.append(f"{event.event_type}:{error.type}" if error else event.event_type)
    return out


async def test_at_most_once_start_is_durable_then_the_worker_dies() -> None:
    calls: list[int] = []
    async with DurableTestRunner() as runner:
        charge = charging(calls)

        @runner.workflow
        async def pay(ctx: DurableContext, amount: int) -> Any:
            return await ctx.step(
                charge, amount, name="charge", semantics=AT_MOST_ONCE, retry=RETRY
            )

        crash = runner.crash_at("charge", point=CrashPoint.AFTER_START)
        result = await runner.run(pay, 10, execution_id="p-1")
    assert crash.fired
    assert crash.fired_in == "p-1"
    assert calls == [10]  # the interrupted attempt never ran its body; attempt 2 did
    assert result.result == {"charged": 10}
    assert types_and_errors(result.history) == [
        "ExecutionStarted",
        "StepStarted",
        "InvocationCompleted:Runtime.ExitError",  # the takeover, recorded first
        "StepFailed:StepInterruptedError",
        "InvocationCompleted",
        "StepStarted",
        "StepSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    step = result.get_step("charge")
    assert step.attempts[0].error is not None
    assert step.attempts[0].error.type == "StepInterruptedError"
    assert step.retry_delays == [1]


async def test_at_most_once_without_retries_fails_with_step_interrupted() -> None:
    async with DurableTestRunner() as runner:
        charge = charging([])

        @runner.workflow
        async def pay(ctx: DurableContext) -> str:
            try:
                await ctx.step(
                    charge, 1, name="charge", semantics=AT_MOST_ONCE, retry=RetryPolicy.none()
                )
            except StepError as exc:
                return exc.error_type
            return "charged"

        runner.crash_at("charge")
        result = await runner.run(pay)
    assert result.result == "StepInterruptedError"


async def test_at_least_once_attempt_cut_short_runs_again_as_the_same_attempt() -> None:
    calls: list[int] = []
    async with DurableTestRunner() as runner:
        charge = charging(calls)

        @runner.workflow
        async def pay(ctx: DurableContext, amount: int) -> Any:
            return await ctx.step(charge, amount, name="charge")

        crash = runner.crash_at("charge", point="before_result")
        result = await runner.run(pay, 5)
    assert crash.fired
    assert calls == [5, 5]  # its result was lost with the worker: at least once
    step = result.get_step("charge")
    assert step.attempt_count == 1
    assert step.result == {"charged": 5}
    assert types_and_errors(result.history)[1:4] == [
        "InvocationCompleted:Runtime.ExitError",
        "StepStarted",
        "StepSucceeded",
    ]


async def test_a_crash_after_the_result_is_durable_replays_it_without_running_it() -> None:
    calls: list[int] = []
    async with DurableTestRunner() as runner:
        charge = charging(calls)

        @runner.workflow
        async def pay(ctx: DurableContext) -> Any:
            first = await ctx.step(charge, 1, name="charge")
            await ctx.wait(60, name="pause")
            return first

        crash = runner.crash_at("charge", point=CrashPoint.AFTER_RESULT)
        result = await runner.run(pay)
    assert crash.fired
    assert calls == [1]
    assert types_and_errors(result.history)[:5] == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "InvocationCompleted:Runtime.ExitError",
        "WaitStarted",
    ]


async def test_a_crash_before_a_timer_fires_resumes_it_once() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def sleepy(ctx: DurableContext) -> str:
            await ctx.wait(3600, name="nap")
            return "awake"

        crash = runner.crash_at("nap", point=CrashPoint.BEFORE_RESULT)
        result = await runner.run(sleepy)
    assert crash.fired
    assert result.result == "awake"
    nap = result.get_wait("nap")
    assert [e.event_type for e in nap.events] == ["WaitStarted", "WaitSucceeded"]
    assert types_and_errors(result.history)[3] == "InvocationCompleted:Runtime.ExitError"
    assert nap.ended_at is not None
    assert nap.scheduled_end is not None
    assert (nap.ended_at - nap.scheduled_end).total_seconds() == 5  # the lease time


async def test_a_crash_after_the_worker_let_go_changes_nothing() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def sleepy(ctx: DurableContext) -> str:
            await ctx.wait(3600, name="nap")
            return "awake"

        # WaitStarted is written with the release of the suspended invocation
        crash = runner.crash_at("nap", point=CrashPoint.AFTER_START)
        result = await runner.run(sleepy)
    assert crash.fired
    assert result.result == "awake"
    assert "InvocationCompleted:Runtime.ExitError" not in types_and_errors(result.history)


async def test_a_crash_only_at_the_chosen_attempt_and_execution() -> None:
    calls: list[int] = []
    async with DurableTestRunner() as runner:

        def flaky(x: int) -> int:
            calls.append(x)
            if calls.count(x) == 1:
                raise TimeoutError("first try fails")
            return x

        @runner.workflow
        async def wf(ctx: DurableContext, x: int) -> int:
            return await ctx.step(flaky, x, name="flaky", semantics=AT_MOST_ONCE, retry=RETRY)

        crash = runner.crash_at("flaky", attempt=2, execution_id="b")
        a = await runner.run(wf, 1, execution_id="a")
        assert not crash.fired
        b = await runner.run(wf, 2, execution_id="b")
    assert crash.fired_in == "b"
    assert [e.type for e in a.get_step("flaky").errors] == ["TimeoutError"]
    assert [e.type for e in b.get_step("flaky").errors] == ["TimeoutError", "StepInterruptedError"]
    assert b.get_step("flaky").attempt_count == 3


async def test_a_crash_rule_fires_once_and_can_be_disarmed() -> None:
    calls: list[int] = []
    async with DurableTestRunner() as runner:
        charge = charging(calls)

        @runner.workflow
        async def pay(ctx: DurableContext) -> Any:
            return await ctx.step(charge, 1, name="charge")

        with runner.crash_at("charge") as disarmed:
            pass
        await runner.run(pay)
        assert not disarmed.fired
        assert calls == [1]
        once = runner.crash_at("charge")
        await runner.run(pay)
        await runner.run(pay)
    assert once.fired
    assert calls == [1, 1, 1, 1]


def test_an_unknown_crash_point_is_refused() -> None:
    with pytest.raises(ValueError, match="'sometime'"):
        DurableTestRunner().crash_at("charge", point="sometime")
