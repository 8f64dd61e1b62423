"""The event log: what is stored (:class:`Event`) and what users read (:class:`HistoryEvent`).

Events are appended, never changed. Each is one msgspec struct encoded as msgpack; user values
inside it (inputs, results) are already-encoded msgpack bytes, decoded only when needed, so
replay never pays for values it does not use.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from durable.types import ErrorInfo

__all__ = [
    "Event",
    "EventType",
    "HistoryEvent",
    "SubType",
    "decode_event",
    "decode_events",
    "iter_events",
    "encode_event",
    "format_timestamp",
    "history_to_json",
]


class EventType(enum.StrEnum):
    """History event types, in the AWS durable execution vocabulary."""

    EXECUTION_STARTED = "ExecutionStarted"
    EXECUTION_SUCCEEDED = "ExecutionSucceeded"
    EXECUTION_FAILED = "ExecutionFailed"
    EXECUTION_STOPPED = "ExecutionStopped"
    EXECUTION_TIMED_OUT = "ExecutionTimedOut"
    STEP_STARTED = "StepStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    WAIT_STARTED = "WaitStarted"
    WAIT_SUCCEEDED = "WaitSucceeded"
    WAIT_CANCELLED = "WaitCancelled"
    CALLBACK_STARTED = "CallbackStarted"
    CALLBACK_SUCCEEDED = "CallbackSucceeded"
    CALLBACK_FAILED = "CallbackFailed"
    CALLBACK_TIMED_OUT = "CallbackTimedOut"
    CONTEXT_STARTED = "ContextStarted"
    CONTEXT_SUCCEEDED = "ContextSucceeded"
    CONTEXT_FAILED = "ContextFailed"
    CHAINED_INVOKE_STARTED = "ChainedInvokeStarted"
    CHAINED_INVOKE_SUCCEEDED = "ChainedInvokeSucceeded"
    CHAINED_INVOKE_FAILED = "ChainedInvokeFailed"
    INVOCATION_COMPLETED = "InvocationCompleted"


class SubType(enum.StrEnum):
    """Operation sub types, as AWS names them."""

    STEP = "Step"
    WAIT = "Wait"
    CALLBACK = "Callback"
    RUN_IN_CHILD_CONTEXT = "RunInChildContext"
    MAP = "Map"
    MAP_ITERATION = "MapIteration"
    PARALLEL = "Parallel"
    PARALLEL_BRANCH = "ParallelBranch"
    WAIT_FOR_CALLBACK = "WaitForCallback"
    WAIT_FOR_CONDITION = "WaitForCondition"
    CHAINED_INVOKE = "ChainedInvoke"


class Event(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """One stored event. Field names are short because every event of every execution pays them.

    Attributes:
        t: the :class:`EventType` value.
        ts: when it was recorded (seconds since the epoch, engine clock).
        id: operation id (``None`` for execution-level events and ``InvocationCompleted``).
        st: sub type; ``name``: operation name; ``parent``: parent operation id.
        result / input: msgpack-encoded user values.
        error: the recorded error.
        attempt: the step attempt this event belongs to (1-based).
        next_delay: seconds until the next attempt (a failure that will be retried).
        duration: the wait's duration in seconds; ``until``: when it is due.
        callback_id, timeout, heartbeat_timeout: callback details.
        function_name, version, child_id: chained invoke details.
    """

    t: str
    ts: float
    id: str | None = None
    st: str | None = None
    name: str | None = None
    parent: str | None = None
    result: bytes | None = None
    input: bytes | None = None
    error: ErrorInfo | None = None
    attempt: int | None = None
    next_delay: float | None = None
    duration: float | None = None
    until: float | None = None
    callback_id: str | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    function_name: str | None = None
    version: str | None = None
    child_id: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)
_payload_decoder = msgspec.msgpack.Decoder()


def encode_event(event: Event) -> bytes:
    """Encode one event for the store."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode one stored event."""
    return _decoder.decode(data)


def decode_events(rows: list[bytes]) -> list[Event]:
    """Decode a whole history with the prebuilt decoder."""
    decode = _decoder.decode
    return [decode(row) for row in rows]


def iter_events(rows: Iterable[bytes]) -> Iterator[Event]:
    """Decode stored events one at a time, as they are consumed (replay folds each event
    while it is fresh in the CPU cache instead of building the whole list first)."""
    return map(_decoder.decode, rows)


def format_timestamp(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, as AWS prints event timestamps."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    """Keys JSON can hold (msgpack maps may have int or tuple keys)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _payload_text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return json.dumps(msgspec.to_builtins(_jsonable(_payload_decoder.decode(data))))


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _error_payload(error: ErrorInfo) -> dict[str, Any]:
    return {
        "Payload": {
            "ErrorType": error.type,
            "ErrorMessage": error.message,
            "StackTrace": list(error.stack),
        },
        "Truncated": False,
    }


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of an execution's history, as ``engine.history`` returns it.

    ``details`` holds the event's own facts with Python values (``result``, ``input``,
    ``error``, ``attempt``, ``next_attempt_delay``, ``duration``, ``callback_id``, ...);
    :meth:`to_json` renders the AWS ``GetDurableExecutionHistory`` shape.
    """

    event_id: int
    event_type: str
    sub_type: str | None
    id: str | None
    name: str | None
    parent_id: str | None
    timestamp: datetime
    details: dict[str, Any]
    raw: Event

    @classmethod
    def from_event(cls, event_id: int, event: Event) -> HistoryEvent:
        """Build the public view of a stored event."""
        details: dict[str, Any] = {}
        if event.input is not None:
            details["input"] = _payload_decoder.decode(event.input)
        if event.result is not None:
            details["result"] = _payload_decoder.decode(event.result)
        if event.error is not None:
            details["error"] = event.error
        for key, value in (
            ("attempt", event.attempt),
            ("next_attempt_delay", event.next_delay),
            ("duration", event.duration),
            ("scheduled_end", event.until),
            ("callback_id", event.callback_id),
            ("timeout", event.timeout),
            ("heartbeat_timeout", event.heartbeat_timeout),
            ("function_name", event.function_name),
            ("version", event.version),
            ("child_execution_id", event.child_id),
        ):
            if value is not None:
                details[key] = value
        return cls(
            event_id=event_id,
            event_type=event.t,
            sub_type=event.st,
            id=event.id,
            name=event.name,
            parent_id=event.parent,
            timestamp=datetime.fromtimestamp(event.ts, tz=UTC),
            details=details,
            raw=event,
        )

    def to_json(self) -> dict[str, Any]:
        """The AWS-shaped dict of this event (DESIGN.md section 3)."""
        ev = self.raw
        out: dict[str, Any] = {"EventType": ev.t}
        if ev.st is not None:
            out["SubType"] = ev.st
        out["EventId"] = self.event_id
        if ev.id is not None:
            out["Id"] = ev.id
        if ev.name is not None:
            out["Name"] = ev.name
        if ev.parent is not None:
            out["ParentId"] = ev.parent
        out["EventTimestamp"] = format_timestamp(ev.ts)
        out[f"{ev.t}Details"] = _details_json(ev)
        return out


def _details_json(ev: Event) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if ev.input is not None:
        d["Input"] = {"Payload": _payload_text(ev.input), "Truncated": False}
    if ev.t == EventType.CHAINED_INVOKE_STARTED:
        d["FunctionName"] = ev.function_name
        d["ExecutedVersion"] = ev.version or "$LATEST"
        d["DurableExecutionArn"] = ev.child_id
    if ev.result is not None:
        d["Result"] = {"Payload": _payload_text(ev.result), "Truncated": False}
    if ev.error is not None:
        d["Error"] = _error_payload(ev.error)
    if ev.duration is not None:
        d["Duration"] = _seconds(ev.duration)
    if ev.until is not None:
        d["ScheduledEndTimestamp"] = format_timestamp(ev.until)
    if ev.t == EventType.CALLBACK_STARTED:
        d["CallbackId"] = ev.callback_id
        if ev.timeout is not None:
            d["Timeout"] = _seconds(ev.timeout)
        if ev.heartbeat_timeout is not None:
            d["HeartbeatTimeout"] = _seconds(ev.heartbeat_timeout)
    if ev.attempt is not None and ev.t != EventType.STEP_STARTED:
        retry: dict[str, Any] = {"CurrentAttempt": ev.attempt}
        if ev.next_delay is not None:
            retry["NextAttemptDelaySeconds"] = _seconds(ev.next_delay)
        d["RetryDetails"] = retry
    return d


def history_to_json(events: list[HistoryEvent]) -> dict[str, Any]:
    """``{"Events": [...]}`` as ``durable history ID --json`` prints it."""
    return {"Events": [event.to_json() for event in events]}
