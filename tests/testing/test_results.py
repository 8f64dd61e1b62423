"""TestResult: operations by name, with what a test asserts on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from durable import Branch, DurableContext, ExecutionStatus, Jitter, RetryPolicy, poll_until
from durable.testing import (
    CallbackInfo,
    ContextInfo,
    DurableTestRunner,
    InvokeInfo,
    OperationStatus,
    StepInfo,
    TestResult,
    WaitInfo,
)


def notify(callback_id: str) -> None:
    """Tells nobody."""


def poll_job(state: dict[str, Any]) -> dict[str, Any]:
    polls = state["polls"] + 1
    return {"polls": polls, "status": "done" if polls >= 3 else "running"}


async def label(ctx: DurableContext, item: str, index: int) -> str:
    return await ctx.step(str.upper, item, name="print")


async def everything(runner: DurableTestRunner) -> TestResult[Any]:
    """One execution with one of each kind of operation."""
    failures: list[int] = []

    def flaky() -> str:
        failures.append(1)
        if len(failures) == 1:
            raise ConnectionError("reset")
        return "ok"

    async def inner(ctx: DurableContext) -> int:
        return await ctx.step(len, "abc", name="count")

    async def broken(ctx: DurableContext) -> None:
        raise KeyError("missing")

    runner.register_fake("ship", {"tracking": "1Z"})

    @runner.workflow
    async def all_kinds(ctx: DurableContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["flaky"] = await ctx.step(
            flaky, name="flaky", retry=RetryPolicy(initial_delay=2, jitter=Jitter.NONE)
        )
        await ctx.wait(timedelta(hours=2), name="pause")
        cb = await ctx.create_callback(name="answer", timeout=60, heartbeat_timeout=30)
        out["callback"] = cb.id
        out["inner"] = await ctx.run_in_child_context(inner, name="inner")
        try:
            await ctx.run_in_child_context(broken, name="broken")
        except Exception as exc:
            out["broken"] = type(exc).__name__
        labels = await ctx.map(["a", "b"], label, name="labels", item_name=lambda x, i: f"l-{x}")
        out["labels"] = labels.get_results()
        both = await ctx.parallel([Branch(inner, name="left"), inner], name="both")
        out["both"] = both.get_results()
        out["job"] = await ctx.wait_for_condition(
            poll_job,
            initial_state={"polls": 0, "status": "queued"},
            strategy=poll_until(lambda s: s["status"] == "done", delay=600),
            name="job",
        )
        out["ship"] = await ctx.invoke("ship", {"order": 1}, name="ship-it")
        return out

    handle = await runner.start(all_kinds, execution_id="all")
    callback_id = await runner.wait_for_callback(handle, "answer")
    await runner.send_callback_success(callback_id, {"yes": 1})
    return await runner.result(handle)


async def test_every_kind_of_operation_is_found_by_name() -> None:
    async with DurableTestRunner() as runner:
        result = await everything(runner)
    assert result.status == ExecutionStatus.SUCCEEDED

    flaky = result.get_step("flaky")
    assert isinstance(flaky, StepInfo)
    assert flaky.status == OperationStatus.SUCCEEDED
    assert flaky.done
    assert flaky.result == "ok"
    assert flaky.error is None
    assert [a.succeeded for a in flaky.attempts] == [False, True]
    assert flaky.attempts[0].error is not None
    assert flaky.attempts[0].error.type == "ConnectionError"
    assert flaky.retry_delays == [2]

    pause = result.get_wait("pause")
    assert isinstance(pause, WaitInfo)
    assert pause.duration == 7200
    assert pause.done
    assert pause.scheduled_end == pause.started_at + timedelta(hours=2)

    answer = result.get_callback("answer")
    assert isinstance(answer, CallbackInfo)
    assert answer.callback_id == result.result["callback"]
    assert (answer.timeout, answer.heartbeat_timeout) == (60, 30)
    assert answer.result == {"yes": 1}
    assert answer.status == "SUCCEEDED"

    inner = result.get_context("inner")
    assert isinstance(inner, ContextInfo)
    assert (inner.sub_type, inner.result) == ("RunInChildContext", 3)
    broken = result.get_context("broken")
    assert broken.status == OperationStatus.FAILED
    assert broken.error is not None
    assert broken.error.type == "KeyError"

    labels = result.get_context("labels")
    assert labels.sub_type == "Map"
    assert labels.result is not None
    assert result.get_context("l-b").sub_type == "MapIteration"
    assert result.get_step("print", index=1).result == "B"
    assert result.get_context("both").sub_type == "Parallel"
    assert result.get_context("left").sub_type == "ParallelBranch"

    job = result.get_step("job")
    assert job.sub_type == "WaitForCondition"
    assert job.attempt_count == 3
    assert job.retry_delays == [600, 600]
    assert job.result == {"polls": 3, "status": "done"}

    ship = result.get_invoke("ship-it")
    assert isinstance(ship, InvokeInfo)
    assert ship.function_name == "ship"
    assert ship.input == {"order": 1}
    assert ship.child_execution_id == f"all:{ship.id}"
    assert ship.result == {"tracking": "1Z"}
    assert [o.name for o in result.operations][:3] == ["flaky", "pause", "answer"]


async def test_an_unknown_name_lists_the_names_that_exist() -> None:
    async with DurableTestRunner() as runner:
        result = await everything(runner)
    with pytest.raises(LookupError, match="has no step named 'flakey'; its steps: 'flaky'"):
        result.get_step("flakey")
    with pytest.raises(LookupError, match=r"there is a callback named 'answer'"):
        result.get_wait("answer")
    with pytest.raises(LookupError, match="its invokes: 'ship-it'"):
        result.get_invoke("ship")
    with pytest.raises(
        LookupError, match="has 2 step\\(s\\) named 'print', so there is no index 2"
    ):
        result.get_step("print", index=2)
    with pytest.raises(LookupError, match="its waits: none"):
        TestResult.build(
            execution_id="x",
            workflow="w",
            status=ExecutionStatus.RUNNING,
            result=None,
            error=None,
            history=[],
        ).get_wait("pause")


async def test_unnamed_operations_are_counted_in_the_listing() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def anonymous(ctx: DurableContext) -> None:
            await ctx.step(lambda: 1)
            await ctx.wait(1)

        result = await runner.run(anonymous)
    with pytest.raises(LookupError, match="its waits: 1 without a name"):
        result.get_wait("x")


async def test_a_step_that_fails_for_good_has_its_final_error() -> None:
    async with DurableTestRunner() as runner:

        def always() -> None:
            raise RuntimeError("down")

        @runner.workflow
        async def failing(ctx: DurableContext) -> None:
            await ctx.step(always, retry=RetryPolicy(max_attempts=3, initial_delay=1))

        result = await runner.run(failing)
    step = result.get_step("always")
    assert step.status == OperationStatus.FAILED
    assert step.error is not None
    assert step.error.message == "down"
    assert step.attempt_count == 3
    assert len(step.retry_delays) == 2
    assert all(1 <= d <= 2 for d in step.retry_delays)  # full jitter, whole seconds
    assert result.error is not None
    assert result.error.type == "RuntimeError"


async def test_a_running_execution_shows_pending_operations() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def waiting(ctx: DurableContext) -> None:
            await ctx.wait(timedelta(days=1), name="day")

        handle = await runner.start(waiting)
        result = await runner.inspect(handle)
    day = result.get_wait("day")
    assert day.status == OperationStatus.STARTED
    assert not day.done
    assert day.ended_at is None
    assert result.history_json()["Events"][0]["EventType"] == "ExecutionStarted"


def test_the_result_class_is_not_collected_as_a_test() -> None:
    assert TestResult.__test__ is False
