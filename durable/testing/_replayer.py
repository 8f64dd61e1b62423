"""The replay checker: recorded histories against the current workflow code.

Like Temporal's ``Replayer``: before deploying a change, replay the histories of real
executions (``durable history ID --json``, or ``engine.history``) against the new code and
learn whether it would still reproduce them. The history is loaded into a throw-away
in-memory store and driven by the engine's own replay driver, so the checker decides exactly
as a worker would; the one difference is that no step, condition check or callback
submitter runs for real: where the code asks to run one, the replay stops there.

It reports (as :class:`~durable.errors.NonDeterministicError`, naming the operation, its
position and id, and both versions):

- an operation whose type, sub type, name or parent differs from the record at its id;
- an operation the recorded execution never made, when the execution ended by itself
  (``ExecutionSucceeded`` / ``ExecutionFailed``): for a still-running history, new
  operations after its end are where the execution would go on, and are listed instead;
- a recorded operation the code no longer makes (it returns earlier, or skips a call);
- a different end: the record succeeded and the code now fails (or the other way round),
  or the code no longer finishes; and a failure on replay of a history that had not failed
  (a recorded result that no longer decodes into the new annotation, for example).

Not checked: the values a finished workflow returns (a changed return value is not a
replay problem), and ``ctx.random()``/``ctx.uuid4()`` values, whose per-execution seed is
not part of an exported history (the checker uses seed 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from durable.clock import VirtualClock
from durable.context import DurableContext
from durable.errors import NonDeterministicError
from durable.events import Event, EventType, encode_event
from durable.invocation import Fiber, Invocation, Runtime
from durable.operation import Operation
from durable.replay import OpRecord, OpStatus, operation_id
from durable.serde import DEFAULT_MAX_PAYLOAD, Serde
from durable.stores.base import ExecutionRow, Lease
from durable.stores.memory import MemoryStore
from durable.testing._history import FINAL_EVENTS, HistorySource, read_history
from durable.types import ExecutionStatus
from durable.workflow import Workflow, WorkflowFn

__all__ = ["ReplayResult", "check_replay"]

_OWNER = "durable-testing:replay-checker"
_START_EVENTS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.WAIT_STARTED,
        EventType.CALLBACK_STARTED,
        EventType.CONTEXT_STARTED,
        EventType.CHAINED_INVOKE_STARTED,
    }
)
_STATUS_OF_FINAL: dict[str, ExecutionStatus] = {
    EventType.EXECUTION_SUCCEEDED: ExecutionStatus.SUCCEEDED,
    EventType.EXECUTION_FAILED: ExecutionStatus.FAILED,
    EventType.EXECUTION_STOPPED: ExecutionStatus.STOPPED,
    EventType.EXECUTION_TIMED_OUT: ExecutionStatus.TIMED_OUT,
}
_ID_IN_MESSAGE = re.compile(r"\(id ([0-9a-f]+)\)")
_MAX_COUNTER = 100_000


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A history that the current code replays without divergence.

    Attributes:
        execution_id: the recorded execution's id.
        workflow: the name of the workflow it was replayed against.
        status: the recorded status (``RUNNING`` for a history of an unfinished execution).
        events: how many events the history has.
        operations: how many recorded operations the code reached and matched.
        new_operations: what the code would do next after the end of an unfinished
            history (e.g. ``"step 'ship' (operation 4 of the workflow)"``); empty when the
            history ended.
    """

    execution_id: str
    workflow: str
    status: ExecutionStatus
    events: int
    operations: int
    new_operations: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (
            f"execution {self.execution_id!r} ({self.status}, {self.events} events) replays "
            f"against workflow {self.workflow!r}: {self.operations} operations match"
        )
        if self.new_operations:
            text += f"; it would go on with {', '.join(self.new_operations)}"
        return text


async def check_replay(
    workflow: Workflow[Any] | WorkflowFn[Any],
    history: HistorySource,
    *,
    workflows: Iterable[Workflow[Any]] = (),
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> ReplayResult:
    """Replay a recorded history against the current code of ``workflow``.

    No step, condition check or callback submitter runs: recorded outcomes are replayed,
    and the replay stops where the code would need real work.

    Args:
        workflow: the workflow (what ``@engine.workflow`` returned, or the bare ``async
            def``) whose code to check.
        history: ``durable history ID --json`` output (its text, a path to it, or the
            parsed ``{"Events": [...]}`` dict) or the list ``engine.history`` returns.
        workflows: other workflows the code invokes (``ctx.invoke``); invoked children
            never run here, so an unknown name only needs to be in the history.
        max_payload: the payload limit of the engine that recorded it.

    Returns:
        What was replayed (see :class:`ReplayResult`).

    Raises:
        NonDeterministicError: the code does not reproduce the history (see the module
            documentation for what is checked); the message names the operation.
        ValueError: ``history`` is not a history.

    Example::

        result = await check_replay(place_order, Path("prod-order-17.json"))
        print(result)   # ... replays against workflow 'place_order': 9 operations match
    """
    events = read_history(history)
    wf = workflow if isinstance(workflow, Workflow) else Workflow(workflow)
    final = events[-1] if events[-1].t in FINAL_EVENTS else None
    recorded_status = ExecutionStatus.RUNNING if final is None else _STATUS_OF_FINAL[final.t]
    body = events[:-1] if final is not None else events
    started = events[0]
    execution_id = started.id or "replayed-execution"
    registry = {w.name: w for w in workflows}
    # a copy without a timeout: an old history must not time out before it is replayed
    registry[wf.name] = Workflow(wf.fn, name=wf.name, version=wf.version)
    inv = await _replay(
        execution_id,
        registry,
        wf.name,
        started,
        body,
        max_payload=max_payload,
        strict=recorded_status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED),
    )
    context = f"replaying execution {execution_id!r} against workflow {wf.name!r}"
    _verdict(inv, events, recorded_status, context)
    return ReplayResult(
        execution_id=execution_id,
        workflow=wf.name,
        status=recorded_status,
        events=len(events),
        operations=len(inv.reached()),
        new_operations=tuple(inv.new_operations),
    )


async def _replay(
    execution_id: str,
    registry: dict[str, Workflow[Any]],
    name: str,
    started: Event,
    body: list[Event],
    *,
    max_payload: int,
    strict: bool,
) -> _ReplayInvocation:
    store = MemoryStore()
    await store.open()
    last = body[-1].ts
    serde = Serde(max_payload)
    row = ExecutionRow(
        execution_id=execution_id,
        workflow=name,
        status=ExecutionStatus.RUNNING.value,
        input=started.input if started.input is not None else serde.encode(None, what="input"),
        created_at=started.ts,
        updated_at=last,
        seed=0,
        lease_owner=_OWNER,
        lease_epoch=1,
        lease_expires=math.inf,
        wake_at=math.inf,
    )
    encoded = [encode_event(event) for event in body]
    stored, _ = await store.create_execution(row, encoded)
    rt = Runtime(
        store=store,
        serde=serde,
        clock=VirtualClock(start=last),
        owner=_OWNER,
        lease_time=math.inf,
        logger=_NullLogger(),
        workflows=_Registry(registry),
        on_finished=lambda *_: None,
    )
    inv = _ReplayInvocation(rt, Lease(execution_id, _OWNER, 1), stored, encoded, strict=strict)
    await inv.run()
    return inv


def _verdict(
    inv: _ReplayInvocation, events: list[Event], recorded: ExecutionStatus, context: str
) -> None:
    """Raise NonDeterministicError unless the replay reproduced the history."""
    end = next((e for e in reversed(inv.new_events) if e.t in FINAL_EVENTS), None)
    if end is not None and end.error is not None and end.error.type == "NonDeterministicError":
        raise NonDeterministicError(f"{context}: {_annotate(end.error.message, events)}")
    strict = recorded in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED)
    ended_at = f"{events[-1].t} at event {len(events)}"
    if end is None and strict:
        waiting = ", ".join(inv.new_operations) or "something the history does not record"
        raise NonDeterministicError(
            f"{context}: non-deterministic workflow: the recorded execution ended "
            f"({ended_at}), but the current code does not finish on replay: it still waits "
            f"for {waiting}"
        )
    if end is not None:
        now = _STATUS_OF_FINAL[end.t]
        how = f"{now}" + (f" with {end.error.type}: {end.error.message}" if end.error else "")
        if strict and now is not recorded:
            raise NonDeterministicError(
                f"{context}: non-deterministic workflow: the recorded execution {recorded} "
                f"({ended_at}), but on replay the current code ends {how}"
            )
        if not strict and now is not ExecutionStatus.SUCCEEDED:
            raise NonDeterministicError(
                f"{context}: the recorded execution had not failed ({recorded}, last event "
                f"{events[-1].t} at event {len(events)}), but on replay the current code ends "
                f"{how}"
            )
    missed = inv.unreached()
    if missed:
        record = missed[0]
        raise NonDeterministicError(
            f"{context}: non-deterministic workflow: {_position(record.id, record.parent)} "
            f"(id {record.id}) was recorded as {_label(record.sub_type or record.kind)} "
            f"{_named(record.name)} (history event {_first_event(record.id, events)}), but the "
            "current code no longer makes that call"
            + (
                f" ({len(missed) - 1} more recorded operations are missed)"
                if len(missed) > 1
                else ""
            )
        )


def _annotate(message: str, events: list[Event]) -> str:
    match = _ID_IN_MESSAGE.search(message)
    if match is None:
        return message
    number = _first_event(match.group(1), events)
    if number is None:
        return message
    return f"{message} [recorded at history event {number}: {events[number - 1].t}]"


def _first_event(op_id: str, events: list[Event]) -> int | None:
    return next((i for i, e in enumerate(events, start=1) if e.id == op_id), None)


def _position(op_id: str, parent: str | None) -> str:
    """``operation 3 of the workflow`` for an id (ids are hashes of parent and counter)."""
    where = "the workflow" if parent is None else f"context {parent}"
    for counter in range(1, _MAX_COUNTER):
        if operation_id(parent, counter) == op_id:
            return f"operation {counter} of {where}"
    return f"an operation of {where}"


_LABELS = {
    "Step": "a step",
    "WaitForCondition": "a condition poll",
    "Wait": "a wait",
    "Callback": "a callback",
    "Context": "a child context",
    "RunInChildContext": "a child context",
    "WaitForCallback": "a wait_for_callback context",
    "Map": "a map",
    "MapIteration": "a map item",
    "Parallel": "a parallel",
    "ParallelBranch": "a parallel branch",
    "ChainedInvoke": "an invoke",
}


def _label(kind: str) -> str:
    return _LABELS.get(kind, f"a {kind or 'operation'}")


def _named(name: str | None) -> str:
    return f"named {name!r}" if name is not None else "without a name"


class _ReplayInvocation(Invocation):
    """The engine's driver, with real work replaced by a note of what it would have been."""

    def __init__(
        self, rt: Runtime, lease: Lease, row: ExecutionRow, events: list[bytes], *, strict: bool
    ) -> None:
        super().__init__(rt, lease, row, events)
        self.recorded: dict[str, OpRecord] = dict(self.state.ops)
        self._seen = _Seen(self.state.ops)
        self.state.ops = self._seen
        self.strict = strict
        self.new_events: list[Event] = []
        self.next_calls: dict[str, str] = {}
        """Operation id -> what the code would do there that the history does not record."""
        self.spawned: set[str] = set()
        self.running_at_end = {
            op_id for op_id, record in self.recorded.items() if record.attempt_open
        }
        """Steps with an attempt running when the history was exported (no outcome yet)."""

    @property
    def new_operations(self) -> list[str]:
        """What the code would do beyond the history, in the order it asked."""
        return list(self.next_calls.values())

    def record(self, event: Event) -> OpRecord | None:
        """Keep what the replay records; a finished history gets no new operations."""
        if event.t in _START_EVENTS and event.id not in self.recorded:
            assert event.id is not None
            what = (
                f"{_label(event.st or '')} {_named(event.name)} "
                f"({_position(event.id, event.parent)}, id {event.id})"
            )
            if self.strict:
                raise NonDeterministicError(
                    f"non-deterministic workflow: the code now calls {what}, which the "
                    "recorded execution never called before it ended"
                )
            self.next_calls.setdefault(event.id, what)
        if (
            event.t == EventType.STEP_FAILED
            and event.id in self.running_at_end
            and event.error is not None
            and event.error.type == "StepInterruptedError"
        ):
            # An AT_MOST_ONCE attempt still running at the end of the history: a worker
            # counts it as interrupted only after a crash. Here it just never ends: its
            # fiber sleeps for good while the rest of the workflow replays.
            self.next_calls.setdefault(
                event.id, f"{_label(event.st or '')} {_named(event.name)} still running"
            )
            record = self.recorded[event.id]  # (the same object the state holds)
            record.attempt_open = False
            record.status = OpStatus.RETRY_PENDING
            record.next_attempt_at = math.inf
            return record
        self.new_events.append(event)
        return super().record(event)

    def start_task(
        self,
        fiber: Fiber,
        op: Operation[Any],
        work: Coroutine[Any, Any, Any],
        *,
        durable_first: bool = False,
    ) -> None:
        """Never run the work: note it (the fiber waits for good, and the replay ends)."""
        work.close()
        what = f"{_label(op.kind)} {_named(op.name)} ({op.position}, id {op.op_id}) to run"
        self.next_calls.setdefault(op.op_id, what)

    def spawn_child(
        self,
        parent: Fiber,
        op: Operation[Any],
        coro: Coroutine[Any, Any, Any],
        ctx: DurableContext,
    ) -> Fiber:
        """Note that this context's body runs again (its recorded operations must be met)."""
        self.spawned.add(op.op_id)
        return super().spawn_child(parent, op, coro, ctx)

    def reached(self) -> set[str]:
        """Recorded operations the code called."""
        return self._seen.seen & set(self.recorded)

    def unreached(self) -> list[OpRecord]:
        """Recorded operations of contexts that ran again, which the code did not call."""
        seen = self._seen.seen
        return [
            record
            for record in self.recorded.values()
            if (record.parent is None or record.parent in self.spawned) and record.id not in seen
        ]


class _Seen(dict[str, OpRecord]):
    """The replay state's operation records, noting which ones the code looked up."""

    def __init__(self, ops: Mapping[str, OpRecord]) -> None:
        super().__init__(ops)
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> OpRecord:
        self.seen.add(key)
        return super().__getitem__(key)


class _Registry(Mapping[str, Workflow[Any]]):
    """Workflows by name; any other name gets a stand-in (children never run here)."""

    def __init__(self, workflows: dict[str, Workflow[Any]]) -> None:
        self._workflows = workflows

    def __getitem__(self, name: str) -> Workflow[Any]:
        found = self._workflows.get(name)
        if found is None:
            found = self._workflows[name] = Workflow(_not_replayed, name=name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._workflows)

    def __len__(self) -> int:
        return len(self._workflows)


async def _not_replayed(ctx: DurableContext) -> None:
    raise RuntimeError("the replay checker never runs invoked child workflows")


class _NullLogger:
    """Replays log nothing (a workflow's own lines were logged when it ran)."""

    def bind(self, **_: Any) -> _NullLogger:
        return self

    def __getattr__(self, _: str) -> Callable[..., None]:
        return _ignore


def _ignore(*_: Any, **__: Any) -> None:
    return None
