"""Time, injectable: the system clock in production, a virtual clock in tests.

Everything in the engine that depends on time (timers, retry delays, timeouts, leases, event
timestamps) reads one :class:`Clock`. A :class:`VirtualClock` only moves when told to, so tests
run a seven-day wait in microseconds and never sleep on wall time to wait for a timer.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    """What the engine needs from a clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def wait(
        self, event: anyio.Event, deadline: float | None, max_real: float = math.inf
    ) -> None:
        """Return when ``event`` is set, the clock reaches ``deadline``, or ``max_real``
        wall-clock seconds have passed, whichever comes first."""
        ...


class SystemClock:
    """The wall clock (``time.time``)."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def wait(
        self, event: anyio.Event, deadline: float | None, max_real: float = math.inf
    ) -> None:
        """Wait for ``event``, ``deadline`` or ``max_real`` seconds."""
        limit = max_real if deadline is None else min(max_real, deadline - time.time())
        if limit <= 0:
            await anyio.lowlevel.checkpoint()
            return
        with anyio.move_on_after(limit):
            await event.wait()


class VirtualClock:
    """A clock that moves only through :meth:`advance`, :meth:`set` or :meth:`jump_to_next`.

    Args:
        start: the initial time, seconds since the epoch.

    Example::

        clock = VirtualClock()
        engine = Engine(":memory:", clock=clock)
        ...
        clock.advance(timedelta(days=7).total_seconds())   # the week-long wait is due now
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def next_deadline(self) -> float | None:
        """The earliest deadline anyone is waiting for, or ``None``."""
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def wait(
        self, event: anyio.Event, deadline: float | None, max_real: float = math.inf
    ) -> None:
        """Wait for ``event``, the virtual ``deadline`` or ``max_real`` real seconds."""
        if deadline is not None:
            if deadline <= self._now:
                await anyio.lowlevel.checkpoint()
                return
            heapq.heappush(self._sleepers, (deadline, next(self._seq), event))
        with anyio.move_on_after(max_real):
            await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards) and wake whoever is due.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds!r} s)")
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        """Move time forward to ``when`` and wake whoever is due.

        Raises:
            ValueError: ``when`` is earlier than the current time.
        """
        if when < self._now:
            raise ValueError(f"a clock cannot go backwards (from {self._now!r} to {when!r})")
        self._now = float(when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    def jump_to_next(self) -> bool:
        """Move to the earliest pending deadline; False when nobody waits on one."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.set(max(deadline, self._now))
        return True
