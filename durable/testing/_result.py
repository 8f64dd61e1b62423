"""What a test asserts on: :class:`TestResult` and one small record per operation.

Everything here is read from the execution's history (``engine.history``), so a test sees
exactly what a production history would show: attempts, retry delays, callback ids,
results and errors, by operation name.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from durable.events import EventType, HistoryEvent, history_to_json
from durable.types import ErrorInfo, ExecutionStatus

__all__ = [
    "CallbackInfo",
    "ContextInfo",
    "InvokeInfo",
    "OperationInfo",
    "OperationStatus",
    "StepAttempt",
    "StepInfo",
    "TestResult",
    "WaitInfo",
]

T = TypeVar("T")
InfoT = TypeVar("InfoT", bound="OperationInfo")


class OperationStatus(enum.StrEnum):
    """Where one operation stands in the history (compares equal to its string value)."""

    STARTED = "STARTED"
    """Started, no outcome yet: a running attempt, a pending wait, callback, context or invoke."""
    RETRY_PENDING = "RETRY_PENDING"
    """A step attempt failed (or a condition check asked to go on); the next one is due later."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    """A callback that expired (``Callback.Timeout`` or ``Callback.Heartbeat``)."""
    CANCELLED = "CANCELLED"
    """A wait that was cancelled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationInfo:
    """What every operation record has.

    Attributes:
        id: the operation id (deterministic: parent context + call order).
        name: the recorded name (``None`` when the call gave none).
        sub_type: the AWS sub type (``Step``, ``WaitForCondition``, ``Map``, ...).
        parent_id: the enclosing context's operation id (``None`` at the top level).
        status: see :class:`OperationStatus`.
        started_at: when its first event was recorded (virtual time under the runner).
        ended_at: when its outcome was recorded, or ``None``.
        events: its history events, in order.
    """

    id: str
    name: str | None
    sub_type: str | None
    parent_id: str | None
    status: OperationStatus
    started_at: datetime
    ended_at: datetime | None
    events: tuple[HistoryEvent, ...] = field(repr=False)

    @property
    def done(self) -> bool:
        """Whether it has its final outcome (succeeded, failed, timed out or cancelled)."""
        return self.status not in (OperationStatus.STARTED, OperationStatus.RETRY_PENDING)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepAttempt:
    """One attempt of a step (or one check of ``wait_for_condition``).

    Attributes:
        attempt: 1 for the first attempt.
        succeeded: ``True``/``False`` once it ended, ``None`` while it runs (or if its
            worker died before it ended).
        result: what it returned (plain values, as decoded from the history).
        error: why it failed.
        next_attempt_delay: seconds until the next attempt (a failure that was retried, or
            a condition check that asked to go on); ``None`` otherwise.
        started_at: when its ``StepStarted`` was recorded (``None`` for an attempt re-run
            after a crash without a new ``StepStarted``).
        ended_at: when its outcome was recorded.
    """

    attempt: int
    succeeded: bool | None
    result: Any
    error: ErrorInfo | None
    next_attempt_delay: float | None
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepInfo(OperationInfo):
    """A ``ctx.step`` (or a ``wait_for_condition``, sub type ``WaitForCondition``).

    Attributes:
        attempts: every attempt, in order (``len(step.attempts)`` is how many ran).
        result: the final result (the last state for a condition), or ``None``.
        error: the final error, when the step failed for good.
    """

    attempts: tuple[StepAttempt, ...]
    result: Any
    error: ErrorInfo | None

    @property
    def attempt_count(self) -> int:
        """How many attempts were started."""
        return len(self.attempts)

    @property
    def errors(self) -> list[ErrorInfo]:
        """The error of each failed attempt, in order."""
        return [a.error for a in self.attempts if a.error is not None]

    @property
    def retry_delays(self) -> list[float]:
        """The delay recorded after each attempt that was followed by another, in seconds."""
        return [a.next_attempt_delay for a in self.attempts if a.next_attempt_delay is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitInfo(OperationInfo):
    """A ``ctx.wait``.

    Attributes:
        duration: the wait's duration in seconds.
        scheduled_end: when it is (or was) due.
    """

    duration: float | None
    scheduled_end: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackInfo(OperationInfo):
    """A callback (``ctx.create_callback``, or the one inside ``wait_for_callback``).

    Attributes:
        callback_id: the id to answer it with.
        timeout: seconds before it times out (``None``: no limit).
        heartbeat_timeout: seconds without a heartbeat before it times out.
        result: the answer of a succeeded callback.
        error: the failure (the sender's type and message, or ``Callback.Timeout`` /
            ``Callback.Heartbeat``).
    """

    callback_id: str | None
    timeout: float | None
    heartbeat_timeout: float | None
    result: Any
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextInfo(OperationInfo):
    """A child context: ``run_in_child_context``, ``parallel``/``map`` and their branches or
    items, or the context ``wait_for_callback`` records (see :attr:`sub_type`).

    Attributes:
        result: its checkpointed result (a batch's result as plain values), or ``None``.
        error: the error that escaped it.
    """

    result: Any
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeInfo(OperationInfo):
    """A ``ctx.invoke`` of another workflow.

    Attributes:
        function_name: the invoked workflow's registered name.
        child_execution_id: the child execution's id (inspect it with ``runner.inspect``).
        input: the payload it was started with.
        result: the child's result, once it succeeded.
        error: the child's error (or ``Invoke.Timeout``).
    """

    function_name: str | None
    child_execution_id: str | None
    input: Any
    result: Any
    error: ErrorInfo | None


_KIND_OF_EVENT = {
    "Step": "step",
    "Wait": "wait",
    "Callback": "callback",
    "Context": "context",
    "ChainedInvoke": "invoke",
}
_OUTCOMES = {
    EventType.STEP_SUCCEEDED: OperationStatus.SUCCEEDED,
    EventType.STEP_FAILED: OperationStatus.FAILED,
    EventType.WAIT_SUCCEEDED: OperationStatus.SUCCEEDED,
    EventType.WAIT_CANCELLED: OperationStatus.CANCELLED,
    EventType.CALLBACK_SUCCEEDED: OperationStatus.SUCCEEDED,
    EventType.CALLBACK_FAILED: OperationStatus.FAILED,
    EventType.CALLBACK_TIMED_OUT: OperationStatus.TIMED_OUT,
    EventType.CONTEXT_SUCCEEDED: OperationStatus.SUCCEEDED,
    EventType.CONTEXT_FAILED: OperationStatus.FAILED,
    EventType.CHAINED_INVOKE_SUCCEEDED: OperationStatus.SUCCEEDED,
    EventType.CHAINED_INVOKE_FAILED: OperationStatus.FAILED,
}


def _kind(event: HistoryEvent) -> str | None:
    for prefix, kind in _KIND_OF_EVENT.items():
        if event.event_type.startswith(prefix) and event.id is not None:
            return kind
    return None


def _step(first: HistoryEvent, events: list[HistoryEvent]) -> StepInfo:
    attempts: dict[int, dict[str, Any]] = {}
    status = OperationStatus.STARTED
    for event in events:
        details = event.details
        if event.event_type == EventType.STEP_STARTED:
            number = details.get("attempt", len(attempts) + 1)
            attempts[number] = {"started_at": event.timestamp}
            status = OperationStatus.STARTED
            continue
        number = details.get("attempt", max(attempts, default=1))
        entry = attempts.setdefault(number, {"started_at": None})
        entry["ended_at"] = event.timestamp
        entry["next_attempt_delay"] = details.get("next_attempt_delay")
        retried = entry["next_attempt_delay"] is not None
        if event.event_type == EventType.STEP_SUCCEEDED:
            entry["succeeded"], entry["result"] = True, details.get("result")
            status = OperationStatus.RETRY_PENDING if retried else OperationStatus.SUCCEEDED
        else:
            entry["succeeded"], entry["error"] = False, details.get("error")
            status = OperationStatus.RETRY_PENDING if retried else OperationStatus.FAILED
    done = [
        StepAttempt(
            attempt=number,
            succeeded=entry.get("succeeded"),
            result=entry.get("result"),
            error=entry.get("error"),
            next_attempt_delay=entry.get("next_attempt_delay"),
            started_at=entry["started_at"],
            ended_at=entry.get("ended_at"),
        )
        for number, entry in sorted(attempts.items())
    ]
    last = done[-1] if done else None
    return StepInfo(
        **_common(first, events, status),
        attempts=tuple(done),
        result=last.result if last is not None and last.succeeded else None,
        error=last.error if status is OperationStatus.FAILED and last is not None else None,
    )


def _common(
    first: HistoryEvent, events: list[HistoryEvent], status: OperationStatus
) -> dict[str, Any]:
    outcome = next((e for e in reversed(events) if e.event_type in _OUTCOMES), None)
    assert first.id is not None
    return {
        "id": first.id,
        "name": first.name,
        "sub_type": first.sub_type,
        "parent_id": first.parent_id,
        "status": status,
        "started_at": first.timestamp,
        "ended_at": outcome.timestamp if outcome is not None else None,
        "events": tuple(events),
    }


def _outcome(events: list[HistoryEvent]) -> tuple[OperationStatus, Any, ErrorInfo | None]:
    for event in reversed(events):
        status = _OUTCOMES.get(event.event_type)  # type: ignore[call-overload]
        if status is not None:
            return status, event.details.get("result"), event.details.get("error")
    return OperationStatus.STARTED, None, None


def _detail(events: list[HistoryEvent], key: str) -> Any:
    return next((e.details[key] for e in events if key in e.details), None)


def _build(kind: str, events: list[HistoryEvent]) -> OperationInfo:
    first = events[0]
    if kind == "step":
        return _step(first, events)
    status, result, error = _outcome(events)
    common = _common(first, events, status)
    if kind == "wait":
        return WaitInfo(
            **common,
            duration=_detail(events, "duration"),
            scheduled_end=_moment(_detail(events, "scheduled_end")),
        )
    if kind == "callback":
        return CallbackInfo(
            **common,
            callback_id=_detail(events, "callback_id"),
            timeout=_detail(events, "timeout"),
            heartbeat_timeout=_detail(events, "heartbeat_timeout"),
            result=result,
            error=error,
        )
    if kind == "invoke":
        return InvokeInfo(
            **common,
            function_name=_detail(events, "function_name"),
            child_execution_id=_detail(events, "child_execution_id"),
            input=_detail(events, "input"),
            result=result,
            error=error,
        )
    return ContextInfo(**common, result=result, error=error)


def _moment(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def operations_of(history: Iterable[HistoryEvent]) -> list[tuple[str, OperationInfo]]:
    """Group a history by operation, in the order operations first appear."""
    grouped: dict[str, tuple[str, list[HistoryEvent]]] = {}
    for event in history:
        kind = _kind(event)
        if kind is None or event.id is None:
            continue
        grouped.setdefault(event.id, (kind, []))[1].append(event)
    return [(kind, _build(kind, events)) for kind, events in grouped.values()]


@dataclass(frozen=True, slots=True)
class TestResult(Generic[T]):
    """An execution as a test sees it: its outcome and its operations, by name.

    ``runner.run`` returns one once the execution has ended (it never raises for a failed
    workflow: look at :attr:`status` and :attr:`error`); ``runner.inspect`` returns one at
    any time.

    Attributes:
        execution_id: the execution's id.
        workflow: the workflow's registered name.
        status: ``SUCCEEDED``, ``FAILED``, ``STOPPED``, ``TIMED_OUT`` or (``inspect``)
            ``RUNNING``.
        result: the workflow's return value (decoded with its return annotation), or
            ``None``.
        error: why it failed (type and message verbatim), or ``None``.
        history: every history event, as ``engine.history`` returns them.

    Example::

        result = await runner.run(place_order, {"id": "o-1"})
        assert result.status == "SUCCEEDED"
        charge = result.get_step("process-payment")
        assert charge.attempt_count == 2 and charge.errors[0].type == "TimeoutError"
    """

    __test__ = False  # not a pytest test class, whatever its name says

    execution_id: str
    workflow: str
    status: ExecutionStatus
    result: T | None
    error: ErrorInfo | None
    history: list[HistoryEvent]
    _operations: list[tuple[str, OperationInfo]] = field(default_factory=list, repr=False)

    @classmethod
    def build(
        cls,
        *,
        execution_id: str,
        workflow: str,
        status: ExecutionStatus,
        result: T | None,
        error: ErrorInfo | None,
        history: list[HistoryEvent],
    ) -> TestResult[T]:
        """A result for this history (operations are grouped once, here)."""
        return cls(execution_id, workflow, status, result, error, history, operations_of(history))

    @property
    def operations(self) -> list[OperationInfo]:
        """Every operation, in the order each first appears in the history."""
        return [info for _, info in self._operations]

    def history_json(self) -> dict[str, Any]:
        """The history as ``durable history ID --json`` prints it (``{"Events": [...]}``);
        what :func:`~durable.testing.check_replay` reads."""
        return history_to_json(self.history)

    def get_step(self, name: str, index: int = 0) -> StepInfo:
        """The step (or condition poll) named ``name``.

        Args:
            name: the recorded name (a step's name defaults to its function's ``__name__``).
            index: which one, when several operations have this name (in the order they
                started, from 0).

        Raises:
            LookupError: no such step; the message lists the steps that exist.
        """
        return self._get("step", StepInfo, name, index)

    def get_wait(self, name: str, index: int = 0) -> WaitInfo:
        """The ``ctx.wait`` named ``name`` (see :meth:`get_step` for ``index`` and errors)."""
        return self._get("wait", WaitInfo, name, index)

    def get_callback(self, name: str, index: int = 0) -> CallbackInfo:
        """The callback named ``name`` (a ``wait_for_callback`` gives its callback its name).

        See :meth:`get_step` for ``index`` and errors.
        """
        return self._get("callback", CallbackInfo, name, index)

    def get_context(self, name: str, index: int = 0) -> ContextInfo:
        """The child context, ``parallel``/``map`` (or branch, item) or ``wait_for_callback``
        context named ``name`` (see :meth:`get_step` for ``index`` and errors)."""
        return self._get("context", ContextInfo, name, index)

    def get_invoke(self, name: str, index: int = 0) -> InvokeInfo:
        """The ``ctx.invoke`` named ``name`` (see :meth:`get_step` for ``index`` and errors)."""
        return self._get("invoke", InvokeInfo, name, index)

    def _get(self, kind: str, cls: type[InfoT], name: str, index: int) -> InfoT:
        matches = [i for k, i in self._operations if k == kind and i.name == name]
        if index < len(matches):
            found = matches[index]
            assert isinstance(found, cls)
            return found
        raise LookupError(self._missing(kind, name, index, len(matches)))

    def _missing(self, kind: str, name: str, index: int, count: int) -> str:
        where = f"execution {self.execution_id!r}"
        if count:
            return (
                f"{where} has {count} {kind}(s) named {name!r}, so there is no index {index} "
                f"(indexes count from 0)"
            )
        names = _names(self._operations, lambda k: k == kind)
        message = f"{where} has no {kind} named {name!r}; its {kind}s: {names or 'none'}"
        others = sorted({k for k, i in self._operations if i.name == name and k != kind})
        if others:
            message += f" (there is a {' and a '.join(others)} named {name!r})"
        return message


def _names(operations: list[tuple[str, OperationInfo]], keep: Callable[[str], bool]) -> str:
    names = dict.fromkeys(repr(i.name) for k, i in operations if keep(k) and i.name is not None)
    unnamed = sum(1 for k, i in operations if keep(k) and i.name is None)
    listed = ", ".join(names)
    if unnamed:
        listed += f"{', ' if listed else ''}{unnamed} without a name"
    return listed
