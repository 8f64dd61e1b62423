"""Histories read back: what ``durable history ID --json`` printed, turned into stored events.

The exported shape (DESIGN.md section 3) carries everything replay decides on: operation
ids, types, sub types, names and parents; results and errors (as JSON text, re-encoded here
with msgpack as the engine stores them); step attempts and retry delays (``RetryDetails``);
a wait's due time (``ScheduledEndTimestamp``); callback ids and timeouts
(``CallbackStarted``); an invoke's child id and workflow (``ChainedInvokeStarted``). What it
does not carry is not needed to replay: the attempt number of a ``StepStarted`` follows from
the order of events, and an invoke's internal callback id is only used by a live worker.
Timestamps are exported to the millisecond, so ``ctx.now()`` replays to the millisecond.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from durable.events import Event, EventType, HistoryEvent, SubType
from durable.types import ErrorInfo

__all__ = ["FINAL_EVENTS", "HistorySource", "read_history"]

HistorySource = (
    str | bytes | os.PathLike[str] | Mapping[str, Any] | Sequence[HistoryEvent | Mapping[str, Any]]
)
"""A history: JSON text (``str``/``bytes``), a JSON file (a path), the ``{"Events": [...]}``
dict, its ``Events`` list, or the ``HistoryEvent`` list ``engine.history`` returns."""

FINAL_EVENTS = frozenset(
    {
        EventType.EXECUTION_SUCCEEDED,
        EventType.EXECUTION_FAILED,
        EventType.EXECUTION_STOPPED,
        EventType.EXECUTION_TIMED_OUT,
    }
)
_EXECUTION_EVENTS = FINAL_EVENTS | {EventType.EXECUTION_STARTED, EventType.INVOCATION_COMPLETED}
_EVENT_TYPES = {e.value for e in EventType}
_SUB_TYPES = {s.value for s in SubType}
_PREFIX = "not a durable history"


class _Payload(msgspec.Struct):
    Payload: str | None = None
    Truncated: bool = False


class _ErrorFields(msgspec.Struct):
    ErrorType: str
    ErrorMessage: str = ""
    StackTrace: list[str] = msgspec.field(default_factory=list)


class _ErrorPayload(msgspec.Struct):
    Payload: _ErrorFields
    Truncated: bool = False


class _Retry(msgspec.Struct):
    CurrentAttempt: int | None = None
    NextAttemptDelaySeconds: float | None = None


class _Details(msgspec.Struct):
    Input: _Payload | None = None
    Result: _Payload | None = None
    Error: _ErrorPayload | None = None
    Duration: float | None = None
    ScheduledEndTimestamp: str | None = None
    CallbackId: str | None = None
    Timeout: float | None = None
    HeartbeatTimeout: float | None = None
    RetryDetails: _Retry | None = None
    FunctionName: str | None = None
    ExecutedVersion: str | None = None
    DurableExecutionArn: str | None = None


class _Envelope(msgspec.Struct):
    EventType: str
    EventTimestamp: str
    EventId: int | None = None
    Id: str | None = None
    Name: str | None = None
    ParentId: str | None = None
    SubType: str | None = None


def read_history(source: HistorySource) -> list[Event]:
    """The stored events of a history given in any accepted shape (see ``HistorySource``).

    Raises:
        ValueError: it is not a history: not JSON, the wrong shape, an unknown event type,
            a missing or mistyped field. The message starts with "not a durable history"
            and names the event and the field.
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{_PREFIX}: cannot read {str(path)!r}: {exc}") from None
    if isinstance(source, str | bytes):
        try:
            source = json.loads(source)
        except ValueError as exc:
            raise ValueError(f"{_PREFIX}: the text is not JSON ({exc})") from None
    if isinstance(source, Mapping):
        if "Events" not in source:
            keys = ", ".join(repr(k) for k in list(source)[:5]) or "none"
            raise ValueError(f"{_PREFIX}: expected a dict with an 'Events' list (keys: {keys})")
        source = source["Events"]
        if not isinstance(source, list):
            raise ValueError(f"{_PREFIX}: 'Events' is a {type(source).__name__}, not a list")
    if not isinstance(source, Sequence) or isinstance(source, str | bytes):
        raise ValueError(
            f"{_PREFIX}: expected JSON text, a path, a {{'Events': [...]}} dict or a list of "
            f"events, got {type(source).__name__}"
        )
    if not source:
        raise ValueError(f"{_PREFIX}: it has no events")
    events = [_event(i, item) for i, item in enumerate(source, start=1)]
    _check_order(events)
    return events


def _event(number: int, item: Any) -> Event:
    if isinstance(item, HistoryEvent):
        return item.raw
    if not isinstance(item, Mapping):
        raise ValueError(
            f"{_PREFIX}: event {number} is a {type(item).__name__}, not an event object"
        )
    where = f"event {number}"
    try:
        head = msgspec.convert(item, _Envelope)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{_PREFIX}: {where}: {exc}") from None
    kind = head.EventType
    where = f"event {number} ({kind})"
    if kind not in _EVENT_TYPES:
        raise ValueError(
            f"{_PREFIX}: {where} has an unknown EventType {kind!r} "
            f"(known: {', '.join(sorted(_EVENT_TYPES))})"
        )
    if head.SubType is not None and head.SubType not in _SUB_TYPES:
        raise ValueError(f"{_PREFIX}: {where} has an unknown SubType {head.SubType!r}")
    if kind not in _EXECUTION_EVENTS and not head.Id:
        raise ValueError(f"{_PREFIX}: {where} is an operation event without an 'Id'")
    raw_details = item.get(f"{kind}Details", {})
    try:
        details = msgspec.convert(raw_details, _Details)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{_PREFIX}: {where}: {kind}Details: {exc}") from None
    retry = details.RetryDetails or _Retry()
    return Event(
        t=kind,
        ts=_timestamp(head.EventTimestamp, f"{where}: EventTimestamp"),
        id=head.Id,
        st=head.SubType,
        name=head.Name,
        parent=head.ParentId,
        result=_payload(details.Result, f"{where}: Result"),
        input=_payload(details.Input, f"{where}: Input"),
        error=_error(details.Error, f"{where}: Error"),
        attempt=retry.CurrentAttempt,
        next_delay=retry.NextAttemptDelaySeconds,
        duration=details.Duration,
        until=(
            None
            if details.ScheduledEndTimestamp is None
            else _timestamp(details.ScheduledEndTimestamp, f"{where}: ScheduledEndTimestamp")
        ),
        callback_id=details.CallbackId,
        timeout=details.Timeout,
        heartbeat_timeout=details.HeartbeatTimeout,
        function_name=details.FunctionName,
        version=details.ExecutedVersion,
        child_id=details.DurableExecutionArn,
    )


def _timestamp(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_PREFIX}: {where} {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _payload(payload: _Payload | None, where: str) -> bytes | None:
    if payload is None or payload.Payload is None:
        return None
    if payload.Truncated:
        raise ValueError(f"{_PREFIX}: {where} is truncated, so it cannot be replayed")
    try:
        value = json.loads(payload.Payload)
    except ValueError as exc:
        raise ValueError(f"{_PREFIX}: {where}: the Payload is not JSON text ({exc})") from None
    return msgspec.msgpack.encode(value)


def _error(payload: _ErrorPayload | None, where: str) -> ErrorInfo | None:
    if payload is None:
        return None
    fields = payload.Payload
    return ErrorInfo(type=fields.ErrorType, message=fields.ErrorMessage, stack=fields.StackTrace)


def _check_order(events: list[Event]) -> None:
    if events[0].t != EventType.EXECUTION_STARTED:
        raise ValueError(f"{_PREFIX}: it must start with ExecutionStarted, not {events[0].t}")
    for number, event in enumerate(events[1:], start=2):
        if event.t == EventType.EXECUTION_STARTED:
            raise ValueError(f"{_PREFIX}: event {number} is a second ExecutionStarted")
        if event.t in FINAL_EVENTS and number != len(events):
            raise ValueError(
                f"{_PREFIX}: event {number} ({event.t}) ends the execution, but "
                f"{len(events) - number} event(s) follow it"
            )
