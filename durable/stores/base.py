"""The one seam between the engine and a database: the :class:`Store` protocol.

A store keeps two things per execution: a row (status, input, result, lease, wake-up time)
and an append-only list of encoded events. It never reads a clock (every time is passed in by
the engine, so a virtual clock drives it in tests) and never imports the engine.

Leases: a worker runs an execution only while it holds its lease (``owner`` + ``epoch``).
Every write of a running execution is fenced by that pair, so a worker whose lease was taken
over after it stalled gets :class:`~durable.errors.LeaseLostError` instead of corrupting the
log. ``wake_at`` is the single "look at this row again at" time: the next timer of a
suspended execution, ``now`` for a runnable one, the lease expiry while a worker holds it
(so a crashed worker's executions come due by themselves), ``None`` when nothing but an
outside event can move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from durable.types import ErrorInfo

__all__ = [
    "CallbackRow",
    "CallbackStatus",
    "Checkpoint",
    "ExecutionRow",
    "Finish",
    "Lease",
    "ListQuery",
    "NewCallback",
    "NewChild",
    "Store",
]


@dataclass(slots=True)
class ExecutionRow:
    """What the store keeps about one execution besides its events.

    ``next_seq`` is the number of events stored so far (events are numbered from 1).
    ``seed`` feeds ``ctx.random()``; it is random per execution and never changes.
    """

    execution_id: str
    workflow: str
    status: str
    input: bytes
    created_at: float
    updated_at: float
    seed: int
    result: bytes | None = None
    error: ErrorInfo | None = None
    ended_at: float | None = None
    parent_id: str | None = None
    wake_at: float | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    lease_epoch: int = 0
    next_seq: int = 0
    deadline: float | None = None
    retention: float | None = None
    parent_callback_id: str | None = None
    """For a child started by ``ctx.invoke``: the parent's callback its end answers."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that ``owner`` may write ``execution_id`` (until another claim bumps ``epoch``).

    ``taken_over`` is true when the claim found the lease of another (dead or stalled) owner
    still in place: that owner died mid-invocation.
    """

    execution_id: str
    owner: str
    epoch: int
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    """The final state written together with an execution's last events."""

    status: str
    result: bytes | None = None
    error: ErrorInfo | None = None


class CallbackStatus:
    """Values of :attr:`CallbackRow.status`."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    """The execution ended while the callback was pending."""


@dataclass(frozen=True, slots=True)
class NewCallback:
    """A callback created by a checkpoint (its ``CallbackStarted`` event is in the same one).

    ``heartbeat_timeout`` is in seconds; the first heartbeat deadline is
    ``created_at + heartbeat_timeout``.
    """

    callback_id: str
    operation_id: str
    created_at: float
    timeout_at: float | None = None
    heartbeat_timeout: float | None = None


@dataclass(slots=True)
class CallbackRow:
    """A callback as the store keeps it: the inbox between outside systems and the log.

    ``delivered`` becomes true when a checkpoint records its outcome event in the log (the
    checkpoint lists it in ``delivered``); until then its outcome waits here.
    """

    callback_id: str
    execution_id: str
    operation_id: str
    status: str
    created_at: float
    timeout_at: float | None = None
    heartbeat_timeout: float | None = None
    heartbeat_at: float | None = None
    result: bytes | None = None
    error: ErrorInfo | None = None
    completed_at: float | None = None
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class NewChild:
    """A child execution started by a checkpoint (``ctx.invoke``).

    ``row`` is inserted as given (``parent_id`` and ``parent_callback_id`` set, unleased,
    ``wake_at = now``) with its first ``events``, unless its id already exists (then nothing
    about it changes). ``row.parent_callback_id`` names a callback created by the same
    checkpoint.
    """

    row: ExecutionRow
    events: list[bytes]


@dataclass(slots=True)
class Checkpoint:
    """Events to append for one execution, in one atomic write, fenced by ``lease``.

    Args:
        lease: the writer's lease; a mismatch raises ``LeaseLostError`` and writes nothing.
        first_seq: sequence number of ``events[0]``; must equal the stored ``next_seq + 1``
            (an expected-sequence check; a mismatch also raises ``LeaseLostError``).
        events: encoded events, in order.
        now: the engine's clock, stored as ``updated_at``.
        release: end of invocation: drop the lease and set ``wake_at``.
        wake_at: when released, the next time this execution must be driven (``None`` =
            only an outside event moves it). Ignored unless ``release``.
        lease_expires: when not releasing, the new lease expiry (also the new ``wake_at``);
            ``None`` keeps the current one.
        finish: when set, the execution ends with this status/result/error (implies release);
            its callbacks still ``PENDING`` become ``CANCELLED``.
        callbacks: callbacks created by this checkpoint (inserted ``PENDING``).
        delivered: ids of callbacks whose outcome events this checkpoint records.
        children: child executions created by this checkpoint (after its callbacks).
        cancelled: ids of this execution's callbacks to mark ``CANCELLED`` if still
            ``PENDING`` (a ``wait_for_callback`` that ended without its answer); later
            answers are then refused with ``CallbackAlreadyCompletedError``.

    When ``finish`` ends an execution that has a ``parent_callback_id``, the same
    transaction answers that callback if it is still ``PENDING``: ``SUCCEEDED`` with the
    finish result, or ``FAILED`` with the finish error (for a finish without an error, an
    ``ErrorInfo`` whose type is the status), and makes the parent due exactly as
    :meth:`Store.complete_callback` does.

    When a checkpoint releases (without finishing) while one of the execution's callbacks
    is completed but not delivered, ``wake_at`` becomes ``now``: an outcome that arrived
    during the invocation is never left waiting for the next timer.
    """

    lease: Lease
    first_seq: int
    events: list[bytes]
    now: float
    release: bool = False
    wake_at: float | None = None
    lease_expires: float | None = None
    finish: Finish | None = None
    callbacks: list[NewCallback] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    children: list[NewChild] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Filters for :meth:`Store.list_executions`; newest first."""

    status: str | None = None
    workflow: str | None = None
    parent_id: str | None = None
    limit: int = 100
    offset: int = 0
    statuses: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Store(Protocol):
    """A few coarse, transactional operations; one implementation per backend.

    Every method may raise :class:`~durable.errors.StoreError` (locked, full, foreign file).
    """

    async def open(self) -> None:
        """Connect and migrate. Refuses a database that is not ours or is from a newer schema."""
        ...

    async def close(self) -> None:
        """Flush pending writes and disconnect. Idempotent."""
        ...

    async def create_execution(
        self, row: ExecutionRow, events: list[bytes]
    ) -> tuple[ExecutionRow, bool]:
        """Insert ``row`` (exactly as given, lease fields included) with its first ``events``.

        Returns ``(row, True)`` when inserted. When the id exists nothing is written and the
        stored row is returned with ``False``; the engine decides whether that is a duplicate.
        ``row.next_seq`` is set by the store to ``len(events)``.
        """
        ...

    async def get_execution(self, execution_id: str) -> ExecutionRow | None:
        """The row, or ``None``."""
        ...

    async def list_executions(self, query: ListQuery) -> list[ExecutionRow]:
        """Rows matching ``query``, newest ``created_at`` first."""
        ...

    async def load(self, execution_id: str) -> tuple[ExecutionRow, list[bytes]] | None:
        """The row and every event, in order, read in one consistent snapshot."""
        ...

    async def commit(self, checkpoint: Checkpoint) -> None:
        """Append the checkpoint durably; returns only once it is committed.

        Backends may group many executions' checkpoints in one transaction (group commit).
        Raises ``LeaseLostError`` when the lease or the expected sequence does not match.
        """
        ...

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_expires: float,
        limit: int,
        workflows: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` executions whose ``wake_at <= now`` and whose lease is free.

        A lease is free when it has no owner, or its expiry is ``<= now`` and its owner is not
        ``owner`` (a worker never steals from itself what it is still running). Claiming bumps the
        epoch, sets owner and expiry, and sets ``wake_at = lease_expires``. Earliest
        ``wake_at`` first. With ``workflows``, only executions of those workflows (a worker
        claims only what it can run).
        """
        ...

    async def renew(self, leases: list[Lease], *, lease_expires: float) -> list[str]:
        """Extend these leases (and their ``wake_at``); returns the ids no longer held."""
        ...

    async def release(self, lease: Lease, *, wake_at: float | None, now: float) -> None:
        """Drop a lease without writing events (e.g. on shutdown). Ignored if not held.

        Applies the same wake-up rule as a releasing checkpoint: an answered but undelivered
        callback makes ``wake_at`` at most ``now``.
        """
        ...

    async def next_wake_at(
        self, exclude_owner: str | None = None, workflows: Sequence[str] | None = None
    ) -> float | None:
        """The smallest ``wake_at`` of executions not leased by ``exclude_owner`` (and, with
        ``workflows``, of those workflows only), or ``None``."""
        ...

    async def lease_owners(self) -> list[str]:
        """Distinct owners currently holding leases (expired or not)."""
        ...

    async def expire_leases(self, owners: list[str], *, now: float) -> int:
        """Make the leases of these (dead) owners claimable at once; returns how many."""
        ...

    async def complete_callback(
        self,
        callback_id: str,
        *,
        status: str,
        result: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> CallbackRow:
        """Record an outside system's answer (``SUCCEEDED`` or ``FAILED``) in the inbox.

        Makes the execution due (``wake_at = now``) unless a worker holds its lease.
        A callback past its timeout or heartbeat deadline is marked ``TIMED_OUT`` (and its
        execution made due) instead of accepting the answer.

        Raises:
            CallbackNotFoundError: no callback has this id.
            CallbackAlreadyCompletedError: it is not ``PENDING`` (or just timed out).
        """
        ...

    async def heartbeat_callback(self, callback_id: str, *, now: float) -> CallbackRow:
        """Push the heartbeat deadline to ``now + heartbeat_timeout`` (no event is written).

        Raises the same errors as :meth:`complete_callback`.
        """
        ...

    async def collect_callbacks(self, lease: Lease, *, now: float) -> list[CallbackRow]:
        """The execution's undelivered callbacks (pending or answered), oldest first.

        Fenced by ``lease``. First marks ``TIMED_OUT`` every pending one whose timeout or
        heartbeat deadline is ``<= now``, with ``error`` of type ``Callback.Timeout`` or
        ``Callback.Heartbeat`` (the earlier deadline decides).
        """
        ...

    async def get_callback(self, callback_id: str) -> CallbackRow | None:
        """The callback, or ``None``."""
        ...

    async def purge(
        self, *, finished_before: float | None = None, expired_at: float | None = None
    ) -> list[str]:
        """Delete finished executions, with their events and callbacks, and nothing else.

        An execution is deleted when its status is not ``RUNNING`` and either its
        ``ended_at <= finished_before``, or it has a ``retention`` and
        ``ended_at + retention <= expired_at``. ``None`` disables a criterion. Returns the
        deleted ids. Running executions are never touched, nor anything of theirs (a running
        parent keeps its callback rows even when a finished child of it is deleted).
        """
        ...

    async def stop(
        self, execution_id: str, *, now: float, error: ErrorInfo, event: bytes
    ) -> list[str]:
        """Stop a running execution and every running descendant (``parent_id`` chain).

        Each one, in one transaction: ``event`` (an encoded ``ExecutionStopped``) appended
        at its next sequence number, status ``STOPPED`` with ``error``, ``ended_at = now``,
        ``wake_at`` and the lease cleared and ``lease_epoch`` bumped (the worker running it,
        if any, has its next write refused), its ``PENDING`` callbacks ``CANCELLED``, and
        its ``parent_callback_id`` answered ``FAILED`` with ``error`` as a finish would
        (unless the parent is being stopped too). Returns the ids stopped, the given one
        first; an execution that is not ``RUNNING`` is left as it is and returns ``[]``.

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        ...
