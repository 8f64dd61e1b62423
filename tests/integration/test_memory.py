"""What an execution leaves in memory: nothing once it has ended or suspended.

The checks run with the garbage collector switched off, so an object that is only freed by
the collector (one caught in a reference cycle) counts as left behind: with hundreds of
executions ending per second, the collector's full passes over such leftovers cost more
than the executions themselves.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from durable import (
    Completion,
    DurableContext,
    Engine,
    ExecutionFailedError,
    RetryPolicy,
    VirtualClock,
)
from durable.stores import MemoryStore
from durable.stores.base import Checkpoint
from tests.helpers import settle


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def double(n: int) -> int:
    return 2 * n


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.usefixtures("no_collector")
async def test_an_ended_execution_is_freed_without_the_garbage_collector(
    store: str, tmp_path: Path
) -> None:
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(":memory:" if store == "memory" else str(tmp_path / "m.db"))

    async def branch(ctx: DurableContext, n: int, index: int) -> int:
        contexts.append(weakref.ref(ctx))
        return await ctx.step(double, n)

    async def nested(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        return await ctx.step(double, 5)

    @engine.workflow
    async def fan_out(ctx: DurableContext, n: int) -> int:
        contexts.append(weakref.ref(ctx))

        async def add_one(x: int) -> int:  # a closure over the context, like a lambda
            return x + (1 if ctx else 0)

        first = await ctx.step(double, n)
        first = await ctx.step(add_one, first) - 1
        first = await ctx.step(lambda: first + (1 if ctx else 0)) - 1
        doubled = await ctx.map([1, 2, 3], branch)
        both = await ctx.parallel([nested, nested])
        alone = await ctx.run_in_child_context(nested)
        return first + sum(doubled.get_results()) + sum(both.get_results()) + alone

    async with engine:
        for i in range(3):
            assert await engine.run(fan_out, i) == 2 * i + 42
        await settle(engine)  # the result is announced before the invocation's task ends
        assert len(contexts) == 3 * 7  # the workflow's own and six child contexts each
        assert [ref for ref in contexts if ref() is not None] == []


@pytest.mark.usefixtures("no_collector")
async def test_a_suspended_execution_holds_no_context_or_coroutine(tmp_path: Path) -> None:
    clock = VirtualClock()
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"), clock=clock)

    @engine.workflow
    async def sleeper(ctx: DurableContext) -> str:
        contexts.append(weakref.ref(ctx))
        await ctx.step(double, 1)
        await ctx.wait(3600)
        return "woke"

    async with engine:
        handle = await engine.start(sleeper)
        await settle(engine)  # suspended on the timer, its invocation over
        assert len(contexts) == 1
        assert contexts[0]() is None
        clock.advance(3600)
        assert await handle.result() == "woke"
        await settle(engine)
        assert len(contexts) == 2  # the replay after the timer made a new one
        assert [ref for ref in contexts if ref() is not None] == []


@pytest.mark.usefixtures("no_collector")
async def test_cancelled_branches_leave_nothing_behind(tmp_path: Path) -> None:
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"), clock=VirtualClock())

    async def quick_or_slow(ctx: DurableContext, seconds: int, index: int) -> int:
        contexts.append(weakref.ref(ctx))
        if seconds:
            await ctx.wait(seconds)  # still waiting when the batch completes
        return await ctx.step(double, index)

    @engine.workflow
    async def first_wins(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        batch = await ctx.map([0, 60, 60], quick_or_slow, completion=Completion(min_successful=1))
        return len(batch.get_results())

    async with engine:
        assert await engine.run(first_wins) == 1
        await settle(engine)
        assert len(contexts) == 1 + 3
        assert [ref for ref in contexts if ref() is not None] == []


async def refuses(n: int) -> int:
    raise ValueError(f"refused {n}")


@pytest.mark.usefixtures("no_collector")
async def test_a_failed_execution_is_freed_without_the_garbage_collector(tmp_path: Path) -> None:
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"))

    @engine.workflow
    async def raises(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        raise RuntimeError("the workflow gave up")

    @engine.workflow
    async def step_fails(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        return await ctx.step(refuses, 1, retry=RetryPolicy.none())

    async def item(ctx: DurableContext, n: int, index: int) -> int:
        contexts.append(weakref.ref(ctx))
        return await ctx.step(refuses, n, retry=RetryPolicy.none())

    @engine.workflow
    async def children_fail(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        batch = await ctx.map([1, 2], item)
        batch.throw_if_error()
        return await ctx.run_in_child_context(lambda child: item(child, 3, 0))

    async with engine:
        for workflow in (raises, step_fails, children_fail):
            with pytest.raises(ExecutionFailedError):
                await engine.run(workflow)
        await settle(engine)
        assert len(contexts) == 2 + 3  # the last: its own and two items (the batch ends it)
        assert [ref for ref in contexts if ref() is not None] == []


def refuses_in_a_thread(n: int) -> int:
    raise ValueError(f"refused {n} in a thread")


def cancels_itself_in_a_thread(n: int) -> int:
    raise asyncio.CancelledError(f"gave up on {n}")  # a plain failure of the step


@pytest.mark.usefixtures("no_collector")
async def test_a_failed_sync_or_timed_step_is_freed_without_the_garbage_collector(
    tmp_path: Path,
) -> None:
    # A sync body runs in a worker thread: its error comes back through a future that
    # frames on its way hold (anyio's, and the driver's that awaited it), while the error's
    # traceback holds those frames. A step with a timeout re-raises its body's error.
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"))

    @engine.workflow
    async def fails(ctx: DurableContext, how: tuple[bool, float | None]) -> int:
        contexts.append(weakref.ref(ctx))
        sync, timeout = how
        body = refuses_in_a_thread if sync else refuses
        return await ctx.step(body, 1, retry=RetryPolicy.none(), timeout=timeout)

    async with engine:
        handle = await engine.start(fails, [True, None])
        with pytest.raises(ExecutionFailedError):
            await handle.result()
        for sync in (True, False):
            with pytest.raises(ExecutionFailedError):
                await engine.run(fails, [sync, 60.0])

        @engine.workflow
        async def cancels_itself(ctx: DurableContext) -> int:
            contexts.append(weakref.ref(ctx))
            return await ctx.step(cancels_itself_in_a_thread, 1, retry=RetryPolicy.none())

        with pytest.raises(ExecutionFailedError, match="gave up"):
            await engine.run(cancels_itself)
        await settle(engine)
        history = await engine.history(handle.execution_id)
        assert len(contexts) == 4
        assert [ref for ref in contexts if ref() is not None] == []
    # the recorded stack still names the step's own code
    failed = next(e for e in history if e.event_type == "StepFailed")
    stack = "\n".join(failed.details["error"].stack)
    assert "refuses_in_a_thread" in stack


def no_code(n: int) -> int:
    raise ValueError(f"no code for {n}")


async def no_code_async(n: int) -> int:
    raise ValueError(f"no code for {n}")


@pytest.mark.parametrize("body", [no_code, no_code_async], ids=["sync", "async"])
@pytest.mark.usefixtures("no_collector")
async def test_an_execution_failed_by_a_raising_retry_predicate_is_freed(
    body: Any, tmp_path: Path
) -> None:
    # The predicate's AttributeError fails the execution from inside the driver (its frames
    # hold the invocation), and it holds the step's error (its ``obj``), whose traceback
    # holds the step.
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"))

    @engine.workflow
    async def wf(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        retry = RetryPolicy(retry_on=lambda exc: exc.code == 503)  # type: ignore[attr-defined]
        return await ctx.step(body, 1, retry=retry)

    async with engine:
        with pytest.raises(ExecutionFailedError, match="code"):
            await engine.run(wf)
        await settle(engine)
        assert len(contexts) == 1
        assert [ref for ref in contexts if ref() is not None] == []


class HoldsAStepFailure(MemoryStore):
    """Sets ``failing`` when a checkpoint records a failed step, then waits for ``go_on``
    before writing it."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = threading.Event()
        self.go_on = anyio.Event()

    async def commit(self, checkpoint: Checkpoint) -> None:
        if any(b"StepFailed" in event for event in checkpoint.events):
            self.failing.set()
            with anyio.fail_after(10):
                await self.go_on.wait()
        await super().commit(checkpoint)


@pytest.mark.usefixtures("no_collector")
async def test_an_outcome_that_arrives_too_late_to_be_read_leaves_nothing_behind() -> None:
    # One item of a map fails; while that failure is being checkpointed, the other item's
    # attempt ends. The failure then fails the execution, and the other outcome, which
    # arrived meanwhile, is never read.
    store = HoldsAStepFailure()
    engine = Engine(store=store)
    contexts: list[weakref.ref[DurableContext]] = []

    def late(n: int) -> int:
        store.failing.wait(10)
        return n

    async def item(ctx: DurableContext, n: int, index: int) -> int:
        contexts.append(weakref.ref(ctx))
        body = late if n == 2 else refuses_in_a_thread
        return await ctx.step(body, n, retry=RetryPolicy.none())

    @engine.workflow
    async def side_by_side(ctx: DurableContext) -> int:
        contexts.append(weakref.ref(ctx))
        (await ctx.map([1, 2], item)).throw_if_error()
        return 0

    async with engine:
        handle = await engine.start(side_by_side)
        with anyio.fail_after(10):
            while not store.failing.is_set():
                await anyio.lowlevel.checkpoint()
            invocation = engine.worker.active[handle.execution_id]
            assert invocation is not None
            while not invocation._arrivals:  # the late attempt's outcome
                await anyio.lowlevel.checkpoint()
        del invocation
        store.go_on.set()
        with pytest.raises(ExecutionFailedError):
            await handle.result()
        await settle(engine)
        assert len(contexts) == 3
        assert [ref for ref in contexts if ref() is not None] == []


@pytest.mark.usefixtures("no_collector")
async def test_an_execution_stopped_mid_step_leaves_nothing_behind(tmp_path: Path) -> None:
    contexts: list[weakref.ref[DurableContext]] = []
    engine = Engine(str(tmp_path / "m.db"))
    started = anyio.Event()

    async def hangs() -> None:
        started.set()
        await anyio.Event().wait()

    @engine.workflow
    async def stopped(ctx: DurableContext) -> None:
        contexts.append(weakref.ref(ctx))
        await ctx.step(hangs)

    async with engine:
        handle = await engine.start(stopped)
        await started.wait()  # the attempt runs: stopping cancels it mid-step
        await engine.stop(handle.execution_id)
        await settle(engine)
        assert (await handle.status()).value == "STOPPED"
        assert len(contexts) == 1
        assert contexts[0]() is None
