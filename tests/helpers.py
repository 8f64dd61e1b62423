"""Test helpers: drive an engine on a virtual clock without sleeping on wall time."""

from __future__ import annotations

from typing import Any

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
