"""The pure replay core: a history folded into per-operation records.

No I/O, no clock, no event loop. :class:`ReplayState` is built from the stored events and
kept up to date with every new event the driver records, so "what do we know about
operation X" has one answer whether X was recorded in an earlier invocation or a moment ago.
The per-primitive decisions (``step.decide`` and friends) are pure functions of a record.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator

import msgspec

from durable.errors import NonDeterministicError
from durable.events import Event, EventType, iter_events
from durable.types import ErrorInfo

_blake2b = hashlib.blake2b

__all__ = [
    "OpRecord",
    "OpStatus",
    "ReplayState",
    "OperationIds",
    "check_determinism",
    "operation_id",
]


def operation_id(parent_id: str | None, counter: int) -> str:
    """The id of the ``counter``-th operation (1-based) created in context ``parent_id``.

    It depends only on the parent and the call order, never on timing, so concurrent
    branches get the same ids on every replay.
    """
    return _blake2b(f"{parent_id or ''}:{counter}".encode(), digest_size=8).hexdigest()


class OperationIds:
    """:func:`operation_id` for one parent, a third cheaper per call: the hash state of the
    ``"<parent>:"`` prefix is made once and copied (building a blake2b costs more than the
    rest of a replayed step's bookkeeping)."""

    __slots__ = ("prefix",)

    def __init__(self, parent_id: str | None) -> None:
        self.prefix = _blake2b(f"{parent_id or ''}:".encode(), digest_size=8)
        """The hash state after the prefix: copy it, never update it (``ctx.step`` inlines
        :meth:`__call__` with it)."""

    def __call__(self, counter: int) -> str:
        """The id of the ``counter``-th operation of this parent."""
        state = self.prefix.copy()
        state.update(b"%d" % counter)
        return state.hexdigest()


class OpStatus(enum.Enum):
    """Where an operation stands in the history."""

    STARTED = "STARTED"
    """Started, no outcome yet (a running attempt, a pending wait/callback/child)."""
    RETRY_PENDING = "RETRY_PENDING"
    """An attempt failed (or a condition check said continue); the next one is due later."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


_KIND = {
    EventType.STEP_STARTED: "Step",
    EventType.STEP_SUCCEEDED: "Step",
    EventType.STEP_FAILED: "Step",
    EventType.WAIT_STARTED: "Wait",
    EventType.WAIT_SUCCEEDED: "Wait",
    EventType.WAIT_CANCELLED: "Wait",
    EventType.CALLBACK_STARTED: "Callback",
    EventType.CALLBACK_SUCCEEDED: "Callback",
    EventType.CALLBACK_FAILED: "Callback",
    EventType.CALLBACK_TIMED_OUT: "Callback",
    EventType.CONTEXT_STARTED: "Context",
    EventType.CONTEXT_SUCCEEDED: "Context",
    EventType.CONTEXT_FAILED: "Context",
    EventType.CHAINED_INVOKE_STARTED: "ChainedInvoke",
    EventType.CHAINED_INVOKE_SUCCEEDED: "ChainedInvoke",
    EventType.CHAINED_INVOKE_FAILED: "ChainedInvoke",
}

_STEP_STARTED = EventType.STEP_STARTED.value
_STEP_SUCCEEDED = EventType.STEP_SUCCEEDED.value

_SUCCESS = frozenset(
    {
        EventType.STEP_SUCCEEDED,
        EventType.WAIT_SUCCEEDED,
        EventType.CALLBACK_SUCCEEDED,
        EventType.CONTEXT_SUCCEEDED,
        EventType.CHAINED_INVOKE_SUCCEEDED,
    }
)
_FAILURE = frozenset(
    {
        EventType.STEP_FAILED,
        EventType.WAIT_CANCELLED,
        EventType.CALLBACK_FAILED,
        EventType.CALLBACK_TIMED_OUT,
        EventType.CONTEXT_FAILED,
        EventType.CHAINED_INVOKE_FAILED,
    }
)


class OpRecord(msgspec.Struct, gc=False):
    """Everything the history says about one operation (a msgspec Struct: replay builds one
    per operation, so construction cost matters)."""

    id: str
    kind: str
    sub_type: str | None
    name: str | None
    parent: str | None
    status: OpStatus = OpStatus.STARTED
    attempt: int = 0
    attempt_open: bool = False
    result: bytes | None = None
    error: ErrorInfo | None = None
    next_attempt_at: float | None = None
    until: float | None = None
    started_ts: float = 0.0
    ended_ts: float = 0.0
    callback_id: str | None = None
    child_id: str | None = None
    recorded: bool = True
    """Whether its latest start was read from the history (False: made in this invocation)."""

    @property
    def done(self) -> bool:
        """Succeeded or failed for good."""
        status = self.status
        return status is OpStatus.SUCCEEDED or status is OpStatus.FAILED


def _describe(kind: str, sub_type: str | None, name: str | None) -> str:
    label = sub_type if sub_type and sub_type != kind else kind
    if kind != label:
        label = f"{kind} ({label})"
    return f"{label} named {name!r}" if name is not None else f"{label} without a name"


def check_determinism(
    record: OpRecord,
    *,
    kind: str,
    sub_type: str | None,
    name: str | None,
    parent: str | None,
    position: str,
) -> None:
    """Raise :class:`NonDeterministicError` when the call differs from the record.

    Args:
        position: a human description of where the call is (e.g. "operation 3 of the
            workflow"), put in the message with both versions.
    """
    if (record.kind, record.sub_type, record.name, record.parent) == (
        kind,
        sub_type,
        name,
        parent,
    ):
        return
    recorded = _describe(record.kind, record.sub_type, record.name)
    now = _describe(kind, sub_type, name)
    if record.parent != parent:
        recorded += f" in context {record.parent or 'root'}"
        now += f" in context {parent or 'root'}"
    raise NonDeterministicError(
        f"non-deterministic workflow: {position} (id {record.id}) was recorded as {recorded}, "
        f"but the code now calls {now}. Workflow code must make the same durable calls in "
        "the same order on every replay; version the workflow under a new name to change it."
    )


class ReplayState:
    """Per-operation records folded from a history, plus execution-level facts."""

    __slots__ = ("final", "finished", "inbox_ops", "input", "invocations", "ops", "started_ts")

    def __init__(self) -> None:
        self.ops: dict[str, OpRecord] = {}
        self.invocations = 0
        self.started_ts = 0.0
        self.input: bytes | None = None
        self.finished: str | None = None
        self.final: Event | None = None
        """The ``Execution*`` event that ended the execution, if any."""
        self.inbox_ops: list[str] = []
        """Ids of the callback and invoke operations (their outcomes come via the inbox)."""

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> ReplayState:
        """Fold a whole history."""
        state = cls()
        state._fold(iter(events))
        return state

    @classmethod
    def from_rows(cls, rows: Iterable[bytes]) -> ReplayState:
        """Decode and fold a stored history, one event at a time (a fifth faster than
        decoding the whole list first: each event is folded, then freed, while in cache)."""
        state = cls()
        state._fold(iter_events(rows))
        return state

    def _fold(self, events: Iterator[Event]) -> None:
        apply = self.apply
        ops = self.ops
        succeeded = OpStatus.SUCCEEDED
        event = next(events, None)
        while event is not None:
            t = event.t
            # The bulk of any history is steps that started and then succeeded, one event
            # right after the other: fold those inline, as one record made in its final
            # state (the same record apply() makes; apply() handles everything else).
            if t == _STEP_STARTED and event.id not in ops:
                op_id: str = event.id  # type: ignore[assignment]
                after = next(events, None)
                if (
                    after is not None
                    and after.t == _STEP_SUCCEEDED
                    and after.id == op_id
                    and after.next_delay is None
                ):
                    attempt = after.attempt if after.attempt is not None else event.attempt or 1
                    ops[op_id] = OpRecord(
                        op_id,
                        "Step",
                        event.st,
                        event.name,
                        event.parent,
                        succeeded,
                        attempt,
                        False,
                        after.result,
                        started_ts=event.ts,
                        ended_ts=after.ts,
                    )
                    event = next(events, None)
                    continue
                apply(event, recorded=True)
                event = after
                continue
            if t == _STEP_SUCCEEDED and event.next_delay is None:
                record = ops.get(event.id)  # type: ignore[arg-type]
                if record is not None and record.kind == "Step":
                    record.attempt_open = False
                    record.ended_ts = event.ts
                    record.result = event.result
                    record.status = succeeded
                    if event.attempt is not None:
                        record.attempt = event.attempt
                    event = next(events, None)
                    continue
            apply(event, recorded=True)
            event = next(events, None)

    def apply(self, event: Event, *, recorded: bool = False) -> OpRecord | None:
        """Fold one event in; returns the operation record it touched (if any)."""
        kind = _KIND.get(event.t)  # type: ignore[call-overload]
        if kind is None:
            self._apply_execution_event(event)
            return None
        assert event.id is not None, f"{event.t} event without an operation id"
        record = self.ops.get(event.id)
        if record is None:
            record = OpRecord(
                id=event.id,
                kind=kind,
                sub_type=event.st,
                name=event.name,
                parent=event.parent,
                started_ts=event.ts,
                recorded=recorded,
            )
            self.ops[event.id] = record
            if kind in ("Callback", "ChainedInvoke"):
                self.inbox_ops.append(event.id)
        t = event.t
        if t == _STEP_STARTED:
            record.status = OpStatus.STARTED
            record.attempt = event.attempt or record.attempt + 1
            record.attempt_open = True
            record.next_attempt_at = None
            record.recorded = recorded
        elif t in _SUCCESS:
            record.attempt_open = False
            record.ended_ts = event.ts
            record.result = event.result
            if event.next_delay is not None:  # a condition check that asked to continue
                record.status = OpStatus.RETRY_PENDING
                record.next_attempt_at = event.ts + event.next_delay
            else:
                record.status = OpStatus.SUCCEEDED
        elif t in _FAILURE:
            record.attempt_open = False
            record.ended_ts = event.ts
            record.error = event.error
            if event.next_delay is not None:
                record.status = OpStatus.RETRY_PENDING
                record.next_attempt_at = event.ts + event.next_delay
            else:
                record.status = OpStatus.FAILED
        if event.attempt is not None:
            record.attempt = event.attempt
        if event.until is not None:
            record.until = event.until
        if event.callback_id is not None:
            record.callback_id = event.callback_id
        if event.child_id is not None:
            record.child_id = event.child_id
        return record

    def _apply_execution_event(self, event: Event) -> None:
        if event.t == EventType.EXECUTION_STARTED:
            self.started_ts = event.ts
            self.input = event.input
        elif event.t == EventType.INVOCATION_COMPLETED:
            self.invocations += 1
        elif event.t in (
            EventType.EXECUTION_SUCCEEDED,
            EventType.EXECUTION_FAILED,
            EventType.EXECUTION_STOPPED,
            EventType.EXECUTION_TIMED_OUT,
        ):
            self.finished = event.t
            self.final = event
