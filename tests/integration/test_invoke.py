"""ctx.invoke (child executions) and engine.stop, end to end on every store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable import (
    Completion,
    DurableContext,
    Engine,
    ExecutionFailedError,
    ExecutionNotFoundError,
    ExecutionNotRunningError,
    ExecutionStatus,
    InvokeError,
    VirtualClock,
    WorkflowNotFoundError,
)
from tests.helpers import drive, settle

EngineFactory = Callable[..., Engine]


@pytest.fixture(params=["memory", "sqlite"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> EngineFactory:
    def factory(clock: VirtualClock, **kwargs: Any) -> Engine:
        url = ":memory:" if request.param == "memory" else str(tmp_path / "inv.db")
        return Engine(url, clock=clock, poll_interval=0.05, **kwargs)

    return factory


def register(engine: Engine, ran: list[str]) -> None:
    @engine.workflow
    async def ship(ctx: DurableContext, order: dict[str, Any]) -> dict[str, str]:
        await ctx.step(lambda: ran.append("label"), name="label")
        await ctx.wait(3600, name="truck")
        if order.get("fail"):
            await ctx.step(_raise_lost, retry=None)
        return {"tracking": f"T-{order['id']}"}

    @engine.workflow
    async def order(ctx: DurableContext, order: dict[str, Any]) -> Any:
        try:
            shipment = await ctx.invoke(ship, order, name="shipping")
        except InvokeError as exc:
            if order.get("catch"):
                return [exc.error_type, exc.message]
            raise
        await ctx.step(lambda: ran.append("after"), name="after")
        return shipment


def _raise_lost() -> None:
    raise LookupError("parcel lost")


async def test_invoke_runs_a_child_execution(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    ran: list[str] = []
    register(engine, ran)

    async with engine:
        handle = await engine.start("order", {"id": "o1"}, execution_id="o1")
        await settle(engine)
        children = await engine.list(parent_id="o1")
        assert [c.workflow for c in children] == ["ship"]
        assert children[0].status is ExecutionStatus.RUNNING
        await drive(engine, clock, handle)
        assert await handle.result() == {"tracking": "T-o1"}
        history = await engine.history("o1")
        child = await engine.get(children[0].execution_id)
    assert ran == ["label", "after"]
    assert child.parent_id == "o1"
    assert child.status is ExecutionStatus.SUCCEEDED
    started = next(e for e in history if e.event_type == "ChainedInvokeStarted")
    assert child.execution_id == f"o1:{started.id}"
    assert started.to_json()["ChainedInvokeStartedDetails"] == {
        "Input": {"Payload": '{"id": "o1"}', "Truncated": False},
        "FunctionName": "ship",
        "ExecutedVersion": "$LATEST",
        "DurableExecutionArn": child.execution_id,
    }
    assert started.name == "shipping"
    done = next(e for e in history if e.event_type == "ChainedInvokeSucceeded").to_json()
    assert done["ChainedInvokeSucceededDetails"] == {
        "Result": {"Payload": '{"tracking": "T-o1"}', "Truncated": False}
    }


async def test_a_failed_child_raises_invoke_error_with_its_words(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    register(engine, [])

    async with engine:
        caught = await engine.start("order", {"id": "a", "fail": True, "catch": True})
        uncaught = await engine.start("order", {"id": "b", "fail": True})
        await drive(engine, clock, caught)
        await drive(engine, clock, uncaught)
        assert await caught.result() == ["LookupError", "parcel lost"]
        with pytest.raises(ExecutionFailedError) as info:
            await uncaught.result()
        history = await engine.history(uncaught.execution_id)
    assert (info.value.error.type, info.value.error.message) == ("LookupError", "parcel lost")
    assert "ChainedInvokeFailed" in [e.event_type for e in history]


async def test_invoke_survives_a_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "restart.db")
    ran: list[str] = []

    def app() -> Engine:
        engine = Engine(url, clock=clock)
        register(engine, ran)
        return engine

    async with app() as engine:
        await engine.start("order", {"id": "r"}, execution_id="r")
        await settle(engine)
    clock.advance(3600)
    async with app() as engine:
        assert await engine.handle("r").result() == {"tracking": "T-r"}
    assert ran == ["label", "after"]


async def test_stopping_a_parent_stops_its_children(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    register(engine, [])

    async with engine:
        handle = await engine.start("order", {"id": "s"}, execution_id="s")
        await settle(engine)
        [child] = await engine.list(parent_id="s")
        stopped = await engine.stop("s", reason="customer cancelled")
        assert stopped == ["s", child.execution_id]
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
        assert (await engine.get(child.execution_id)).status is ExecutionStatus.STOPPED
        clock.advance(7200)  # the child's timer must not fire any more
        await settle(engine)
        history = await engine.history(child.execution_id)
        with pytest.raises(ExecutionNotRunningError, match="STOPPED"):
            await engine.stop("s")
        with pytest.raises(ExecutionNotFoundError):
            await engine.stop("nope")
    assert info.value.status == "STOPPED"
    assert info.value.error.message == "customer cancelled"
    assert history[-1].event_type == "ExecutionStopped"
    assert "WaitSucceeded" not in [e.event_type for e in history]


async def test_stopping_a_child_fails_the_parents_invoke(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    register(engine, [])

    async with engine:
        handle = await engine.start("order", {"id": "c", "catch": True}, execution_id="c")
        await settle(engine)
        [child] = await engine.list(parent_id="c")
        assert await engine.stop(child.execution_id, reason="truck broke down") == [
            child.execution_id
        ]
        assert await handle.result() == ["ExecutionStopped", "truck broke down"]


async def test_invoke_timeout_stops_the_child(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    register(engine, [])

    @engine.workflow
    async def impatient(ctx: DurableContext) -> Any:
        try:
            return await ctx.invoke("ship", {"id": "t"}, timeout=60)
        except InvokeError as exc:
            return [exc.error_type, exc.message]

    async with engine:
        handle = await engine.start(impatient, execution_id="t")
        await drive(engine, clock, handle)
        error_type, message = await handle.result()
        [child] = await engine.list(parent_id="t")
    assert error_type == "Invoke.Timeout"
    assert "did not finish within 60 s" in message
    assert child.status is ExecutionStatus.STOPPED


async def test_invoking_an_unregistered_workflow_records_nothing(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    @engine.workflow
    async def parent(ctx: DurableContext) -> Any:
        return await ctx.invoke("missing", {})

    async with engine:
        handle = await engine.start(parent)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
        history = await engine.history(handle.execution_id)
    assert info.value.error.type == WorkflowNotFoundError.__name__
    assert "'missing'" in info.value.error.message
    assert not [e for e in history if e.event_type.startswith("ChainedInvoke")]


async def test_stop_while_a_step_runs_discards_its_result(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    started = anyio.Event()
    release = anyio.Event()
    after: list[str] = []

    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        await ctx.step(slow)
        await ctx.step(lambda: after.append("x"), name="after")

    async with engine:
        handle = await engine.start(wf)
        await started.wait()
        await engine.stop(handle.execution_id)
        release.set()
        with pytest.raises(ExecutionFailedError):
            await handle.result()
        await settle(engine)
        history = await engine.history(handle.execution_id)
    assert after == []
    assert [e.event_type for e in history][-1] == "ExecutionStopped"
    assert "StepSucceeded" not in [e.event_type for e in history]


async def test_a_parent_that_ends_stops_the_children_nobody_awaits(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    register(engine, [])

    @engine.workflow
    async def race(ctx: DurableContext) -> Any:
        async def slow(c: DurableContext) -> Any:
            return await c.invoke("ship", {"id": "slow"})  # waits an hour in the child

        async def fast(c: DurableContext) -> str:
            return "fast"

        result = await ctx.parallel([slow, fast], completion=Completion.first_successful())
        return result.get_results()

    async with engine:
        handle = await engine.start(race, execution_id="race")
        assert await handle.result() == ["fast"]
        [child] = await engine.list(parent_id="race")
        history = await engine.history(child.execution_id)
    assert child.status is ExecutionStatus.STOPPED  # not left running, orphaned
    assert history[-1].event_type == "ExecutionStopped"
    assert "race" in history[-1].details["error"].message
