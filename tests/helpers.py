"""Test helpers: drive an engine on a virtual clock without sleeping on wall time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from durable import Engine, ExecutionHandle, VirtualClock


async def settle(engine: Engine) -> None:
    """Wait until the engine runs nothing and nothing is due at the current virtual time."""
    await engine.wait_idle()


async def drive(
    engine: Engine, clock: VirtualClock, handle: ExecutionHandle[Any], *, max_jumps: int = 100
) -> list[float]:
    """Jump the clock from wake-up to wake-up until the execution ends; returns the jumps."""
    jumps: list[float] = []
    for _ in range(max_jumps):
        await settle(engine)
        if (await handle.status()).finished:
            return jumps
        next_wake = await engine.store.next_wake_at(engine.owner)
        assert next_wake is not None, "execution is stuck: nothing will ever wake it"
        jumps.append(max(0.0, next_wake - clock.now()))
        clock.set(max(next_wake, clock.now()))
    raise AssertionError(f"execution did not finish within {max_jumps} clock jumps")


async def advance_until(
    engine: Engine, clock: VirtualClock, execution_id: str, done: Callable[[list[Any]], bool]
) -> list[Any]:
    """Jump the virtual clock from wake-up to wake-up until ``done(history)``; the history.

    When the worker is still busy the loop gives it a moment (never a wait for a timer: the
    clock only moves by jumping to the next wake-up).
    """
    history: list[Any] = []
    for _ in range(1000):
        await settle(engine)
        history = await engine.history(execution_id)
        if done(history):
            return history
        next_wake = await engine.store.next_wake_at(engine.owner)
        if engine.worker.active or next_wake is None:
            await anyio.sleep(0.01)
            continue
        clock.set(max(next_wake, clock.now()))
    raise AssertionError(f"{execution_id} never got there: {history[-3:]}")


def finished(history: list[Any]) -> bool:
    """Whether a history ends with the execution's end."""
    ends = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionStopped", "ExecutionTimedOut")
    return bool(history) and history[-1].event_type in ends


def has(event_type: str) -> Callable[[list[Any]], bool]:
    """A ``done`` for :func:`advance_until`: the history holds an event of this type."""
    return lambda history: any(e.event_type == event_type for e in history)


def has_exited(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie has: only its parent may reap it)."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it exited meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def reaped(pid: int) -> bool:
    """True when ``pid`` is no child of ours any more: it exited and was waited for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
