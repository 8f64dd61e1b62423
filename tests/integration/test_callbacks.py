"""Callbacks, wait_for_callback and condition polling, end to end on every store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from durable import (
    CallbackAlreadyCompletedError,
    CallbackFailedError,
    CallbackNotFoundError,
    CallbackTimeoutError,
    DurableContext,
    Engine,
    ExecutionFailedError,
    ExecutionStatus,
    PayloadTooLargeError,
    RetryPolicy,
    SerializationError,
    StepError,
    VirtualClock,
    WaitForConditionError,
    poll_until,
)
from tests.helpers import drive, settle

EngineFactory = Callable[..., Engine]


@pytest.fixture(params=["memory", "sqlite"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> EngineFactory:
    def factory(clock: VirtualClock, **kwargs: Any) -> Engine:
        url = ":memory:" if request.param == "memory" else str(tmp_path / "cb.db")
        return Engine(url, clock=clock, poll_interval=0.05, **kwargs)

    return factory


def types_of(history: list[Any]) -> list[str]:
    return [event.event_type for event in history]


async def test_an_answer_resumes_the_workflow(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    handed_out: list[str] = []

    @engine.workflow
    async def approval(ctx: DurableContext, amount: int) -> dict[str, Any]:
        cb = await ctx.create_callback(name="manager", timeout=7 * 86_400)
        await ctx.step(handed_out.append, cb.id, name="notify")
        decision = await cb.result()
        return {"amount": amount, "decision": decision}

    async with engine:
        handle = await engine.start(approval, 90)
        await settle(engine)
        assert await handle.status() is ExecutionStatus.RUNNING
        [callback_id] = handed_out
        await engine.send_callback_success(callback_id, {"approved": True})
        assert await handle.result() == {"amount": 90, "decision": {"approved": True}}
        history = await engine.history(handle.execution_id)
    assert len(callback_id) >= 32  # 192 random bits, URL-safe
    started = next(e for e in history if e.event_type == "CallbackStarted").to_json()
    assert started["Name"] == "manager"
    assert started["CallbackStartedDetails"] == {"CallbackId": callback_id, "Timeout": 604800}
    done = next(e for e in history if e.event_type == "CallbackSucceeded").to_json()
    assert done["CallbackSucceededDetails"]["Result"]["Payload"] == '{"approved": true}'
    assert types_of(history)[-2:] == ["InvocationCompleted", "ExecutionSucceeded"]


async def test_callback_ids_are_unguessable_and_distinct(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    ids: list[str] = []

    @engine.workflow
    async def many(ctx: DurableContext) -> None:
        for _ in range(50):
            cb = await ctx.create_callback()
            ids.append(cb.id)

    async with engine:
        await engine.run(many)
    assert len(set(ids)) == 50
    assert all(len(i) >= 32 for i in ids)


async def test_an_external_failure_keeps_its_words(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    handed_out: list[str] = []
    caught: list[tuple[str, str]] = []

    @engine.workflow
    async def approval(ctx: DurableContext, catch: bool) -> str:
        cb = await ctx.create_callback()
        await ctx.step(handed_out.append, cb.id, name="notify")
        try:
            return str(await cb.result())
        except CallbackFailedError as exc:
            if not catch:
                raise
            caught.append((exc.error_type, exc.message))
            return "handled"

    async with engine:
        uncaught = await engine.start(approval, False)
        caught_handle = await engine.start(approval, True)
        await settle(engine)
        for callback_id in handed_out:
            await engine.send_callback_failure(
                callback_id, error_type="Rejected", message="not approved"
            )
        with pytest.raises(ExecutionFailedError) as info:
            await uncaught.result()
        assert await caught_handle.result() == "handled"
        history = await engine.history(uncaught.execution_id)
    assert info.value.error.type == "Rejected"
    assert info.value.error.message == "not approved"
    assert caught == [("Rejected", "not approved")]
    failed = next(e for e in history if e.event_type == "CallbackFailed").to_json()
    payload = failed["CallbackFailedDetails"]["Error"]["Payload"]
    assert (payload["ErrorType"], payload["ErrorMessage"]) == ("Rejected", "not approved")


async def test_timeout_fires_and_late_answers_are_refused(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    handed_out: list[str] = []

    @engine.workflow
    async def approval(ctx: DurableContext) -> str:
        cb = await ctx.create_callback(timeout=3 * 86_400)
        await ctx.step(handed_out.append, cb.id, name="notify")
        try:
            await cb.result()
        except CallbackTimeoutError as exc:
            return f"{exc.error_type}: {exc.message}"
        return "answered"

    async with engine:
        handle = await engine.start(approval)
        jumps = await drive(engine, clock, handle)
        result = await handle.result()
        with pytest.raises(CallbackAlreadyCompletedError, match="TIMED_OUT"):
            await engine.send_callback_success(handed_out[0], "too late")
        history = await engine.history(handle.execution_id)
    assert jumps == [3 * 86_400]
    assert result.startswith("Callback.Timeout: ")
    assert types_of(history).count("CallbackTimedOut") == 1
    assert "CallbackSucceeded" not in types_of(history)


async def test_heartbeats_push_the_deadline_and_record_nothing(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    handed_out: list[str] = []

    @engine.workflow
    async def job(ctx: DurableContext) -> str:
        cb = await ctx.create_callback(heartbeat_timeout=60)
        await ctx.step(handed_out.append, cb.id, name="submit")
        try:
            return str(await cb.result())
        except CallbackTimeoutError as exc:
            return exc.error_type

    async with engine:
        handle = await engine.start(job)
        await settle(engine)
        before = len(await engine.history(handle.execution_id))
        for _ in range(3):
            clock.advance(50)
            await engine.send_callback_heartbeat(handed_out[0])
            await settle(engine)
        assert await handle.status() is ExecutionStatus.RUNNING  # 150 s in, alive
        history = await engine.history(handle.execution_id)
        assert len([e for e in history if e.event_type.startswith("Callback")]) == 1
        assert len(history) == before  # heartbeats (and the wake-ups they cause) record nothing
        clock.advance(61)
        assert await handle.result() == "Callback.Heartbeat"


async def test_an_answer_that_arrives_early_is_kept(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    @engine.workflow
    async def early(ctx: DurableContext) -> Any:
        cb = await ctx.create_callback()

        async def answer_at_once(callback_id: str) -> None:  # the outside system is fast
            await engine.send_callback_success(callback_id, "instant")

        await ctx.step(answer_at_once, cb.id)
        await ctx.wait(3600)
        return await cb.result()

    async with engine:
        handle = await engine.start(early)
        await drive(engine, clock, handle)
        assert await handle.result() == "instant"


async def test_an_answer_sent_while_no_worker_runs_is_delivered_later(tmp_path: Path) -> None:
    clock = VirtualClock()
    url = str(tmp_path / "offline.db")
    handed_out: list[str] = []

    def app() -> Engine:
        engine = Engine(url, clock=clock)

        @engine.workflow
        async def approval(ctx: DurableContext) -> Any:
            cb = await ctx.create_callback()
            await ctx.step(handed_out.append, cb.id, name="notify")
            return await cb.result()

        return engine

    worker = app()
    async with worker:
        await worker.start("approval", execution_id="a")
        await settle(worker)
    async with Engine(url, worker=False, clock=clock) as client:
        await client.send_callback_success(handed_out[0], {"ok": 1})
        assert await client.handle("a").status() is ExecutionStatus.RUNNING
    async with app() as worker:
        assert await worker.handle("a").result() == {"ok": 1}
    assert len(handed_out) == 1


async def test_bad_answers_are_refused_and_change_nothing(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock, max_payload=1024)
    handed_out: list[str] = []

    @engine.workflow
    async def approval(ctx: DurableContext) -> Any:
        cb = await ctx.create_callback()
        await ctx.step(handed_out.append, cb.id, name="notify")
        return await cb.result()

    async with engine:
        handle = await engine.start(approval)
        await settle(engine)
        before = await engine.history(handle.execution_id)
        with pytest.raises(CallbackNotFoundError, match="no-such-id"):
            await engine.send_callback_success("no-such-id", 1)
        with pytest.raises(CallbackNotFoundError):
            await engine.send_callback_heartbeat("no-such-id")
        with pytest.raises(SerializationError, match="cannot be serialized"):
            await engine.send_callback_success(handed_out[0], threading.Lock())
        with pytest.raises(PayloadTooLargeError):
            await engine.send_callback_success(handed_out[0], "x" * 5000)
        await settle(engine)
        assert [e.raw for e in await engine.history(handle.execution_id)] == [e.raw for e in before]
        await engine.send_callback_success(handed_out[0], "fine")
        assert await handle.result() == "fine"
        with pytest.raises(CallbackAlreadyCompletedError, match="SUCCEEDED"):
            await engine.send_callback_success(handed_out[0], "again")
        with pytest.raises(CallbackAlreadyCompletedError):
            await engine.send_callback_failure(handed_out[0], error_type="E", message="m")


async def test_wait_for_callback_records_a_context(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    submitted: list[str] = []

    def submit(callback_id: str) -> None:
        submitted.append(callback_id)

    @engine.workflow
    async def approval(ctx: DurableContext) -> Any:
        answer = await ctx.wait_for_callback(submit, name="manager-approval", timeout=86_400)
        await ctx.wait(60)
        return answer

    async with engine:
        handle = await engine.start(approval)
        await settle(engine)
        await engine.send_callback_success(submitted[0], "yes")
        await drive(engine, clock, handle)
        assert await handle.result() == "yes"
        history = await engine.history(handle.execution_id)
    assert len(submitted) == 1  # replays never re-ran the submitter
    context = [e for e in history if e.sub_type == "WaitForCallback"]
    assert [e.event_type for e in context] == ["ContextStarted", "ContextSucceeded"]
    assert context[0].name == "manager-approval"
    inner = [e for e in history if e.parent_id == context[0].id]
    assert [e.event_type for e in inner] == [
        "CallbackStarted",
        "StepStarted",
        "StepSucceeded",
        "CallbackSucceeded",
    ]
    assert inner[1].name == "submit"
    assert inner[0].details["callback_id"] == submitted[0]


async def test_wait_for_callback_submitter_failures_fail_the_context(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    attempts: list[int] = []

    def broken(callback_id: str) -> None:
        attempts.append(1)
        raise ConnectionError("mail server down")

    @engine.workflow
    async def approval(ctx: DurableContext) -> str:
        try:
            await ctx.wait_for_callback(broken, retry=RetryPolicy(max_attempts=2, initial_delay=1))
        except StepError as exc:
            return f"{exc.error_type}: {exc.message}"
        return "no error"

    async with engine:
        handle = await engine.start(approval)
        await drive(engine, clock, handle)
        assert await handle.result() == "ConnectionError: mail server down"
        history = await engine.history(handle.execution_id)
    assert len(attempts) == 2
    assert "ContextFailed" in types_of(history)


async def test_wait_for_callback_timeout(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    @engine.workflow
    async def approval(ctx: DurableContext) -> Any:
        return await ctx.wait_for_callback(lambda cid: None, timeout=3600)

    async with engine:
        handle = await engine.start(approval)
        await drive(engine, clock, handle)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
        history = await engine.history(handle.execution_id)
    assert info.value.error.type == "Callback.Timeout"
    assert types_of(history)[-4:] == [
        "CallbackTimedOut",
        "ContextFailed",
        "InvocationCompleted",
        "ExecutionFailed",
    ]


async def test_poll_until_checkpoints_each_check(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    checks: list[int] = []

    def check(state: dict[str, int]) -> dict[str, int]:
        checks.append(state["n"])
        return {"n": state["n"] + 1}

    @engine.workflow
    async def poll(ctx: DurableContext) -> dict[str, int]:
        return await ctx.wait_for_condition(
            check,
            initial_state={"n": 0},
            strategy=poll_until(lambda s: s["n"] >= 3, delay=10),
            name="job",
        )

    async with engine:
        handle = await engine.start(poll)
        jumps = await drive(engine, clock, handle)
        assert await handle.result() == {"n": 3}
        history = await engine.history(handle.execution_id)
    assert checks == [0, 1, 2]  # each check once, replays never re-ran one
    assert jumps == [10, 10]
    polls = [e.to_json() for e in history if e.sub_type == "WaitForCondition"]
    assert [p["EventType"] for p in polls] == ["StepStarted", "StepSucceeded"] * 3
    assert polls[1]["StepSucceededDetails"] == {
        "Result": {"Payload": '{"n": 1}', "Truncated": False},
        "RetryDetails": {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 10},
    }
    assert polls[5]["StepSucceededDetails"]["RetryDetails"] == {"CurrentAttempt": 3}
    assert all(p["Name"] == "job" for p in polls)


async def test_poll_until_backoff_and_max_attempts(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)

    @engine.workflow
    async def poll(ctx: DurableContext) -> Any:
        return await ctx.wait_for_condition(
            lambda s: s + 1,
            initial_state=0,
            strategy=poll_until(
                lambda s: False, delay=5, backoff_rate=2, max_delay=15, max_attempts=4
            ),
        )

    async with engine:
        handle = await engine.start(poll)
        jumps = await drive(engine, clock, handle)
        with pytest.raises(ExecutionFailedError) as info:
            await handle.result()
    assert jumps == [5, 10, 15]
    assert info.value.error.type == "WaitForConditionError"
    assert "after 4 attempts" in info.value.error.message


async def test_a_raising_check_is_not_retried(make_engine: EngineFactory) -> None:
    clock = VirtualClock()
    engine = make_engine(clock)
    calls: list[int] = []

    def check(state: int) -> int:
        calls.append(state)
        raise LookupError("job vanished")

    @engine.workflow
    async def poll(ctx: DurableContext) -> str:
        try:
            await ctx.wait_for_condition(
                check, initial_state=7, strategy=poll_until(lambda s: True)
            )
        except WaitForConditionError as exc:
            return f"{exc.error_type}: {exc.message}"
        return "no error"

    async with engine:
        assert await engine.run(poll) == "LookupError: job vanished"
    assert calls == [7]
