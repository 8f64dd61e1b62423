"""An in-process store on plain dicts, for tests and ``Engine(":memory:")``.

It keeps the SQLite store's semantics exactly (fencing, claim order, ``wake_at`` rules), so
the shared store suite holds both to one contract. No method awaits anything, so each one is
atomic with respect to other tasks, as a transaction would be. Rows are copied on the way in
and out: a caller cannot change stored state by mutating what it passed or got back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from durable.errors import ExecutionNotFoundError, LeaseLostError, StoreError
from durable.stores import _callbacks as cb
from durable.stores._filters import workflow_filter
from durable.stores.base import (
    CallbackRow,
    CallbackStatus,
    Checkpoint,
    ExecutionRow,
    Lease,
    ListQuery,
)
from durable.types import ErrorInfo, ExecutionStatus

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
        self._callbacks: dict[str, CallbackRow] = {}
        self._callbacks_of: dict[str, list[str]] = {}  # execution id -> callback ids
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

    def _fenced_row(self, lease: Lease, first_seq: int | None) -> ExecutionRow:
        row = self._rows.get(lease.execution_id)
        if row is None:
            raise LeaseLostError(f"execution {lease.execution_id!r} does not exist")
        if (row.lease_owner, row.lease_epoch) != (lease.owner, lease.epoch):
            raise LeaseLostError(
                f"lease on execution {lease.execution_id!r} lost: {lease.owner!r} epoch "
                f"{lease.epoch} no longer holds it (owner {row.lease_owner!r}, "
                f"epoch {row.lease_epoch})"
            )
        if first_seq is not None and first_seq != row.next_seq + 1:
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
        execution_id = row.execution_id
        # Validate everything before the first change: a refused checkpoint writes nothing.
        cb.check_new(
            cp.callbacks, (c.callback_id for c in cp.callbacks if c.callback_id in self._callbacks)
        )
        if cp.children:
            owners = {c.callback_id: execution_id for c in cp.callbacks}
            for child in cp.children:
                named = child.row.parent_callback_id
                if named is not None and named not in owners and named in self._callbacks:
                    owners[named] = self._callbacks[named].execution_id
            cb.check_children(execution_id, cp.children, owners)
        delivered = list(dict.fromkeys(cp.delivered))
        cb.check_delivered(
            execution_id,
            delivered,
            {
                i: (self._callbacks[i].execution_id, self._callbacks[i].status)
                for i in delivered
                if i in self._callbacks
            },
        )
        cancelled = list(dict.fromkeys(cp.cancelled))
        if cancelled:
            owners = {c.callback_id: execution_id for c in cp.callbacks}
            for callback_id in cancelled:
                if callback_id not in owners and callback_id in self._callbacks:
                    owners[callback_id] = self._callbacks[callback_id].execution_id
            cb.check_cancelled(execution_id, cancelled, owners)
        for new in cp.callbacks:
            self._callbacks[new.callback_id] = cb.new_row(execution_id, new)
            self._callbacks_of.setdefault(execution_id, []).append(new.callback_id)
        for child in cp.children:
            if child.row.execution_id not in self._rows:
                self._rows[child.row.execution_id] = replace(child.row, next_seq=len(child.events))
                self._events[child.row.execution_id] = list(child.events)
        for callback_id in delivered:
            self._callbacks[callback_id].delivered = True
        for callback_id in cancelled:
            self._cancel_for_operation(self._callbacks[callback_id], cp.now)
        self._events[execution_id].extend(cp.events)
        row.next_seq += len(cp.events)
        row.updated_at = cp.now
        if cp.finish is not None:
            row.status = cp.finish.status
            row.result = cp.finish.result
            row.error = cp.finish.error
            row.ended_at = cp.now
            row.wake_at = row.lease_owner = row.lease_expires = None
            self._cancel_callbacks(execution_id, cp.now)
            if row.parent_callback_id is not None:
                self._answer_parent(
                    row.parent_callback_id, *cb.child_answer(execution_id, cp.finish), cp.now
                )
        elif cp.release:
            row.wake_at = self._release_wake_at(execution_id, cp.wake_at, cp.now)
            row.lease_owner = row.lease_expires = None
        elif cp.lease_expires is not None:
            row.lease_expires = row.wake_at = cp.lease_expires

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_expires: float,
        limit: int,
        workflows: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` due executions with free leases, earliest ``wake_at`` first.

        With ``workflows``, only executions of those workflows (none for an empty list).
        """
        self._check_open()
        names = workflow_filter(workflows)
        allowed = None if names is None else set(names)
        due = [
            row
            for row in self._rows.values()
            if (allowed is None or row.workflow in allowed)
            and row.wake_at is not None
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
        """Drop ``lease`` and set ``wake_at``; ignored when the lease is not held.

        As for a releasing checkpoint, ``wake_at`` becomes at most ``now`` while one of the
        execution's callbacks has an undelivered outcome.
        """
        self._check_open()
        row = self._held(lease)
        if row is not None:
            row.lease_owner = row.lease_expires = None
            row.wake_at = self._release_wake_at(row.execution_id, wake_at, now)
            row.updated_at = now

    async def next_wake_at(
        self, exclude_owner: str | None = None, workflows: Sequence[str] | None = None
    ) -> float | None:
        """The smallest ``wake_at`` of rows not leased by ``exclude_owner``, or ``None``.

        With ``workflows``, of executions of those workflows only (none for an empty list).
        """
        self._check_open()
        names = workflow_filter(workflows)
        allowed = None if names is None else set(names)
        return min(
            (
                r.wake_at
                for r in self._rows.values()
                if r.wake_at is not None
                and (allowed is None or r.workflow in allowed)
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

    # --- callbacks ------------------------------------------------------------------------

    def _callbacks_in(self, execution_id: str) -> list[CallbackRow]:
        return [self._callbacks[i] for i in self._callbacks_of.get(execution_id, ())]

    def _release_wake_at(
        self, execution_id: str, wake_at: float | None, now: float
    ) -> float | None:
        """``wake_at``, or ``now`` if earlier while an outcome waits to be delivered."""
        if any(
            c.status != CallbackStatus.PENDING and not c.delivered
            for c in self._callbacks_in(execution_id)
        ):
            return now if wake_at is None else min(wake_at, now)
        return wake_at

    def _cancel_callbacks(self, execution_id: str, now: float) -> None:
        """Cancel the pending callbacks of an execution that has ended."""
        for callback in self._callbacks_in(execution_id):
            if callback.status == CallbackStatus.PENDING:
                callback.status = CallbackStatus.CANCELLED
                callback.completed_at = now

    @staticmethod
    def _cancel_for_operation(callback: CallbackRow, now: float) -> None:
        """Cancel a pending callback whose operation ended without it (``cp.cancelled``).

        Its operation's end is in the same checkpoint's events, so there is nothing left
        to deliver: it is marked delivered and does not wake the execution on release.
        """
        if callback.status == CallbackStatus.PENDING:
            callback.status = CallbackStatus.CANCELLED
            callback.error = cb.operation_ended(callback.operation_id)
            callback.completed_at = now
            callback.delivered = True

    def _answer_parent(
        self,
        callback_id: str,
        status: str,
        result: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> None:
        """Answer a parent's callback with a child's end, as ``complete_callback`` would.

        Nothing happens to a callback that is gone or no longer pending; one past its
        deadline times out instead (so the outcome does not depend on whether the parent
        looked before the child ended).
        """
        callback = self._callbacks.get(callback_id)
        if callback is None or callback.status != CallbackStatus.PENDING:
            return
        if self._expire(callback, now):
            return
        callback.status, callback.result, callback.error = status, result, error
        callback.completed_at = now
        self._make_due(callback.execution_id, now)

    def _make_due(self, execution_id: str, now: float) -> None:
        """Let a suspended execution be claimed at ``now`` (a leased one sees it on release)."""
        row = self._rows.get(execution_id)
        if row is not None and row.status == ExecutionStatus.RUNNING and row.lease_owner is None:
            row.wake_at = now if row.wake_at is None else min(row.wake_at, now)

    def _expire(self, callback: CallbackRow, now: float) -> bool:
        """Mark ``callback`` ``TIMED_OUT`` if it is pending past a deadline; true if so."""
        expired = cb.expiry(callback, now)
        if expired is None:
            return False
        callback.status = CallbackStatus.TIMED_OUT
        callback.error, callback.completed_at = expired
        self._make_due(callback.execution_id, now)
        return True

    def _pending(self, callback_id: str, now: float) -> CallbackRow:
        """The stored callback if it is still pending at ``now``; expires it otherwise."""
        callback = self._callbacks.get(callback_id)
        if callback is None:
            raise cb.not_found(callback_id)
        if callback.status != CallbackStatus.PENDING:
            raise cb.not_pending(callback)
        if self._expire(callback, now):
            raise cb.timed_out(callback)
        return callback

    async def complete_callback(
        self,
        callback_id: str,
        *,
        status: str,
        result: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> CallbackRow:
        """Record an outside system's answer and make the execution due unless it is leased.

        Raises:
            ValueError: ``status`` is neither ``SUCCEEDED`` nor ``FAILED``.
            CallbackNotFoundError: no callback has this id.
            CallbackAlreadyCompletedError: it is not pending, or it timed out just now (that
                outcome is kept).
        """
        cb.check_answer(status)
        self._check_open()
        callback = self._pending(callback_id, now)
        callback.status = status
        callback.result = result
        callback.error = error
        callback.completed_at = now
        self._make_due(callback.execution_id, now)
        return replace(callback)

    async def heartbeat_callback(self, callback_id: str, *, now: float) -> CallbackRow:
        """Push the heartbeat deadline to ``now + heartbeat_timeout``; errors as for complete."""
        self._check_open()
        callback = self._pending(callback_id, now)
        if callback.heartbeat_timeout is not None:
            callback.heartbeat_at = now + callback.heartbeat_timeout
        return replace(callback)

    async def collect_callbacks(self, lease: Lease, *, now: float) -> list[CallbackRow]:
        """Expire due pending callbacks, then return the undelivered ones, oldest first.

        Raises:
            LeaseLostError: ``lease`` is not held (nothing is written).
        """
        self._check_open()
        row = self._fenced_row(lease, None)
        undelivered = [c for c in self._callbacks_in(row.execution_id) if not c.delivered]
        for callback in undelivered:
            self._expire(callback, now)
        undelivered.sort(key=lambda c: (c.created_at, c.callback_id))
        return [replace(c) for c in undelivered]

    async def get_callback(self, callback_id: str) -> CallbackRow | None:
        """The callback, or ``None``."""
        self._check_open()
        callback = self._callbacks.get(callback_id)
        return None if callback is None else replace(callback)

    async def purge(
        self, *, finished_before: float | None = None, expired_at: float | None = None
    ) -> list[str]:
        """Delete ended executions with their events and callbacks; the ids by end, then id.

        An execution goes when it is not ``RUNNING`` and ``ended_at <= finished_before``,
        or it has a ``retention`` and ``ended_at + retention <= expired_at``; ``None``
        disables a criterion. Callbacks of other executions (a running parent's callback
        that a deleted child answered) stay.
        """
        self._check_open()
        doomed: list[tuple[float, str]] = []
        for row in self._rows.values():
            ended = row.ended_at
            if row.status == ExecutionStatus.RUNNING or ended is None:
                continue
            if (finished_before is not None and ended <= finished_before) or (
                expired_at is not None
                and row.retention is not None
                and ended + row.retention <= expired_at
            ):
                doomed.append((ended, row.execution_id))
        doomed.sort()
        for _, execution_id in doomed:
            del self._rows[execution_id]
            del self._events[execution_id]
            for callback_id in self._callbacks_of.pop(execution_id, ()):
                del self._callbacks[callback_id]
        return [execution_id for _, execution_id in doomed]

    # --- stop -----------------------------------------------------------------------------

    def _running_tree(self, execution_id: str) -> list[ExecutionRow]:
        """The execution and its running descendants, breadth first (parents first).

        Children of one parent come oldest first (``created_at``, then id). The walk goes
        through descendants that have ended, so a running grandchild is found under an
        ended child.
        """
        children: dict[str, list[ExecutionRow]] = {}
        for row in self._rows.values():
            if row.parent_id is not None:
                children.setdefault(row.parent_id, []).append(row)
        order = [self._rows[execution_id]]
        seen = {execution_id}
        for row in order:  # grows while it is walked
            below = sorted(
                children.get(row.execution_id, ()), key=lambda r: (r.created_at, r.execution_id)
            )
            for child in below:
                if child.execution_id not in seen:
                    seen.add(child.execution_id)
                    order.append(child)
        return [row for row in order if row.status == ExecutionStatus.RUNNING]

    async def stop(
        self, execution_id: str, *, now: float, error: ErrorInfo, event: bytes
    ) -> list[str]:
        """Stop a running execution and its running descendants; returns their ids.

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        self._check_open()
        row = self._rows.get(execution_id)
        if row is None:
            raise ExecutionNotFoundError(f"no execution has id {execution_id!r}")
        if row.status != ExecutionStatus.RUNNING:
            return []
        stopped = self._running_tree(execution_id)
        for row in stopped:
            self._events[row.execution_id].append(event)
            row.next_seq += 1
            row.status = ExecutionStatus.STOPPED.value
            row.error = error
            row.ended_at = row.updated_at = now
            row.wake_at = row.lease_owner = row.lease_expires = None
            row.lease_epoch += 1
            self._cancel_callbacks(row.execution_id, now)
        ids = [row.execution_id for row in stopped]
        inside = set(ids)
        for row in stopped:
            if row.parent_callback_id is not None and row.parent_id not in inside:
                self._answer_parent(row.parent_callback_id, CallbackStatus.FAILED, None, error, now)
        return ids
