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

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from durable.types import ErrorInfo

__all__ = [
    "Checkpoint",
    "ExecutionRow",
    "Finish",
    "Lease",
    "ListQuery",
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
        finish: when set, the execution ends with this status/result/error (implies release).
    """

    lease: Lease
    first_seq: int
    events: list[bytes]
    now: float
    release: bool = False
    wake_at: float | None = None
    lease_expires: float | None = None
    finish: Finish | None = None


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
        self, *, owner: str, now: float, lease_expires: float, limit: int
    ) -> list[Lease]:
        """Lease up to ``limit`` executions whose ``wake_at <= now`` and whose lease is free.

        A lease is free when it has no owner, or its expiry is ``<= now`` and its owner is not
        ``owner`` (a worker never steals from itself what it is still running). Claiming bumps the
        epoch, sets owner and expiry, and sets ``wake_at = lease_expires``. Earliest
        ``wake_at`` first.
        """
        ...

    async def renew(self, leases: list[Lease], *, lease_expires: float) -> list[str]:
        """Extend these leases (and their ``wake_at``); returns the ids no longer held."""
        ...

    async def release(self, lease: Lease, *, wake_at: float | None, now: float) -> None:
        """Drop a lease without writing events (e.g. on shutdown). Ignored if not held."""
        ...

    async def next_wake_at(self, exclude_owner: str | None = None) -> float | None:
        """The smallest ``wake_at`` of executions not leased by ``exclude_owner``, or ``None``."""
        ...

    async def lease_owners(self) -> list[str]:
        """Distinct owners currently holding leases (expired or not)."""
        ...

    async def expire_leases(self, owners: list[str], *, now: float) -> int:
        """Make the leases of these (dead) owners claimable at once; returns how many."""
        ...
