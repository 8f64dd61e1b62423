"""Child contexts, parallel and map, end to end on every store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from durable import (
    BatchItemStatus,
    BatchResult,
    BatchStatus,
    Branch,
    ChildContextError,
    Completion,
    CompletionReason,
    DurableContext,
    Engine,
    ExecutionFailedError,
    RetryPolicy,
    VirtualClock,
)
from tests.helpers import drive, settle

EngineFactory = Callable[..., Engine]


@pytest.fixture(params=["memory", "sqlite"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> EngineFactory:
    def factory(clock: VirtualClock, **kwargs: Any) -> Engine:
        url = ":memory:" if request.param == "memory" else str(tmp_path / "batch.db")
        return Engine(url, clock=clock, poll_interval=0.05, **kwargs)

    return factory


def types_of(history: list[Any]) -> list[str]:
    return [event.event_type for event in history]


async def test_child_context_is_checkpointed_as_one_value(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    runs: list[str] = []

    async def pack(ctx: DurableContext) -> dict[str, int]:
        a = await ctx.step(lambda: runs.append("a") or 1, name="a")
        b = await ctx.step(lambda: runs.append("b") or 2, name="b")
        return {"sum": a + b}

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        packed = await ctx.run_in_child_context(pack, name="packing")
        await ctx.wait(60)
        return packed

    async with engine:
        handle = await engine.start(wf)
        await drive(engine, clock, handle)
        assert await handle.result() == {"sum": 3}
        history = await engine.history(handle.execution_id)
    assert runs == ["a", "b"]
    context = [e for e in history if e.sub_type == "RunInChildContext"]
    assert [e.event_type for e in context] == ["ContextStarted", "ContextSucceeded"]
    assert context[0].name == "packing"
    inner = [e for e in history if e.parent_id == context[0].id]
    assert [e.name for e in inner] == ["a", "a", "b", "b"]
    assert context[1].to_json()["ContextSucceededDetails"]["Result"]["Payload"] == '{"sum": 3}'


async def test_child_context_errors_keep_their_words(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    async def broken(ctx: DurableContext) -> None:
        raise LookupError("no such sku")

    @engine.workflow
    async def wf(ctx: DurableContext) -> list[str]:
        try:
            await ctx.run_in_child_context(broken)
        except ChildContextError as exc:
            return [exc.error_type, exc.message]
        return []

    async with engine:
        handle = await engine.start(wf)
        assert await handle.result() == ["LookupError", "no such sku"]
        history = await engine.history(handle.execution_id)
    failed = next(e for e in history if e.event_type == "ContextFailed").to_json()
    assert failed["ContextFailedDetails"]["Error"]["Payload"]["ErrorMessage"] == "no such sku"


async def test_parallel_runs_branches_concurrently_in_order(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    running = 0
    peak = 0
    finished: list[int] = []
    release = {i: anyio.Event() for i in range(3)}

    def branch(i: int) -> Any:
        async def work() -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 3:  # everyone is in: let them finish in reverse order
                release[2].set()
            await release[i].wait()
            running -= 1
            finished.append(i)
            if i > 0:
                release[i - 1].set()
            return i * 10

        async def run(ctx: DurableContext) -> int:
            return await ctx.step(work, name=f"work-{i}")

        return run

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        result = await ctx.parallel(
            [Branch(branch(0), name="zero"), branch(1), Branch(branch(2), name="two")],
            name="fan-out",
        )
        return [result.get_results(), result.completion_reason, result.status]

    async with engine:
        handle = await engine.start(wf)
        assert await handle.result() == [[0, 10, 20], "ALL_COMPLETED", "SUCCEEDED"]
        history = await engine.history(handle.execution_id)
    assert peak == 3  # the steps overlapped in time
    assert finished == [2, 1, 0]  # completion order differs from index order
    batch = [e for e in history if e.sub_type == "Parallel"]
    assert [e.event_type for e in batch] == ["ContextStarted", "ContextSucceeded"]
    assert batch[0].name == "fan-out"
    branches = [e for e in history if e.sub_type == "ParallelBranch"]
    assert {e.parent_id for e in branches} == {batch[0].id}
    started = [e for e in branches if e.event_type == "ContextStarted"]
    assert [e.name for e in started] == ["zero", None, "two"]


async def test_map_admits_by_index_up_to_max_concurrency(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    running = 0
    peak = 0
    started: list[int] = []

    async def work(item: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        running -= 1
        return item.upper()

    async def per_item(ctx: DurableContext, item: str, index: int) -> str:
        started.append(index)
        return await ctx.step(work, item)

    @engine.workflow
    async def wf(ctx: DurableContext, items: list[str]) -> Any:
        result = await ctx.map(
            items, per_item, max_concurrency=2, item_name=lambda item, i: f"item-{i}-{item}"
        )
        return result.get_results()

    async with engine:
        handle = await engine.start(wf, ["a", "b", "c", "d", "e"])
        assert await handle.result() == ["A", "B", "C", "D", "E"]
        history = await engine.history(handle.execution_id)
    assert peak <= 2
    assert sorted(started) == [0, 1, 2, 3, 4]
    assert started[:2] == [0, 1]
    iterations = [
        e for e in history if e.sub_type == "MapIteration" and e.event_type == "ContextStarted"
    ]
    assert [e.name for e in iterations] == [f"item-{i}-{x}" for i, x in enumerate("abcde")]


async def test_map_is_fail_fast_by_default(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    ran: list[int] = []

    def process(index: int) -> int:
        ran.append(index)
        if index == 1:
            raise ValueError(f"item {index} is bad")
        return index

    async def per_item(ctx: DurableContext, item: int, index: int) -> int:
        return await ctx.step(process, index, retry=RetryPolicy.none())

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        result: BatchResult[int] = await ctx.map(range(5), per_item, max_concurrency=1)
        return {
            "reason": result.completion_reason,
            "status": result.status,
            "counts": [result.success_count, result.failure_count, result.total_count],
            "errors": [(e.type, e.message) for e in result.get_errors()],
        }

    async with engine:
        result = await engine.run(wf)
    assert ran == [0, 1]  # items never started are never run
    assert result == {
        "reason": "FAILURE_TOLERANCE_EXCEEDED",
        "status": "FAILED",
        "counts": [1, 1, 2],
        "errors": [["ValueError", "item 1 is bad"]],
    }


async def test_early_completion_cancels_running_items(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    cancelled: list[int] = []
    ran: list[int] = []

    async def slow(index: int) -> int:
        ran.append(index)
        if index == 0:
            return index
        try:
            await anyio.Event().wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(index)
            raise
        return index

    async def per_item(ctx: DurableContext, item: int, index: int) -> int:
        return await ctx.step(slow, index, name=f"slow-{index}")

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        result = await ctx.map(
            range(5), per_item, max_concurrency=3, completion=Completion.first_successful()
        )
        return [result.completion_reason, [(i.index, i.status) for i in result.all]]

    async with engine:
        handle = await engine.start(wf)
        reason, items = await handle.result()
        history = await engine.history(handle.execution_id)
    assert reason == CompletionReason.MIN_SUCCESSFUL_REACHED
    assert items == [[0, "SUCCEEDED"], [1, "STARTED"], [2, "STARTED"]]
    assert sorted(cancelled) == [1, 2]
    assert sorted(ran) == [0, 1, 2]  # 3 and 4 never started
    ended = [e.name for e in history if e.event_type in ("StepSucceeded", "StepFailed")]
    assert ended == ["slow-0"]  # nothing further recorded for the cancelled items
    iteration_ends = [
        e for e in history if e.sub_type == "MapIteration" and e.event_type != "ContextStarted"
    ]
    assert len(iteration_ends) == 1


async def test_a_waiting_branch_does_not_block_its_siblings(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    steps: list[str] = []

    async def sleeper(ctx: DurableContext) -> str:
        await ctx.step(lambda: steps.append("before sleep"), name="before")
        await ctx.wait(3600)
        await ctx.step(lambda: steps.append("after sleep"), name="after")
        return "slept"

    async def worker(ctx: DurableContext) -> str:
        for i in range(3):
            await ctx.step(lambda i=i: steps.append(f"work {i}"), name=f"work-{i}")
        return "worked"

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        result = await ctx.parallel([sleeper, worker])
        return result.get_results()

    async with engine:
        handle = await engine.start(wf)
        await settle(engine)
        # the branches run concurrently: only each branch's own order is fixed
        assert sorted(steps) == ["before sleep", "work 0", "work 1", "work 2"]
        assert [s for s in steps if s.startswith("work")] == ["work 0", "work 1", "work 2"]
        assert engine.worker.active == {}  # suspended: every running branch waits
        jumps = await drive(engine, clock, handle)
        assert await handle.result() == ["slept", "worked"]
    assert jumps == [3600]
    assert sorted(steps) == ["after sleep", "before sleep", "work 0", "work 1", "work 2"]
    assert steps[-1] == "after sleep"  # the only step after the hour-long wait


async def test_nested_parallel_inside_a_map_iteration(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    async def per_item(ctx: DurableContext, item: int, index: int) -> list[int]:
        async def double(c: DurableContext) -> int:
            return await c.step(lambda: item * 2, name="double")

        async def square(c: DurableContext) -> int:
            await c.wait(10)
            return await c.step(lambda: item * item, name="square")

        inner = await ctx.parallel([double, square], name=f"inner-{index}")
        return inner.get_results()

    @engine.workflow
    async def wf(ctx: DurableContext) -> Any:
        return (await ctx.map([2, 3], per_item)).get_results()

    async with engine:
        handle = await engine.start(wf)
        await drive(engine, clock, handle)
        assert await handle.result() == [[4, 4], [6, 9]]
        history = await engine.history(handle.execution_id)
    parallels = [
        e for e in history if e.sub_type == "Parallel" and e.event_type == "ContextStarted"
    ]
    iterations = {e.id for e in history if e.sub_type == "MapIteration"}
    assert {e.parent_id for e in parallels} == iterations


async def test_completed_items_are_not_rerun_after_a_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "restart.db")
    ran: list[int] = []

    def app() -> Engine:
        engine = Engine(url, clock=clock)

        async def per_item(ctx: DurableContext, item: int, index: int) -> int:
            value = await ctx.step(lambda: ran.append(item) or item, name="run")
            if item == 2:
                await ctx.wait(60)
            return value

        @engine.workflow
        async def wf(ctx: DurableContext) -> Any:
            return (await ctx.map([1, 2, 3], per_item)).get_results()

        return engine

    async with app() as engine:
        await engine.start("wf", execution_id="m")
        await settle(engine)
    clock.advance(60)
    async with app() as engine:
        assert await engine.handle("m").result() == [1, 2, 3]
    assert sorted(ran) == [1, 2, 3]


async def test_oversized_child_results_are_recomputed_from_checkpoints(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock, max_payload=2048)
    runs: list[int] = []

    async def big(ctx: DurableContext) -> list[str]:
        chunks = []
        for i in range(4):
            chunks.append(await ctx.step(lambda i=i: runs.append(i) or str(i) * 1000, name="c"))
        return chunks

    @engine.workflow
    async def wf(ctx: DurableContext) -> int:
        chunks = await ctx.run_in_child_context(big)
        await ctx.wait(5)
        return sum(len(c) for c in chunks)

    async with engine:
        handle = await engine.start(wf)
        await drive(engine, clock, handle)
        assert await handle.result() == 4000
        history = await engine.history(handle.execution_id)
    assert runs == [0, 1, 2, 3]  # the replay re-ran the child from its checkpoints only
    succeeded = next(e for e in history if e.event_type == "ContextSucceeded")
    assert "result" not in succeeded.details


async def test_bad_batch_configuration_fails_before_anything_is_recorded(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    async def noop(ctx: DurableContext, item: int, index: int) -> int:
        return item

    def sync_branch(ctx: DurableContext) -> None: ...

    cases: dict[str, Callable[[DurableContext], Any]] = {
        "zero": lambda ctx: ctx.map([1], noop, max_concurrency=0),
        "min": lambda ctx: ctx.map([1, 2], noop, completion=Completion(min_successful=3)),
        "sync": lambda ctx: ctx.parallel([sync_branch]),
        "mapfn": lambda ctx: ctx.map([1], lambda c, i, n: None),
    }

    @engine.workflow
    async def wf(ctx: DurableContext, case: str) -> None:
        await cases[case](ctx)

    async with engine:
        for case, message in [
            ("zero", "max_concurrency must be at least 1"),
            ("min", "min_successful=3 is more than the 2 items"),
            ("sync", "async def"),
            ("mapfn", "async def"),
        ]:
            handle = await engine.start(wf, case)
            with pytest.raises(ExecutionFailedError, match=message):
                await handle.result()
            history = await engine.history(handle.execution_id)
            assert "ContextStarted" not in types_of(history)


async def test_throw_if_error_and_failed_status(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    async def ok(ctx: DurableContext) -> int:
        return 1

    async def bad(ctx: DurableContext) -> int:
        raise PermissionError("denied")

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        result = await ctx.parallel([ok, bad], completion=Completion.all_completed())
        assert result.status is BatchStatus.FAILED
        assert [i.status for i in result.all] == [BatchItemStatus.SUCCEEDED, BatchItemStatus.FAILED]
        result.throw_if_error()

    async with engine:
        with pytest.raises(ExecutionFailedError) as info:
            await engine.run(wf)
    assert (info.value.error.type, info.value.error.message) == ("PermissionError", "denied")
