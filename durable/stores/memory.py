"""An in-process store on plain dicts, for tests and ``Engine(":memory:")``.

It keeps the SQLite store's semantics exactly (fencing, claim order, ``wake_at`` rules), so
the shared store suite holds both to one contract. No method awaits anything, so each one is
atomic with respect to other tasks, as a transaction would be. Rows are copied on the way in
and out: a caller cannot change stored state by mutating what it passed or got back.
"""

from __future__ import annotations

from dataclasses import replace

from durable.errors import LeaseLostError, StoreError
from durable.stores.base import Checkpoint, ExecutionRow, Lease, ListQuery

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~durable.stores.base.Store` that lives and dies with the process.

    Example::

        store = MemoryStore()
        await store.open()
        row, created = await store.create_execution(row, [started_event])
    """

    def __init__(self) -> None:
        self._rows: dict[str, ExecutionRow] = {}
        self._events: dict[str, list[bytes]] = {}
        self._open = False

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._rows)} executions)"

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError(f"{self!r} is not open")

    async def open(self) -> None:
        """Make the store usable; the data of an earlier open is kept."""
        self._open = True

    async def close(self) -> None:
        """Refuse further calls until the next :meth:`open`. Idempotent."""
        self._open = False

    async def create_execution(
        self, row: ExecutionRow, events: list[bytes]
    ) -> tuple[ExecutionRow, bool]:
        """Insert ``row`` and its first events, or return the stored row with ``False``."""
        self._check_open()
        if not -(2**63) <= row.seed < 2**63:
            raise ValueError(
                f"ExecutionRow.seed must fit in a signed 64-bit integer, got {row.seed}"
            )
        existing = self._rows.get(row.execution_id)
        if existing is not None:
            return replace(existing), False
        stored = replace(row, next_seq=len(events))
        self._rows[row.execution_id] = stored
        self._events[row.execution_id] = list(events)
        return replace(stored), True

    async def get_execution(self, execution_id: str) -> ExecutionRow | None:
        """The row, or ``None``."""
        self._check_open()
        row = self._rows.get(execution_id)
        return None if row is None else replace(row)

    async def list_executions(self, query: ListQuery) -> list[ExecutionRow]:
        """Rows matching ``query``, newest ``created_at`` first (newest insert on ties)."""
        self._check_open()
        rows = [
            row
            for row in reversed(self._rows.values())
            if (query.status is None or row.status == query.status)
            and (not query.statuses or row.status in query.statuses)
            and (query.workflow is None or row.workflow == query.workflow)
            and (query.parent_id is None or row.parent_id == query.parent_id)
        ]
        rows.sort(key=lambda row: row.created_at, reverse=True)  # stable: ties keep insert order
        start = max(query.offset, 0)
        return [replace(row) for row in rows[start : start + max(query.limit, 0)]]

    async def load(self, execution_id: str) -> tuple[ExecutionRow, list[bytes]] | None:
        """The row and every event, in order."""
        self._check_open()
        row = self._rows.get(execution_id)
        if row is None:
            return None
        return replace(row), list(self._events[execution_id])

    def _fenced_row(self, lease: Lease, first_seq: int) -> ExecutionRow:
        row = self._rows.get(lease.execution_id)
        if row is None:
            raise LeaseLostError(f"execution {lease.execution_id!r} does not exist")
        if (row.lease_owner, row.lease_epoch) != (lease.owner, lease.epoch):
            raise LeaseLostError(
                f"lease on execution {lease.execution_id!r} lost: {lease.owner!r} epoch "
                f"{lease.epoch} no longer holds it (owner {row.lease_owner!r}, "
                f"epoch {row.lease_epoch})"
            )
        if first_seq != row.next_seq + 1:
            raise LeaseLostError(
                f"execution {lease.execution_id!r} has {row.next_seq} events, so the next "
                f"checkpoint must start at {row.next_seq + 1}, not {first_seq}"
            )
        return row

    async def commit(self, checkpoint: Checkpoint) -> None:
        """Append the checkpoint atomically (fenced by lease and expected sequence).

        Raises:
            LeaseLostError: the lease or the expected sequence does not match.
        """
        self._check_open()
        cp = checkpoint
        row = self._fenced_row(cp.lease, cp.first_seq)
        self._events[row.execution_id].extend(cp.events)
        row.next_seq += len(cp.events)
        row.updated_at = cp.now
        if cp.finish is not None:
            row.status = cp.finish.status
            row.result = cp.finish.result
            row.error = cp.finish.error
            row.ended_at = cp.now
            row.wake_at = row.lease_owner = row.lease_expires = None
        elif cp.release:
            row.wake_at = cp.wake_at
            row.lease_owner = row.lease_expires = None
        elif cp.lease_expires is not None:
            row.lease_expires = row.wake_at = cp.lease_expires

    async def claim(
        self, *, owner: str, now: float, lease_expires: float, limit: int
    ) -> list[Lease]:
        """Lease up to ``limit`` due executions with free leases, earliest ``wake_at`` first."""
        self._check_open()
        due = [
            row
            for row in self._rows.values()
            if row.wake_at is not None
            and row.wake_at <= now
            and (
                row.lease_owner is None
                or (
                    row.lease_expires is not None
                    and row.lease_expires <= now
                    and row.lease_owner != owner
                )
            )
        ]
        due.sort(key=lambda row: row.wake_at or 0.0)
        leases: list[Lease] = []
        for row in due[: max(limit, 0)]:
            leases.append(
                Lease(
                    row.execution_id,
                    owner,
                    row.lease_epoch + 1,
                    taken_over=row.lease_owner is not None,
                )
            )
            row.lease_owner = owner
            row.lease_epoch += 1
            row.lease_expires = row.wake_at = lease_expires
        return leases

    def _held(self, lease: Lease) -> ExecutionRow | None:
        row = self._rows.get(lease.execution_id)
        if row is None or (row.lease_owner, row.lease_epoch) != (lease.owner, lease.epoch):
            return None
        return row

    async def renew(self, leases: list[Lease], *, lease_expires: float) -> list[str]:
        """Extend these leases and their ``wake_at``; returns the ids no longer held."""
        self._check_open()
        lost: list[str] = []
        for lease in leases:
            row = self._held(lease)
            if row is None:
                lost.append(lease.execution_id)
            else:
                row.lease_expires = row.wake_at = lease_expires
        return lost

    async def release(self, lease: Lease, *, wake_at: float | None, now: float) -> None:
        """Drop ``lease`` and set ``wake_at``; ignored when the lease is not held."""
        self._check_open()
        row = self._held(lease)
        if row is not None:
            row.lease_owner = row.lease_expires = None
            row.wake_at = wake_at
            row.updated_at = now

    async def next_wake_at(self, exclude_owner: str | None = None) -> float | None:
        """The smallest ``wake_at`` of rows not leased by ``exclude_owner``, or ``None``."""
        self._check_open()
        return min(
            (
                r.wake_at
                for r in self._rows.values()
                if r.wake_at is not None
                and (r.lease_owner is None or r.lease_owner != exclude_owner)
            ),
            default=None,
        )

    async def lease_owners(self) -> list[str]:
        """Distinct owners holding leases (expired or not), sorted."""
        self._check_open()
        return sorted({r.lease_owner for r in self._rows.values() if r.lease_owner is not None})

    async def expire_leases(self, owners: list[str], *, now: float) -> int:
        """Make these owners' leases claimable at ``now``; returns how many."""
        self._check_open()
        dead = set(owners)
        expired = 0
        for row in self._rows.values():
            if row.lease_owner in dead:
                expired += 1
                row.lease_expires = (
                    now if row.lease_expires is None else min(row.lease_expires, now)
                )
                row.wake_at = now if row.wake_at is None else min(row.wake_at, now)
        return expired
