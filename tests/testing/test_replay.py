"""The replay checker: recorded histories against the current code."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable import (
    DurableContext,
    ExecutionStatus,
    NonDeterministicError,
    RetryPolicy,
    StepSemantics,
    WorkflowNotFoundError,
)
from durable.events import Event, EventType, HistoryEvent, history_to_json
from durable.testing import DurableTestRunner, ReplayResult, check_replay
from durable.testing._history import read_history
from tests.testing.test_results import everything

CALLS: list[str] = []


def reserve(order: str) -> str:
    CALLS.append("reserve")
    return f"r-{order}"


def charge(order: str) -> str:
    CALLS.append("charge")
    return f"p-{order}"


async def order_v1(ctx: DurableContext, order: str) -> dict[str, str]:
    reservation = await ctx.step(reserve, order)
    await ctx.wait(timedelta(days=1), name="cool-off")
    payment = await ctx.step(charge, order, name="process-payment")
    return {"reservation": reservation, "payment": payment}


async def recorded(workflow: Any = order_v1, *, finish: bool = True) -> list[HistoryEvent]:
    """A real history of ``workflow`` (finished, or stopped at its cool-off timer)."""
    async with DurableTestRunner() as runner:
        wf = runner.workflow(name="order")(workflow)
        handle = await runner.start(wf, "o-1", execution_id="o-1")
        result = await runner.result(handle) if finish else await runner.inspect(handle)
    CALLS.clear()
    return result.history


async def test_a_history_replays_in_every_accepted_shape(tmp_path: Path) -> None:
    history = await recorded()
    exported = history_to_json(history)
    path = tmp_path / "order.json"
    path.write_text(json.dumps(exported))
    shapes: list[Any] = [
        history,
        exported,
        exported["Events"],
        json.dumps(exported),
        json.dumps(exported).encode(),
        path,
    ]
    for shape in shapes:
        result = await check_replay(order_v1, shape)
        assert result == ReplayResult(
            execution_id="o-1",
            workflow="order_v1",
            status=ExecutionStatus.SUCCEEDED,
            events=len(history),
            operations=3,
        )
    assert CALLS == []  # replay never runs a step
    assert str(result) == (
        "execution 'o-1' (SUCCEEDED, 10 events) replays against workflow 'order_v1': "
        "3 operations match"
    )


async def test_a_renamed_step_is_reported_with_its_position_id_and_both_versions() -> None:
    history = await recorded()

    async def order_v2(ctx: DurableContext, order: str) -> dict[str, str]:
        reservation = await ctx.step(reserve, order)
        await ctx.wait(timedelta(days=1), name="cool-off")
        payment = await ctx.step(charge, order, name="charge-card")  # renamed
        return {"reservation": reservation, "payment": payment}

    step_id = next(e.id for e in history if e.name == "process-payment")
    with pytest.raises(NonDeterministicError) as caught:
        await check_replay(order_v2, history_to_json(history))
    message = str(caught.value)
    assert "replaying execution 'o-1' against workflow 'order_v2'" in message
    assert f"operation 3 of the workflow (id {step_id})" in message
    assert "recorded as Step named 'process-payment'" in message
    assert "now calls Step named 'charge-card'" in message
    assert "[recorded at history event 7: StepStarted]" in message


async def test_a_different_kind_of_operation_is_reported() -> None:
    history = await recorded()

    async def order_v2(ctx: DurableContext, order: str) -> None:
        await ctx.step(reserve, order)
        await ctx.step(charge, order, name="cool-off")  # was a wait

    with pytest.raises(NonDeterministicError, match="recorded as Wait named 'cool-off'"):
        await check_replay(order_v2, history)


async def test_a_new_operation_in_a_finished_history_is_reported() -> None:
    history = await recorded()

    async def order_v2(ctx: DurableContext, order: str) -> dict[str, str]:
        result = await order_v1(ctx, order)
        await ctx.step(charge, order, name="send-receipt")
        return result

    with pytest.raises(NonDeterministicError) as caught:
        await check_replay(order_v2, history)
    assert "now calls a step named 'send-receipt' (operation 4 of the workflow" in str(caught.value)
    assert "never called before it ended" in str(caught.value)
    assert CALLS == []


async def test_a_recorded_operation_the_code_no_longer_makes_is_reported() -> None:
    history = await recorded()

    async def order_v2(ctx: DurableContext, order: str) -> dict[str, str]:
        reservation = await ctx.step(reserve, order)
        await ctx.wait(timedelta(days=1), name="cool-off")
        return {"reservation": reservation, "payment": "free"}

    with pytest.raises(NonDeterministicError) as caught:
        await check_replay(order_v2, history)
    assert "operation 3 of the workflow" in str(caught.value)
    assert "recorded as a step named 'process-payment' (history event 7)" in str(caught.value)
    assert "no longer makes that call" in str(caught.value)


async def test_a_different_end_is_reported() -> None:
    history = await recorded()

    async def order_v2(ctx: DurableContext, order: str) -> None:
        await order_v1(ctx, order)
        raise ValueError("refunds only")

    with pytest.raises(NonDeterministicError, match="ends FAILED with ValueError: refunds only"):
        await check_replay(order_v2, history)


async def test_a_running_history_replays_to_its_end_and_says_what_comes_next() -> None:
    history = await recorded(finish=False)  # suspended on its cool-off timer
    result = await check_replay(order_v1, history)
    assert result.status == ExecutionStatus.RUNNING
    assert result.operations == 2
    assert result.new_operations == ()

    async def order_v2(ctx: DurableContext, order: str) -> str:
        await ctx.step(reserve, order)
        await ctx.wait(timedelta(hours=1), name="cool-off")  # shorter: due at once now
        return await ctx.step(charge, order, name="process-payment")

    later = await check_replay(order_v2, [*history])
    assert later.new_operations == ()  # the recorded due time wins: still waiting
    assert CALLS == []


async def test_new_operations_after_a_running_history_are_listed() -> None:
    async def first_part(ctx: DurableContext, order: str) -> None:
        await ctx.step(reserve, order)
        await ctx.wait(10, name="short")
        await ctx.wait(timedelta(days=9), name="long")

    async with DurableTestRunner() as runner:
        wf = runner.workflow(first_part)
        handle = await runner.start(wf, "o-2")
        await runner.advance(60)
        history = (await runner.inspect(handle)).history

    async def changed(ctx: DurableContext, order: str) -> None:
        await ctx.step(reserve, order)
        await ctx.wait(10, name="short")
        await ctx.step(charge, order, name="charge")  # where the long wait was recorded

    with pytest.raises(NonDeterministicError, match="recorded as Wait named 'long'"):
        await check_replay(changed, history)

    async def extended(ctx: DurableContext, order: str) -> None:
        await first_part(ctx, order)
        await ctx.step(charge, order, name="charge")

    result = await check_replay(extended, history)
    assert result.new_operations == ()  # still waiting for the long wait
    cut = [e for e in history if e.name != "long"]  # as if exported just before it started
    result = await check_replay(extended, cut)
    assert result.new_operations[0].startswith("a wait named 'long' (operation 3 of the workflow")


async def test_a_running_history_that_now_fails_on_replay_is_reported() -> None:
    history = await recorded(finish=False)

    async def order_v2(ctx: DurableContext, order: str) -> None:
        await ctx.step(reserve, order)
        raise RuntimeError("new validation")

    with pytest.raises(NonDeterministicError, match=r"had not failed .* ends FAILED"):
        await check_replay(order_v2, history)


async def test_a_step_result_that_no_longer_decodes_is_reported() -> None:
    history = await recorded()

    def reserve_v2(order: str) -> int:  # was -> str
        return 1

    reserve_v2.__name__ = "reserve"

    async def order_v2(ctx: DurableContext, order: str) -> Any:
        return await ctx.step(reserve_v2, order)

    with pytest.raises(NonDeterministicError, match="SerializationError"):
        await check_replay(order_v2, history)


async def test_every_event_the_engine_emits_survives_the_json_round_trip() -> None:
    async with DurableTestRunner() as runner:
        rich = await everything(runner)

        @runner.workflow(timeout=timedelta(hours=1))
        async def too_slow(ctx: DurableContext) -> None:
            await ctx.wait(timedelta(days=1))

        @runner.workflow
        async def stopped(ctx: DurableContext) -> None:
            await ctx.wait(timedelta(days=1))

        @runner.workflow
        async def fails(ctx: DurableContext) -> None:
            await ctx.step(reserve, "x")
            raise ValueError("boom")

        runner.register_fake("refuse", LookupError("no"))

        @runner.workflow
        async def unhappy(ctx: DurableContext) -> list[str]:
            errors = []
            for name, timeout in (("failed", None), ("expired", 60)):
                cb = await ctx.create_callback(name=name, timeout=timeout)
                try:
                    await cb.result()
                except Exception as exc:
                    errors.append(type(exc).__name__)
            try:
                await ctx.invoke("refuse", None)
            except Exception as exc:
                errors.append(type(exc).__name__)
            return errors

        sad = await runner.start(unhappy)
        await runner.send_callback_failure(
            await runner.wait_for_callback(sad, "failed"), error_type="No", message="never"
        )
        outcomes = await runner.result(sad)
        assert outcomes.result == ["CallbackFailedError", "CallbackTimeoutError", "InvokeError"]
        timed_out = await runner.run(too_slow)
        handle = await runner.start(stopped)
        await runner.engine.stop(handle.execution_id, reason="test")
        stop = await runner.inspect(handle)
        failed = await runner.run(fails)
        child = await runner.inspect(rich.get_invoke("ship-it").child_execution_id or "")
        histories = [
            rich.history,
            outcomes.history,
            timed_out.history,
            stop.history,
            failed.history,
            child.history,
        ]
        for history in histories:
            back = read_history(json.loads(json.dumps(history_to_json(history))))
            assert [_comparable(e) for e in back] == [_comparable(e.raw) for e in history]
        assert {e.event_type for h in histories for e in h} >= set(EventType) - {
            EventType.WAIT_CANCELLED  # the engine never records it
        }
        replays = [
            ("all_kinds", rich),
            ("unhappy", outcomes),
            ("too_slow", timed_out),
            ("fails", failed),
        ]
        for wf, result in replays:
            replayed = await runner.replay_check(wf, result.history_json())
            assert replayed.status == result.status
        assert (await runner.replay_check("stopped", stop.history)).status == "STOPPED"
    assert CALLS == ["reserve"]  # only the live run: replays never run steps


def _comparable(event: Event) -> dict[str, Any]:
    fields = msgspec.structs.asdict(event)
    fields["ts"] = int(event.ts * 1000)  # exported to the millisecond
    if event.until is not None:
        fields["until"] = int(event.until * 1000)
    for key in ("result", "input"):
        if fields[key] is not None:
            fields[key] = msgspec.msgpack.decode(fields[key])
    if event.t == EventType.STEP_STARTED:
        fields["attempt"] = None  # not exported: it follows from the order of events
    if event.t == EventType.CHAINED_INVOKE_STARTED:
        fields["callback_id"] = None  # internal to a live worker
    if event.t == EventType.CHAINED_INVOKE_STARTED and fields["version"] is None:
        fields["version"] = "$LATEST"
    return fields


async def test_replay_check_by_name_and_unknown_names() -> None:
    history = await recorded()
    async with DurableTestRunner() as runner:
        runner.workflow(name="order")(order_v1)
        assert (await runner.replay_check("order", history)).workflow == "order"
        with pytest.raises(WorkflowNotFoundError, match="no workflow named 'ordr'"):
            await runner.replay_check("ordr", history)


async def test_invoked_children_need_not_be_registered_to_replay() -> None:
    async with DurableTestRunner() as runner:
        runner.register_fake("ship", "shipped")

        @runner.workflow
        async def parent(ctx: DurableContext) -> Any:
            return await ctx.invoke("ship", 1, name="ship")

        result = await runner.run(parent)
    replayed = await check_replay(parent, result.history_json())
    assert replayed.operations == 1


NOT_HISTORIES: list[tuple[Any, str]] = [
    ("{not json", "the text is not JSON"),
    (42, "expected JSON text, a path, a {'Events': [...]} dict or a list of events, got int"),
    ({"events": []}, "expected a dict with an 'Events' list (keys: 'events')"),
    ({"Events": {}}, "'Events' is a dict, not a list"),
    ({"Events": []}, "it has no events"),
    ([1], "event 1 is a int, not an event object"),
    ([{"EventId": 1}], "event 1: Object missing required field `EventType`"),
    (
        [{"EventType": "StepDone", "EventTimestamp": "2026-01-01T00:00:00Z"}],
        "event 1 (StepDone) has an unknown EventType 'StepDone' (known: CallbackFailed",
    ),
    (
        [{"EventType": "ExecutionStarted", "EventTimestamp": "yesterday"}],
        "event 1 (ExecutionStarted): EventTimestamp 'yesterday' is not an ISO-8601 time",
    ),
    (
        [{"EventType": "StepStarted", "SubType": "Step", "EventTimestamp": "2026-01-01T00:00:00Z"}],
        "event 1 (StepStarted) is an operation event without an 'Id'",
    ),
    (
        [{"EventType": "WaitStarted", "SubType": "Nap", "Id": "a", "EventTimestamp": "2026-01-01"}],
        "unknown SubType 'Nap'",
    ),
]


@pytest.mark.parametrize(("source", "expected"), NOT_HISTORIES)
async def test_what_is_not_a_history_is_a_clear_error(source: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=r"^not a durable history: ") as caught:
        await check_replay(order_v1, source)
    assert expected in str(caught.value)


async def test_broken_events_in_a_real_history_are_named() -> None:
    events = history_to_json(await recorded())["Events"]

    def broken(index: int, change: Any) -> list[dict[str, Any]]:
        copy = json.loads(json.dumps(events))
        change(copy[index])
        return copy

    def bad_payload(event: dict[str, Any]) -> None:
        event["StepSucceededDetails"]["Result"]["Payload"] = "{oops"

    def truncated(event: dict[str, Any]) -> None:
        event["StepSucceededDetails"]["Result"]["Truncated"] = True

    def wrong_type(event: dict[str, Any]) -> None:
        event["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"] = "one"

    cases = [
        (broken(2, bad_payload), "event 3 (StepSucceeded): Result: the Payload is not JSON text"),
        (broken(2, truncated), "event 3 (StepSucceeded): Result is truncated"),
        (broken(2, wrong_type), "StepSucceededDetails: Expected `int | null`, got `str`"),
        (events[1:], "it must start with ExecutionStarted, not StepStarted"),
        (events + events[-1:], "event 10 (ExecutionSucceeded) ends the execution, but 1 event"),
        (events[:3] + events[:1], "event 4 is a second ExecutionStarted"),
    ]
    for source, expected in cases:
        with pytest.raises(ValueError, match="not a durable history") as caught:
            await check_replay(order_v1, source)
        assert expected in str(caught.value)


async def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a durable history: cannot read"):
        await check_replay(order_v1, tmp_path / "missing.json")


async def test_a_history_exported_while_an_at_most_once_step_ran_is_not_a_failure() -> None:
    async def pay(ctx: DurableContext, order: str) -> str:
        await ctx.step(reserve, order)
        return await ctx.step(
            charge,
            order,
            name="charge",
            semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
            retry=RetryPolicy.none(),
        )

    history = await recorded(pay)
    started = next(i for i, e in enumerate(history) if e.name == "charge")
    running = history[: started + 1]  # exported while 'charge' ran
    result = await check_replay(pay, running)
    assert result.status == ExecutionStatus.RUNNING
    assert result.new_operations == ("a step named 'charge' still running",)
    assert result.operations == 2


async def test_a_history_exported_while_a_step_ran_says_the_step_would_run() -> None:
    history = await recorded()
    started = next(i for i, e in enumerate(history) if e.name == "process-payment")
    result = await check_replay(order_v1, history[: started + 1])
    [next_call] = result.new_operations
    assert next_call.startswith("a step named 'process-payment' (operation 3 of the workflow")
    assert next_call.endswith(") to run")
    assert str(result).endswith(f"3 operations match; it would go on with {next_call}")
    assert CALLS == []


async def test_code_that_no_longer_finishes_a_finished_history_is_reported() -> None:
    async def fire_and_forget(ctx: DurableContext) -> str:
        await ctx.create_callback(name="maybe")
        return "done"

    async def now_waits(ctx: DurableContext) -> str:
        cb = await ctx.create_callback(name="maybe")
        return str(await cb.result())  # the recorded run never got (or awaited) an answer

    history = await recorded(fire_and_forget)
    with pytest.raises(NonDeterministicError, match="does not finish on replay") as caught:
        await check_replay(now_waits, history)
    assert "the recorded execution ended (ExecutionSucceeded at event 4)" in str(caught.value)


async def test_a_step_running_in_one_branch_does_not_stop_the_others_replaying() -> None:
    async def slow(ctx: DurableContext) -> str:
        return await ctx.step(
            reserve, "a", name="slow", semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY
        )

    async def fast(ctx: DurableContext) -> str:
        done = await ctx.step(charge, "b", name="fast")
        await ctx.wait(timedelta(days=1), name="later")
        return done

    async def both(ctx: DurableContext, order: str) -> Any:
        return (await ctx.parallel([slow, fast], name="both")).get_results()

    history = await recorded(both)
    later = next(i for i, e in enumerate(history) if e.name == "later")
    slow_id = next(e.id for e in history if e.name == "slow")
    branch_a = next(e.parent_id for e in history if e.name == "slow")
    running = [  # exported while 'slow' ran and 'fast' had moved on to its wait
        e
        for e in history[: later + 1]
        if not (e.id in (slow_id, branch_a) and e.event_type.endswith("Succeeded"))
    ]
    result = await check_replay(both, running)
    assert result.new_operations == ("a step named 'slow' still running",)

    async def changed(ctx: DurableContext, order: str) -> Any:
        async def fast_v2(ctx: DurableContext) -> str:
            return await ctx.step(charge, "b", name="quick")  # renamed

        return (await ctx.parallel([slow, fast_v2], name="both")).get_results()

    with pytest.raises(NonDeterministicError, match="recorded as Step named 'fast'"):
        await check_replay(changed, running)
