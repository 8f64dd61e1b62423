"""The pure replay core: no event loop, no I/O."""

from __future__ import annotations

import pytest

from durable.errors import NonDeterministicError
from durable.events import Event, EventType, encode_event
from durable.replay import (
    OperationIds,
    OpStatus,
    ReplayState,
    check_determinism,
    operation_id,
)
from durable.step import Done, Interrupted, Run, Sleep, decide
from durable.types import ErrorInfo, StepSemantics


def step_event(t: EventType, op: str = "a", ts: float = 100.0, **kw: object) -> Event:
    return Event(t=t, ts=ts, id=op, st="Step", name="charge", **kw)  # type: ignore[arg-type]


def test_operation_ids_depend_only_on_parent_and_counter() -> None:
    assert operation_id(None, 1) == operation_id(None, 1)
    assert operation_id(None, 1) != operation_id(None, 2)
    assert operation_id("p", 1) != operation_id(None, 1)
    assert len(operation_id(None, 1)) == 16


@pytest.mark.parametrize("parent", [None, "", "3f2a9c0e11b4d5e6", "ctx:with:colons"])
def test_operation_ids_of_one_parent_are_the_same_ids(parent: str | None) -> None:
    ids = OperationIds(parent)
    for counter in (1, 2, 9, 10, 11, 12345):
        assert ids(counter) == operation_id(parent, counter)
    assert ids(1) == ids(1)  # the prefix state is copied, never consumed


def test_the_inline_fold_of_steps_equals_folding_event_by_event() -> None:
    err = ErrorInfo(type="ValueError", message="no")
    events = [
        Event(t=EventType.EXECUTION_STARTED, ts=1.0, input=b"\xc0"),
        step_event(EventType.STEP_STARTED, "a", 2.0, attempt=1),
        step_event(EventType.STEP_SUCCEEDED, "a", 3.0, attempt=1, result=b"\x01"),
        step_event(EventType.STEP_STARTED, "b", 4.0),
        step_event(EventType.STEP_FAILED, "b", 5.0, attempt=1, error=err, next_delay=2.0),
        step_event(EventType.STEP_STARTED, "b", 7.0, attempt=2),
        step_event(EventType.STEP_SUCCEEDED, "b", 8.0, attempt=2, result=b"\x02"),
        step_event(EventType.STEP_STARTED, "d", 8.5, attempt=1),  # two at once (parallel)
        step_event(EventType.STEP_STARTED, "e", 8.6, attempt=1),
        step_event(EventType.STEP_SUCCEEDED, "e", 8.7, attempt=1, result=b"\x03"),
        step_event(EventType.STEP_SUCCEEDED, "d", 8.8, attempt=1, result=b"\x04"),
        step_event(EventType.STEP_STARTED, "c", 9.0, attempt=1),
        Event(t=EventType.INVOCATION_COMPLETED, ts=9.5),
    ]
    stored = [encode_event(event) for event in events]
    for cut in range(len(events) + 1):  # a history may end anywhere, even inside a pair
        one_by_one = ReplayState()
        for event in events[:cut]:
            one_by_one.apply(event, recorded=True)
        assert ReplayState.from_events(events[:cut]).ops == one_by_one.ops
        assert ReplayState.from_rows(stored[:cut]).ops == one_by_one.ops


def test_fold_tracks_attempts_retries_and_results() -> None:
    err = ErrorInfo(type="TimeoutError", message="gateway timeout")
    state = ReplayState.from_events(
        [
            Event(t=EventType.EXECUTION_STARTED, ts=99.0, input=b"\xc0"),
            step_event(EventType.STEP_STARTED, attempt=1),
            step_event(EventType.STEP_FAILED, ts=101.0, attempt=1, error=err, next_delay=5.0),
            Event(t=EventType.INVOCATION_COMPLETED, ts=101.0),
        ]
    )
    record = state.ops["a"]
    assert record.status is OpStatus.RETRY_PENDING
    assert record.next_attempt_at == 106.0
    assert record.error == err
    assert state.invocations == 1
    assert state.started_ts == 99.0
    state.apply(step_event(EventType.STEP_STARTED, ts=106.0, attempt=2))
    state.apply(step_event(EventType.STEP_SUCCEEDED, ts=107.0, attempt=2, result=b"\x01"))
    assert record.status is OpStatus.SUCCEEDED
    assert record.attempt == 2
    assert record.result == b"\x01"
    assert record.ended_ts == 107.0


def test_step_decisions() -> None:
    at_least, at_most = StepSemantics.AT_LEAST_ONCE_PER_RETRY, StepSemantics.AT_MOST_ONCE_PER_RETRY
    assert decide(None, at_least, 0.0) == Run(1, record_start=True)

    state = ReplayState.from_events([step_event(EventType.STEP_STARTED, attempt=1)])
    record = state.ops["a"]
    # interrupted by a crash: re-run as the same attempt, or count it as failed
    assert decide(record, at_least, 200.0) == Run(1, record_start=False)
    assert decide(record, at_most, 200.0) == Interrupted(1)

    err = ErrorInfo(type="E", message="m")
    state.apply(
        step_event(EventType.STEP_FAILED, attempt=1, error=err, next_delay=5.0), recorded=True
    )
    assert decide(record, at_least, 104.0) == Sleep(105.0)
    assert decide(record, at_least, 105.0) == Run(2, record_start=True)
    state.apply(step_event(EventType.STEP_STARTED, attempt=2), recorded=True)
    state.apply(step_event(EventType.STEP_FAILED, attempt=2, error=err), recorded=True)
    assert record.status is OpStatus.FAILED
    assert decide(record, at_least, 999.0) == Done()


def test_determinism_check_names_both_versions() -> None:
    state = ReplayState.from_events([step_event(EventType.STEP_STARTED, op="x", attempt=1)])
    record = state.ops["x"]
    check_determinism(
        record,
        kind="Step",
        sub_type="Step",
        name="charge",
        parent=None,
        position="operation 1 of the workflow",
    )
    with pytest.raises(NonDeterministicError) as info:
        check_determinism(
            record,
            kind="Wait",
            sub_type="Wait",
            name="cool-off",
            parent=None,
            position="operation 1 of the workflow",
        )
    message = str(info.value)
    assert "operation 1 of the workflow" in message
    assert "Step named 'charge'" in message
    assert "Wait named 'cool-off'" in message
    with pytest.raises(NonDeterministicError, match="'refund'"):
        check_determinism(
            record,
            kind="Step",
            sub_type="Step",
            name="refund",
            parent=None,
            position="operation 1 of the workflow",
        )


def test_replay_of_a_large_history_needs_no_event_loop() -> None:
    events = [Event(t=EventType.EXECUTION_STARTED, ts=0.0)]
    for i in range(1, 1001):
        op = operation_id(None, i)
        events.append(Event(t=EventType.STEP_STARTED, ts=i, id=op, st="Step", attempt=1))
        events.append(
            Event(t=EventType.STEP_SUCCEEDED, ts=i, id=op, st="Step", attempt=1, result=b"\x01")
        )
    state = ReplayState.from_events(events)
    assert len(state.ops) == 1000
    assert all(r.status is OpStatus.SUCCEEDED for r in state.ops.values())
