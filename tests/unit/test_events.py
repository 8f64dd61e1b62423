"""History events render in the AWS GetDurableExecutionHistory shape."""

from __future__ import annotations

import json

import msgspec

from durable.events import Event, EventType, HistoryEvent, decode_event, encode_event
from durable.types import ErrorInfo

TS = 1_795_687_200.0  # 2026-11-26T10:00:00Z


def payload(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


def test_events_roundtrip_through_msgpack() -> None:
    event = Event(
        t=EventType.STEP_SUCCEEDED,
        ts=TS,
        id="a",
        st="Step",
        name="x",
        result=payload({"k": [1, 2]}),
        attempt=1,
    )
    assert decode_event(encode_event(event)) == event


def test_execution_started_shape() -> None:
    event = Event(
        t=EventType.EXECUTION_STARTED,
        ts=TS,
        id="order-1",
        name="place_order",
        input=payload({"id": 1}),
    )
    assert HistoryEvent.from_event(1, event).to_json() == {
        "EventType": "ExecutionStarted",
        "EventId": 1,
        "Id": "order-1",
        "Name": "place_order",
        "EventTimestamp": "2026-11-26T10:00:00.000Z",
        "ExecutionStartedDetails": {"Input": {"Payload": '{"id": 1}', "Truncated": False}},
    }


def test_retried_step_shape() -> None:
    failed = Event(
        t=EventType.STEP_FAILED,
        ts=TS + 0.25,
        id="3f1c",
        st="Step",
        name="charge",
        attempt=1,
        next_delay=5.0,
        error=ErrorInfo(type="TimeoutError", message="gateway timeout", stack=["f"]),
    )
    out = HistoryEvent.from_event(3, failed).to_json()
    assert out["EventTimestamp"] == "2026-11-26T10:00:00.250Z"
    assert out["StepFailedDetails"] == {
        "Error": {
            "Payload": {
                "ErrorType": "TimeoutError",
                "ErrorMessage": "gateway timeout",
                "StackTrace": ["f"],
            },
            "Truncated": False,
        },
        "RetryDetails": {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 5},
    }
    started = HistoryEvent.from_event(
        2, Event(t=EventType.STEP_STARTED, ts=TS, id="3f1c", st="Step", name="charge", attempt=1)
    ).to_json()
    assert started["StepStartedDetails"] == {}
    assert "ParentId" not in started
    ok = HistoryEvent.from_event(
        5,
        Event(
            t=EventType.STEP_SUCCEEDED,
            ts=TS,
            id="3f1c",
            st="Step",
            attempt=2,
            result=payload({"id": "p-9"}),
        ),
    ).to_json()
    assert ok["StepSucceededDetails"] == {
        "Result": {"Payload": '{"id": "p-9"}', "Truncated": False},
        "RetryDetails": {"CurrentAttempt": 2},
    }
    json.dumps(ok)  # plain JSON all the way down


def test_wait_and_invocation_shapes() -> None:
    wait = HistoryEvent.from_event(
        2,
        Event(
            t=EventType.WAIT_STARTED,
            ts=TS,
            id="w",
            st="Wait",
            duration=0.5,
            until=TS + 0.5,
            parent="p",
        ),
    ).to_json()
    assert wait["ParentId"] == "p"
    assert wait["WaitStartedDetails"] == {
        "Duration": 0.5,
        "ScheduledEndTimestamp": "2026-11-26T10:00:00.500Z",
    }
    inv = HistoryEvent.from_event(3, Event(t=EventType.INVOCATION_COMPLETED, ts=TS)).to_json()
    assert inv == {
        "EventType": "InvocationCompleted",
        "EventId": 3,
        "EventTimestamp": "2026-11-26T10:00:00.000Z",
        "InvocationCompletedDetails": {},
    }
