"""The worker loop: claim due executions, run their invocations, keep their leases alive."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import anyio
import anyio.abc

from durable.errors import StoreError
from durable.invocation import Invocation, Runtime
from durable.stores.base import ExecutionRow, Lease

__all__ = ["Worker", "make_owner_id", "owner_is_dead_here"]


def _pid_namespace() -> str:
    """This process's PID namespace (containers on one host have different ones)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def make_owner_id() -> str:
    """``host:pidns:pid:random``: unique per engine, and tells a restart on the same host
    (and PID namespace) which owners are dead processes."""
    host = socket.gethostname().replace(":", "_")
    return f"{host}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead_here(owner: str) -> bool:
    """True when ``owner`` names a process of this host and PID namespace that is gone."""
    parts = owner.split(":")
    if len(parts) != 4:
        return False
    host, namespace, pid_text, _ = parts
    here = socket.gethostname().replace(":", "_")
    if host != here or namespace != _pid_namespace() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Worker:
    """Runs executions for one engine: at most ``concurrency`` invocations at a time.

    It sleeps until the earliest ``wake_at`` in the store (a timer, a retry, a lease that
    may expire), a local nudge (an execution started or released here), or ``poll_interval``
    seconds of wall time, which bounds how late it notices work added by other processes.
    """

    def __init__(self, rt: Runtime, *, concurrency: int, poll_interval: float) -> None:
        self.rt = rt
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.active: dict[str, Invocation | None] = {}
        self._orphans: list[Lease] = []
        self.claiming = False
        """True while a claim is in flight (its executions are leased but not active yet)."""
        self._tg: anyio.abc.TaskGroup | None = None
        # Each invocation runs in a plain asyncio task inside its own cancel scope (anyio's
        # start_soon costs four times asyncio's create_task, once per execution started).
        self._invocations: dict[asyncio.Task[None], anyio.CancelScope] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        # Events and scopes belong to an event loop: made when the loop runs (an Engine is
        # usually built at import time, outside any loop).
        self._nudge: anyio.Event | None = None
        self._claim_scope: anyio.CancelScope | None = None
        self._emptied: anyio.Event | None = None
        self.idle: anyio.Event | None = None
        self._purge_due = float("inf")
        self._purge_done: anyio.Event | None = None

    def nudge(self) -> None:
        """Look for work now."""
        if self._nudge is not None:
            self._nudge.set()
        if self.idle is not None and self.idle.is_set():
            self.idle = anyio.Event()

    @property
    def has_capacity(self) -> bool:
        """Whether another invocation may start."""
        return self._tg is not None and not self._draining and len(self.active) < self.concurrency

    def run_now(self, lease: Lease, row: ExecutionRow, events: list[bytes]) -> None:
        """Run an execution this engine just created (already leased to it)."""
        assert self._tg is not None
        self._spawn(lease, row, events)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The loop; runs until cancelled (after :meth:`shutdown`), then releases leftovers."""
        self._nudge = anyio.Event()
        self._emptied = anyio.Event()
        self.idle = anyio.Event()
        self._purge_due = self.rt.clock.now() + self.rt.purge_interval
        self._purge_done = anyio.Event()
        self._claim_scope = anyio.CancelScope()
        self._draining = False
        self._loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._recover_dead_owners()
            tg.start_soon(self._renew_forever)
            tg.start_soon(self._purge_forever)
            task_status.started()
            try:
                with self._claim_scope:
                    await self._claim_forever()
                await anyio.sleep_forever()  # claiming stopped: shutting down
            finally:
                self._tg = None
                await self._stop_invocations()
                tg.cancel_scope.cancel()

    async def shutdown(self, grace: float) -> None:
        """Stop claiming; let running step attempts finish and checkpoint for up to
        ``grace`` seconds (nothing new starts); then whatever still runs is cancelled and
        released, so another worker resumes it at once."""
        self._draining = True
        if self._claim_scope is not None:
            self._claim_scope.cancel()
        for invocation in list(self.active.values()):
            if invocation is not None:
                invocation.drain()
        with anyio.move_on_after(grace):
            while self.active:
                self._emptied = anyio.Event()
                await self._emptied.wait()

    async def _purge_forever(self) -> None:
        """Delete executions whose workflow ``retention`` has passed, every ``purge_interval``."""
        store, clock, rt = self.rt.store, self.rt.clock, self.rt
        while True:
            self._purge_due = clock.now() + rt.purge_interval
            await clock.wait(anyio.Event(), self._purge_due, rt.purge_interval)
            try:
                purged = await store.purge(expired_at=clock.now())
            except StoreError as exc:
                purged = []
                rt.logger.warning("retention purge failed", error=str(exc))
            finally:
                done, self._purge_done = self._purge_done, anyio.Event()
                if done is not None:
                    done.set()
            if purged:
                rt.logger.info("purged executions past their retention", count=len(purged))

    async def purge_settled(self) -> None:
        """Return once no retention purge is due (or running) at the current clock time."""
        while self._purge_due <= self.rt.clock.now() and self._purge_done is not None:
            await self._purge_done.wait()

    async def _recover_dead_owners(self) -> None:
        store, clock = self.rt.store, self.rt.clock
        dead = [owner for owner in await store.lease_owners() if owner_is_dead_here(owner)]
        if dead:
            count = await store.expire_leases(dead, now=clock.now())
            self.rt.logger.info(
                "taking over executions of dead workers", owners=dead, executions=count
            )

    async def _claim_forever(self) -> None:
        store, clock, rt = self.rt.store, self.rt.clock, self.rt
        while True:
            self._nudge = nudge = anyio.Event()
            try:
                await self._release_orphans()
                next_wake = await store.next_wake_at(rt.owner, workflows=list(rt.workflows))
                now = clock.now()
                free = self.concurrency - len(self.active)
                if next_wake is not None and next_wake <= now and free > 0:
                    self.claiming = True  # claimed rows are leased before they are active
                    leases = await store.claim(
                        owner=rt.owner,
                        now=now,
                        lease_expires=now + rt.lease_time,
                        limit=free,
                        workflows=list(rt.workflows),
                    )
                    for lease in leases:
                        self._spawn(lease, None, None)
                    self.claiming = False
                    if leases:
                        continue
            except StoreError as exc:
                rt.logger.error("worker loop could not read the store", error=str(exc))
                next_wake = None
            finally:
                self.claiming = False
            if not self.active and not self._orphans and not nudge.is_set() and self.idle:
                self.idle.set()
            deadline = next_wake if next_wake is not None and next_wake > clock.now() else None
            if len(self.active) >= self.concurrency:
                deadline = None
            await clock.wait(nudge, deadline, self.poll_interval)

    async def _release_orphans(self) -> None:
        store, clock = self.rt.store, self.rt.clock
        while self._orphans:
            await store.release(self._orphans[0], wake_at=clock.now(), now=clock.now())
            self._orphans.pop(0)

    def _spawn(self, lease: Lease, row: ExecutionRow | None, events: list[bytes] | None) -> None:
        assert self._tg is not None
        assert self._loop is not None
        self.active[lease.execution_id] = None
        scope = anyio.CancelScope()
        task = self._loop.create_task(self._run_invocation(scope, lease, row, events))
        self._invocations[task] = scope
        task.add_done_callback(self._invocation_done)

    def _invocation_done(self, task: asyncio.Task[None]) -> None:
        self._invocations.pop(task, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.rt.logger.error("invocation task failed", error=repr(error))

    async def _stop_invocations(self) -> None:
        """Cancel what still runs (each releases its lease on the way out) and wait for it."""
        for scope in self._invocations.values():
            scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._invocations:
                await asyncio.wait(list(self._invocations))

    async def _run_invocation(
        self,
        scope: anyio.CancelScope,
        lease: Lease,
        row: ExecutionRow | None,
        events: list[bytes] | None,
    ) -> None:
        """Run one invocation inside ``scope``, which ends its cancellation: the worker
        cancels it when it stops, and so does the invocation's ``abandon()``."""
        rt = self.rt
        inv: Invocation | None = None
        with scope:
            try:
                if row is None or events is None:
                    loaded = await rt.store.load(lease.execution_id)
                    if loaded is None:
                        return
                    row, events = loaded
                inv = Invocation(rt, lease, row, events, scope)
                self.active[lease.execution_id] = inv
                if self._draining:
                    inv.drain()
                await inv.run()
            except StoreError as exc:
                rt.logger.error(
                    "could not load execution", execution_id=lease.execution_id, error=str(exc)
                )
            finally:
                if inv is not None and not inv.ended:
                    with anyio.CancelScope(shield=True):
                        try:
                            await inv.release()
                        except StoreError as exc:
                            # Keep trying from the loop: a lease this worker holds but no longer
                            # runs would otherwise wait for another process to take it over.
                            self._orphans.append(lease)
                            rt.logger.warning(
                                "could not release execution; will retry",
                                execution_id=lease.execution_id,
                                error=str(exc),
                            )
                if inv is not None:
                    inv.dispose()
                self.active.pop(lease.execution_id, None)
                self.nudge()
                if not self.active and self._emptied is not None:
                    self._emptied.set()

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(self.rt.lease_time / 3)
            await self._renew_once()  # (its own frame: nothing of it stays alive while asleep)

    async def _renew_once(self) -> None:
        store, clock, rt = self.rt.store, self.rt.clock, self.rt
        running = {
            inv.lease: inv
            for inv in self.active.values()
            if isinstance(inv, Invocation) and not inv.ended
        }
        if not running:
            return
        try:
            expires = clock.now() + rt.lease_time
            lost = set(await store.renew(list(running), lease_expires=expires))
        except StoreError as exc:
            rt.logger.warning("lease renewal failed", error=str(exc))
            return
        for lease, invocation in running.items():
            # A lease released meanwhile by its own invocation's last commit is not lost;
            # only one still held by the same, unfinished invocation is.
            if lease.execution_id not in lost or invocation.ended:
                continue
            if self.active.get(lease.execution_id) is not invocation:
                continue
            rt.logger.warning("lease lost", execution_id=lease.execution_id)
            invocation.abandon()  # another worker owns it: stop running its steps
