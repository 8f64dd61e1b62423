"""The queue between the SQLite store's callers and its writer task, and what goes in it."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

from durable.stores import _sqlite_batch as wsql
from durable.stores import _sqlite_wire as proc
from durable.stores._sqlite_process import Job
from durable.stores.base import Checkpoint

__all__ = ["Write", "WriteQueue", "fail", "process_jobs"]


@dataclass(slots=True)
class Write:
    """One write waiting for the writer task."""

    fn: wsql.Job
    future: asyncio.Future[Any]
    job: Job | None = None  # the same write for the writer process; None: the thread only


def process_jobs(writes: list[Write]) -> list[Job] | None:
    """The writes as jobs for the writer process, or ``None`` when one of them has none."""
    jobs: list[Job] = []
    for write in writes:
        if type(write.fn) is Checkpoint:
            jobs.append((proc.PLAIN, proc.to_row(write.fn)))
        elif write.job is not None:
            jobs.append(write.job)
        else:
            return None
    return jobs


class WriteQueue:
    """The writes waiting for the writer task: a deque, and a future that wakes the task
    (``asyncio.Queue`` costs several times more per write, on the path of every step)."""

    __slots__ = ("_items", "_loop", "_wakeup")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: collections.deque[Write | None] = collections.deque()
        self._loop = loop
        self._wakeup: asyncio.Future[None] | None = None

    def put(self, item: Write | None) -> None:
        """Queue a write (``None``: the writer task ends after what is queued before it)."""
        self._items.append(item)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    async def take(self, limit: int) -> list[Write | None]:
        """The oldest ``limit`` items at most, waiting for one when there are none."""
        items = self._items
        while not items:
            self._wakeup = self._loop.create_future()
            await self._wakeup
        if len(items) <= limit:
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(limit)]

    def drain(self) -> list[Write | None]:
        """Everything queued, removed."""
        batch = list(self._items)
        self._items.clear()
        return batch


def fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` with ``exc`` unless it is already done."""
    if not future.done():
        future.set_exception(exc)
