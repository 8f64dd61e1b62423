"""Reading commands: ``list``, ``show`` and ``history``. None of them writes anything."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from durable.cli._common import (
    Col,
    Output,
    db_option,
    existing_db,
    format_duration,
    format_time,
    preview,
    run,
)
from durable.errors import DurableError
from durable.events import HistoryEvent, history_to_json
from durable.types import ErrorInfo, Execution, ExecutionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import RenderableType

    from durable.engine import Engine
    from durable.stores.base import CallbackRow, ExecutionRow

__all__ = ["register"]

_STATUS_STYLE = {
    "RUNNING": "yellow",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "STOPPED": "magenta",
    "TIMED_OUT": "red",
    "PENDING": "yellow",
    "RETRYING": "yellow",
    "POLLING": "yellow",
    "STARTED": "yellow",
    "CANCELLED": "magenta",
    "INTERRUPTED": "magenta",
    "UNFINISHED": "magenta",
}
_STATUSES = ", ".join(s.value for s in ExecutionStatus)


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _error_line(error: ErrorInfo | None, limit: int = 200) -> str:
    if error is None:
        return ""
    text = f"{error.type}: {error.message}" if error.message else error.type
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open(db: str) -> Engine:
    from durable.engine import Engine

    return Engine(existing_db(db), worker=False)


# -- list ------------------------------------------------------------------------------


def _execution_json(ex: Execution[Any]) -> dict[str, Any]:
    duration = (ex.ended_at - ex.created_at).total_seconds() if ex.ended_at else None
    return {
        "execution_id": ex.execution_id,
        "workflow": ex.workflow,
        "status": ex.status.value,
        "created_at": ex.created_at.isoformat(),
        "ended_at": ex.ended_at.isoformat() if ex.ended_at else None,
        "duration_seconds": duration,
        "parent_id": ex.parent_id,
        "error": None if ex.error is None else {"type": ex.error.type, "message": ex.error.message},
    }


def _print_list(executions: list[Execution[Any]]) -> None:
    out = Output()
    if not executions:
        out.print("no executions found")
        out.flush()
        return
    now = time.time()
    rows: list[list[RenderableType]] = []
    for ex in executions:
        started = ex.created_at.timestamp()
        if ex.ended_at is not None:
            took = format_duration(ex.ended_at.timestamp() - started)
        else:
            took = f"{format_duration(now - started)} so far" if now >= started else "-"
        rows.append(
            [
                ex.execution_id,
                ex.workflow,
                _status(ex.status.value),
                format_time(ex.created_at),
                took,
                ex.parent_id or "-",
                Text(_error_line(ex.error, 80), style="red"),
            ]
        )
    cols = [
        Col("execution id"),
        Col("workflow", flex=True),
        Col("status"),
        Col("started (UTC)"),
        Col("took"),
        Col("parent", flex=True, drop=2),
        Col("error", flex=True, drop=1),
    ]
    out.table(cols, rows)
    out.flush()


# -- history ---------------------------------------------------------------------------


def _short_preview(value: Any) -> str:
    return preview(value, 60)


def _due(value: Any) -> str:
    return format_time(value, ms=True)


_SUMMARY_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("attempt", "attempt", str),
    ("next_attempt_delay", "next in", format_duration),
    ("duration", "duration", format_duration),
    ("scheduled_end", "due", _due),
    ("callback_id", "callback", str),
    ("timeout", "timeout", format_duration),
    ("heartbeat_timeout", "heartbeat", format_duration),
    ("function_name", "workflow", str),
    ("child_execution_id", "child", str),
    ("input", "input", _short_preview),
    ("result", "result", _short_preview),
)
"""Detail key, its label in the summary, how its value is shown; in summary order."""


def _event_summary(event: HistoryEvent) -> str:
    """The facts of one event in a few words."""
    d = event.details
    parts = [
        f"{label} {show(d[key])}"
        for key, label, show in _SUMMARY_FIELDS
        # a chained invoke's callback is internal: its child id says more
        if key in d and not (key == "callback_id" and event.event_type == "ChainedInvokeStarted")
    ]
    if "error" in d:
        parts.append(_error_line(d["error"], 100))
    return ", ".join(parts)


def _print_history(events: list[HistoryEvent]) -> None:
    rows: list[list[RenderableType]] = []
    for event in events:
        style = "red" if "error" in event.details else ""
        rows.append(
            [
                str(event.event_id),
                format_time(event.timestamp, ms=True),
                Text(event.event_type, style=style),
                event.sub_type or "",
                event.name or "",
                event.id if event.id and not event.event_type.startswith("Execution") else "",
                Text(_event_summary(event), style=style),
            ]
        )
    cols = [
        Col("#", justify="right"),
        Col("time (UTC)"),
        Col("type"),
        Col("sub type", drop=2),
        Col("name", flex=True),
        Col("operation", drop=1, style="dim"),
        Col("details", flex=True),
    ]
    out = Output()
    out.table(cols, rows)
    out.flush()


# -- show ------------------------------------------------------------------------------


@dataclass
class _Op:
    """One operation of the timeline, gathered from its events."""

    id: str
    kind: str  # Step, Wait, Callback, Context or ChainedInvoke (from the event types)
    sub_type: str
    name: str | None
    parent_id: str | None
    events: list[HistoryEvent] = field(default_factory=list)
    children: list[_Op] = field(default_factory=list)
    label: str = ""
    cut: bool = False
    """An invocation ended after this operation's last event."""

    @property
    def start(self) -> float:
        return self.events[0].timestamp.timestamp()

    @property
    def last(self) -> HistoryEvent:
        return self.events[-1]

    @property
    def end(self) -> float:
        return self.events[-1].timestamp.timestamp()


_KINDS = ("ChainedInvoke", "Callback", "Context", "Step", "Wait")


def _kind(event_type: str) -> str | None:
    return next((k for k in _KINDS if event_type.startswith(k)), None)


def _operations(events: list[HistoryEvent]) -> list[_Op]:
    """The top-level operations, each with its children, in the order they started."""
    ops: dict[str, _Op] = {}
    roots: list[_Op] = []
    for event in events:
        kind = _kind(event.event_type)
        if kind is None or event.id is None:
            continue
        op = ops.get(event.id)
        if op is None:
            op = ops[event.id] = _Op(
                id=event.id,
                kind=kind,
                sub_type=event.sub_type or kind,
                name=event.name,
                parent_id=event.parent_id,
            )
            parent = ops.get(event.parent_id) if event.parent_id else None
            siblings = parent.children if parent is not None else roots
            op.label = _label(op, parent, siblings)
            siblings.append(op)
        op.events.append(event)
    last_invocation = max(
        (e.event_id for e in events if e.event_type == "InvocationCompleted"), default=0
    )
    for op in ops.values():
        op.cut = op.last.event_id < last_invocation
    return roots


def _label(op: _Op, parent: _Op | None, siblings: list[_Op]) -> str:
    if op.name:
        return op.name
    if op.sub_type in ("ParallelBranch", "MapIteration"):
        index = sum(1 for s in siblings if s.sub_type == op.sub_type)
        return f"{'branch' if op.sub_type == 'ParallelBranch' else 'item'} {index}"
    if parent is not None and parent.sub_type == "WaitForCallback" and op.kind == "Step":
        return "(submitter)"
    return "(unnamed)"


@dataclass
class _View:
    """What the timeline says about one operation."""

    status: str
    took: str
    details: str
    waiting: str | None = None  # what the execution waits on, for a pending operation


class _Explain:
    """Turns an operation's events into a status, a duration and the facts that matter."""

    def __init__(
        self,
        execution: Execution[Any],
        children: dict[str, Execution[Any]],
        callbacks: dict[str, CallbackRow],
        stored: ExecutionRow | None,
        now: float,
    ) -> None:
        self.running = execution.status is ExecutionStatus.RUNNING
        # a worker holds the execution now (a started step may really be running)
        self.held = bool(
            stored is not None
            and stored.lease_owner
            and stored.lease_expires is not None
            and stored.lease_expires >= now
        )
        # what became of operations still open when the execution ended
        stopped = execution.status in (ExecutionStatus.STOPPED, ExecutionStatus.TIMED_OUT)
        self.closed = "CANCELLED" if stopped else "UNFINISHED"
        self.children = children
        self.callbacks = callbacks
        self.now = now

    def when(self, ts: float) -> str:
        """``in 5m`` / ``5m ago`` relative to now."""
        delta = ts - self.now
        return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"

    def open_status(self, status: str) -> str:
        return status if self.running else self.closed

    def view(self, op: _Op) -> _View:
        method = getattr(self, f"_{op.kind.lower()}")
        view: _View = method(op)
        return view

    def _took(self, op: _Op) -> str:
        return format_duration(op.end - op.start)

    def due(self, ts: float) -> str:
        """``due in 5m`` / ``overdue by 5m`` (a little late is just a worker's poll)."""
        late = self.now - ts
        return f"overdue by {format_duration(late)}" if late > 5 else f"due {self.when(ts)}"

    def _step(self, op: _Op) -> _View:
        failures = [e for e in op.events if e.event_type == "StepFailed"]
        last = op.last
        d = last.details
        attempt = d.get("attempt") or sum(1 for e in op.events if e.event_type == "StepStarted")
        noun = "check" if op.sub_type == "WaitForCondition" else "attempt"
        parts = [f"{attempt} {noun}s" if attempt > 1 else f"{attempt} {noun}"]
        delays = [
            e.details["next_attempt_delay"] for e in failures if "next_attempt_delay" in e.details
        ]
        if delays:
            parts[0] += ", retried after " + ", ".join(format_duration(x) for x in delays)
        if last.event_type == "StepSucceeded" and "next_attempt_delay" in d:  # polling goes on
            parts.append(f"state {preview(d.get('result'), 60)}")
            if not self.running:
                return _View(self.closed, "-", "; ".join(parts))
            due = self.due(last.timestamp.timestamp() + d["next_attempt_delay"])
            parts.append(f"next check {due}")
            return _View(
                "POLLING", "-", "; ".join(parts), f"condition {op.label!r}: next check {due}"
            )
        if last.event_type == "StepSucceeded":
            parts.append(f"→ {preview(d.get('result'), 60)}")
            return _View("SUCCEEDED", self._took(op), "; ".join(parts))
        if last.event_type == "StepFailed" and "next_attempt_delay" in d:
            parts = [f"{noun} {attempt} failed: {_error_line(d.get('error'), 80)}"]
            if len(delays) > 1:
                parts.append("retried after " + ", ".join(format_duration(x) for x in delays[:-1]))
            if not self.running:
                return _View(self.closed, "-", "; ".join(parts))
            due = self.due(last.timestamp.timestamp() + d["next_attempt_delay"])
            parts.append(f"{noun} {attempt + 1} {due}")
            return _View("RETRYING", "-", "; ".join(parts), f"retry of {op.label!r}, {due}")
        if last.event_type == "StepFailed":
            parts.append(_error_line(d.get("error"), 120))
            return _View("FAILED", self._took(op), "; ".join(parts))
        # StepStarted with no outcome yet
        if not self.running:
            return _View(self.closed, "-", f"{noun} {attempt} started, no outcome recorded")
        if op.cut:
            parts = [f"{noun} {attempt} cut short by the end of its invocation"]
            parts.append("the next invocation retries or resumes it")
            waiting = f"step {op.label!r}: attempt {attempt} to be resumed by a worker"
            return _View("INTERRUPTED", "-", "; ".join(parts), waiting)
        if not self.held:
            parts = [f"{noun} {attempt} started {self.when(op.end)}; its worker is gone"]
            parts.append("the next worker to claim the execution retries or resumes it")
            waiting = f"step {op.label!r}: attempt {attempt} to be resumed by a worker"
            return _View("INTERRUPTED", "-", "; ".join(parts), waiting)
        parts = [f"{noun} {attempt} running, started {self.when(op.end)}"]
        return _View("RUNNING", "-", "; ".join(parts), f"step {op.label!r} running")

    def _wait(self, op: _Op) -> _View:
        first = op.events[0].details
        duration = first.get("duration")
        planned = f"wait {format_duration(duration)}" if duration is not None else "wait"
        if op.last.event_type == "WaitSucceeded":
            return _View("SUCCEEDED", self._took(op), planned)
        if op.last.event_type == "WaitCancelled":
            return _View("CANCELLED", self._took(op), planned)
        due = first.get("scheduled_end")
        if due is None or not self.running:
            return _View(self.open_status("PENDING"), "-", planned)
        text = f"{planned}; until {format_time(due)} UTC, {self.due(due)}"
        return _View("PENDING", "-", text, f"wait {op.label!r}, {self.due(due)}")

    def _ended(self, op: _Op, parts: list[str], kind: str, *, width: int) -> _View | None:
        """The view of a callback or invoke that has its outcome (``kind`` + Succeeded,
        Failed or TimedOut), or ``None`` while it is still open."""
        last = op.last
        outcome = last.event_type.removeprefix(kind)
        if outcome == "Succeeded":
            parts.append(f"→ {preview(last.details.get('result'), 60)}")
            return _View("SUCCEEDED", self._took(op), "; ".join(parts))
        if outcome in ("Failed", "TimedOut"):
            error = _error_line(last.details.get("error"), width)
            words = "failed" if outcome == "Failed" else "timed out"
            parts.append(f"{words}: {error}")
            status = "FAILED" if outcome == "Failed" else "TIMED_OUT"
            return _View(status, self._took(op), "; ".join(parts))
        return None

    def _callback(self, op: _Op) -> _View:
        first = op.events[0].details
        callback_id = first.get("callback_id", "?")
        parts = [f"callback {callback_id}"]
        ended = self._ended(op, parts, "Callback", width=80)
        if ended is not None:
            return ended
        if not self.running:
            return _View(self.closed, "-", "; ".join(parts))
        created = op.start
        if "timeout" in first:
            parts.append(f"times out {self.when(created + first['timeout'])}")
        if "heartbeat_timeout" in first:
            parts.append(f"heartbeat every {format_duration(first['heartbeat_timeout'])}")
        row = self.callbacks.get(callback_id)
        if row is not None and row.status != "PENDING":
            answered = f"answered {row.status}"
            if row.completed_at is not None:
                answered += f" {self.when(row.completed_at)}"
            parts.append(answered + ", not yet delivered (is a worker running?)")
            waiting = f"callback {op.label!r}: {answered}, waiting for a worker"
        else:
            parts.append("waiting for an answer")
            waiting = f"callback {op.label!r} (answer: durable callback succeed {callback_id})"
        return _View("PENDING", "-", "; ".join(parts), waiting)

    def _context(self, op: _Op) -> _View:
        last = op.last
        if last.event_type == "ContextSucceeded":
            return _View("SUCCEEDED", self._took(op), _context_result(last.details.get("result")))
        if last.event_type == "ContextFailed":
            text = f"failed: {_error_line(last.details.get('error'), 120)}"
            return _View("FAILED", self._took(op), text)
        started = sum(1 for c in op.children if c.sub_type in ("ParallelBranch", "MapIteration"))
        text = f"{started} started" if started else ""
        return _View(self.open_status("STARTED"), "-", text)

    def _chainedinvoke(self, op: _Op) -> _View:
        first = op.events[0].details
        child_id = first.get("child_execution_id", "?")
        parts = [f"child {child_id} (workflow {first.get('function_name', '?')})"]
        ended = self._ended(op, parts, "ChainedInvoke", width=100)
        if ended is not None:
            return ended
        child = self.children.get(child_id)
        state = child.status.value if child is not None else "not found"
        parts.append(f"child {state}")
        waiting = f"child execution {child_id} ({state}): durable show {child_id}"
        return _View(self.open_status("PENDING"), "-", "; ".join(parts), waiting)


def _context_result(result: Any) -> str:
    """A batch result as its counts; any other child context result as a preview."""
    if isinstance(result, dict) and "completionReason" in result and "items" in result:
        items = result.get("items") or []
        counts: dict[str, int] = {}
        for item in items:
            status = str(item.get("status")) if isinstance(item, dict) else "?"
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        return f"{result['completionReason']}: {summary or 'no items'}"
    return f"→ {preview(result, 60)}"


def _walk(ops: list[_Op], guide: str = "", top: bool = True) -> Iterator[tuple[_Op, str]]:
    """Depth first, parents before children, with tree guides for the nested ones."""
    for i, op in enumerate(ops):
        last = i == len(ops) - 1
        yield op, ("" if top else guide + ("└─ " if last else "├─ "))
        yield from _walk(op.children, "" if top else guide + ("   " if last else "│  "), False)


_MAX_CHILDREN = 20
_CALLBACK_OUTCOMES = ("CallbackSucceeded", "CallbackFailed", "CallbackTimedOut")


@dataclass
class _Shown:
    """Everything ``show`` prints, read in one go."""

    execution: Execution[Any]
    events: list[HistoryEvent]
    children: list[Execution[Any]]
    row: ExecutionRow | None
    callbacks: dict[str, CallbackRow]


async def gather_shown(engine: Engine, execution_id: str) -> _Shown:
    """Everything ``show`` (and the web UI's execution page) displays, read from ``engine``."""
    execution = await engine.get(execution_id)
    events = await engine.history(execution_id)
    children = await engine.list(parent_id=execution_id, limit=1000)
    row = await engine.store.get_execution(execution_id)
    callbacks: dict[str, CallbackRow] = {}
    if execution.status is ExecutionStatus.RUNNING:
        answered = {e.id for e in events if e.event_type in _CALLBACK_OUTCOMES}
        for event in events:
            callback_id = event.details.get("callback_id")
            if event.event_type != "CallbackStarted" or event.id in answered:
                continue
            if isinstance(callback_id, str):
                callback = await engine.store.get_callback(callback_id)
                if callback is not None:
                    callbacks[callback_id] = callback
        known = {c.execution_id for c in children}
        for event in events:
            child_id = event.details.get("child_execution_id")
            if isinstance(child_id, str) and child_id not in known:
                with contextlib.suppress(DurableError):
                    children.append(await engine.get(child_id))
    return _Shown(execution, events, children, row, callbacks)


async def _gather(db: str, execution_id: str) -> _Shown:
    async with _open(db) as engine:
        return await gather_shown(engine, execution_id)


_FAILURES = (
    "StepFailed",
    "CallbackFailed",
    "CallbackTimedOut",
    "ContextFailed",
    "ChainedInvokeFailed",
)


def _print_show(shown: _Shown) -> None:

    ex, events = shown.execution, shown.events
    now = time.time()
    t0 = events[0].timestamp.timestamp() if events else ex.created_at.timestamp()
    ops = _operations(events)
    children = {c.execution_id: c for c in shown.children}
    explain = _Explain(ex, children, shown.callbacks, shown.row, now)
    walked = [(op, guide, explain.view(op)) for op, guide in _walk(ops)]

    def offset(ts: float) -> str:
        return "+" + format_duration(max(0.0, ts - t0))

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column()

    def row(key: str, value: RenderableType) -> None:
        head.add_row(key, value)

    row("execution", Text(ex.execution_id, style="bold"))
    row("workflow", Text(ex.workflow))
    row("status", _status(ex.status.value))
    row("started", f"{format_time(ex.created_at, ms=True)} UTC")
    if ex.ended_at is not None:
        took = format_duration((ex.ended_at - ex.created_at).total_seconds())
        row("ended", f"{format_time(ex.ended_at, ms=True)} UTC (took {took})")
    elif now >= ex.created_at.timestamp():
        row("ended", f"- (running for {format_duration(now - ex.created_at.timestamp())})")
    row("parent", Text(ex.parent_id or "-"))
    row("input", Text(preview(ex.input, 300)))
    if ex.status is ExecutionStatus.SUCCEEDED:
        row("result", Text(preview(ex.result, 300)))
    if ex.error is not None:
        error = Text(_error_line(ex.error, 2000), style="red")
        for frame in ex.error.stack[-10:]:
            error.append("\n" + frame.rstrip(), style="dim")
        row("error", error)
    if shown.children:
        kids = Text()
        for i, child in enumerate(shown.children[:_MAX_CHILDREN]):
            kids.append(("\n" if i else "") + f"{child.execution_id}  {child.workflow}  ")
            kids.append_text(_status(child.status.value))
        if len(shown.children) > _MAX_CHILDREN:
            more = len(shown.children) - _MAX_CHILDREN
            kids.append(f"\n… {more} more: durable list --parent {ex.execution_id}")
        row("children", kids)
    invocations = [e for e in events if e.event_type == "InvocationCompleted"]
    cut = [e for e in invocations if "error" in e.details]
    text = Text(f"{len(invocations)}")
    if cut:
        text.append(f", {len(cut)} cut short:")
        for e in cut:
            text.append(f"\n{offset(e.timestamp.timestamp())}  {_error_line(e.details['error'])}")
    row("invocations", text)
    if ex.status is ExecutionStatus.RUNNING:
        _running_rows(row, shown.row, [v.waiting for _, _, v in walked if v.waiting], explain)

    out = Output()
    out.print(head, "")
    if not walked:
        out.print("no operations recorded")
        out.flush()
        return
    out.print(Text.assemble(("timeline", "bold"), " (offsets from the start of the execution)"))
    rows: list[list[RenderableType]] = []
    for op, guide, view in walked:
        label = Text(no_wrap=True, overflow="ellipsis")
        label.append(guide, style="dim")
        label.append(op.label)
        failed = view.status in ("FAILED", "TIMED_OUT")
        rows.append(
            [
                offset(op.start),
                view.took,
                label,
                op.sub_type,
                _status(view.status),
                Text(view.details, style="red" if failed else ""),
                op.id,
            ]
        )
    cols = [
        Col("start", justify="right"),
        Col("took", justify="right"),
        Col("operation"),
        Col("type"),
        Col("status"),
        Col("details", flex=True),
        Col("id", drop=1, style="dim"),
    ]
    out.table(cols, rows)

    labels = {op.id: op.label for op, _, _ in walked}
    failures = [e for e in events if e.event_type in _FAILURES]
    if failures:
        out.print("", Text(f"failures ({len(failures)})", style="bold"))
        rows = []
        for e in failures:
            what = labels.get(e.id or "", "?")
            if "attempt" in e.details:
                what += f" #{e.details['attempt']}"
            message = _error_line(e.details.get("error"), 300)
            if "next_attempt_delay" in e.details:
                delay = format_duration(e.details["next_attempt_delay"])
                message += f" (retried after {delay})"
            rows.append([offset(e.timestamp.timestamp()), what, Text(message, style="red")])
        cols = [Col("at", justify="right"), Col("operation"), Col("error", flex=True)]
        out.table(cols, rows, show_header=False)
    out.flush()


def _running_rows(
    row: Callable[[str, RenderableType], None],
    stored: ExecutionRow | None,
    waiting: list[str],
    explain: _Explain,
) -> None:
    """Who holds a running execution, when it wakes next, and what it waits on."""
    if stored is not None:
        if stored.lease_owner and stored.lease_expires is not None:
            if stored.lease_expires >= explain.now:
                worker = f"held by {stored.lease_owner} (lease renewed until "
                worker += f"{format_time(stored.lease_expires)} UTC)"
            else:
                worker = f"lease of {stored.lease_owner} expired "
                worker += f"{explain.when(stored.lease_expires)}: the next worker takes it over"
        else:
            worker = "not held by any worker"
            if stored.wake_at is not None:
                late = stored.wake_at < explain.now - 5
                worker += f"; next wake-up {format_time(stored.wake_at)} UTC, "
                worker += explain.when(stored.wake_at)
                worker += " (overdue: is a worker running on this database?)" if late else ""
        row("worker", Text(worker))
        if stored.deadline is not None:
            deadline = f"{format_time(stored.deadline)} UTC, {explain.when(stored.deadline)}"
            row("times out", Text(deadline))
    if waiting:
        row("waiting on", Text("\n".join(waiting), style="yellow"))


# -- commands --------------------------------------------------------------------------


def register(cli: click.Group) -> None:
    """Add the reading commands to ``cli``."""

    @cli.command("list")
    @db_option
    @click.option("--status", help=f"Only executions with this status ({_STATUSES}).")
    @click.option("--workflow", help="Only executions of this workflow.")
    @click.option("--parent", help="Only the child executions of this execution.")
    @click.option(
        "--limit",
        default=50,
        show_default=True,
        type=click.IntRange(min=1),
        help="At most this many.",
    )
    @click.option(
        "--offset",
        default=0,
        show_default=True,
        type=click.IntRange(min=0),
        help="Skip this many first.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
    def list_(
        db: str,
        status: str | None,
        workflow: str | None,
        parent: str | None,
        limit: int,
        offset: int,
        as_json: bool,
    ) -> None:
        """List executions, newest first."""
        wanted = None
        if status is not None:
            try:
                wanted = ExecutionStatus(status.strip().upper())
            except ValueError:
                raise click.ClickException(
                    f"unknown status {status!r}: use one of {_STATUSES}"
                ) from None

        async def go() -> list[Execution[Any]]:
            async with _open(db) as engine:
                found: list[Execution[Any]] = await engine.list(
                    status=wanted, workflow=workflow, parent_id=parent, limit=limit, offset=offset
                )
                return found

        executions = run(go)
        if as_json:
            click.echo(json.dumps([_execution_json(ex) for ex in executions], indent=1))
        else:
            _print_list(executions)

    @cli.command()
    @db_option
    @click.argument("execution_id")
    def show(db: str, execution_id: str) -> None:
        """Show an execution and its operations as a timeline."""
        _print_show(run(_gather, db, execution_id))

    @cli.command()
    @db_option
    @click.argument("execution_id")
    @click.option(
        "--json", "as_json", is_flag=True, help="The AWS GetDurableExecutionHistory shape."
    )
    def history(db: str, execution_id: str, as_json: bool) -> None:
        """Print an execution's history events."""

        async def go() -> list[HistoryEvent]:
            async with _open(db) as engine:
                events: list[HistoryEvent] = await engine.history(execution_id)
                return events

        events = run(go)
        if as_json:
            click.echo(json.dumps(history_to_json(events), indent=1))
        else:
            _print_history(events)
