"""A worker process that the crash tests start, SIGKILL and restart.

Usage: ``python -m tests.integration.crash_app DB MARKS (run WORKFLOW ID | resume ID |
send CALLBACK_ID JSON) [--skew S]``

Steps append lines to the MARKS file (fsynced) so the test can see, from outside, what ran
and how often. ``--skew S`` runs the process S seconds in the future: the restarted worker
finds its timers due without anybody sleeping on wall time. ``CRASH_APP_WRITER=process``
runs the store with its writer process from the start; ``CRASH_APP_WRITER=auto`` with the
default writer, made to start its process at the first write (so the thread writes until
the process is ready, then the process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import anyio

from durable import DurableContext, Engine, RetryPolicy, StepSemantics, SystemClock
from durable.stores import SQLiteStore


class SkewedClock(SystemClock):
    """The system clock, ``offset`` seconds ahead."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    async def wait(
        self, event: anyio.Event, deadline: float | None, max_real: float = math.inf
    ) -> None:
        shifted = None if deadline is None else deadline - self.offset
        await super().wait(event, shifted, max_real)


def build(db: str, marks: str, skew: float) -> Engine:
    writer = os.environ.get("CRASH_APP_WRITER", "thread")
    store = SQLiteStore(db, writer=writer)
    store._process_min = 1  # with the process: every checkpoint it can take, even alone
    store._auto_start = 1  # "auto": the first write starts the process
    engine = Engine(db, clock=SkewedClock(skew), poll_interval=0.05, store=store)

    def mark(text: str) -> None:
        with open(marks, "a") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def slow(label: str) -> str:
        mark(f"{label} started")
        if os.environ.get("CRASH_APP_HANG") == label:
            await anyio.sleep_forever()  # the test kills the process here
        mark(f"{label} finished")
        return f"{label} done"

    @engine.workflow
    async def mid_step(ctx: DurableContext, semantics: str) -> list[str]:
        first = await ctx.step(lambda: mark("first ran") or "first done", name="first")
        try:
            second = await ctx.step(
                slow,
                "second",
                name="second",
                semantics=StepSemantics(semantics),
                retry=RetryPolicy(max_attempts=2, initial_delay=0),
            )
        except Exception as exc:
            second = f"{type(exc).__name__}: {exc}"
        return [first, second]

    @engine.workflow
    async def mid_wait(ctx: DurableContext) -> str:
        await ctx.step(lambda: mark("before ran"), name="before")
        await ctx.wait(3600, name="pause")
        await ctx.step(lambda: mark("after ran"), name="after")
        return "waited"

    async def per_item(ctx: DurableContext, item: str, index: int) -> str:
        done = await ctx.step(slow, item, name="process")
        await ctx.step(lambda: mark(f"{item} recorded"), name="confirm")
        return done

    @engine.workflow
    async def mid_map(ctx: DurableContext) -> list[str]:
        items = ["i0", "i1", "i2", "i3"]
        result = await ctx.map(items, per_item, max_concurrency=2)
        return result.get_results()

    @engine.workflow
    async def approval(ctx: DurableContext) -> object:
        cb = await ctx.create_callback(name="approval")
        await ctx.step(lambda: mark(f"callback {cb.id}"), name="hand-out")
        answer = await cb.result()
        await ctx.step(lambda: mark("after ran"), name="after")
        return answer

    return engine


async def send(db: str, callback_id: str, payload: str) -> None:
    """Answer a callback from a client-only engine (another process than the worker)."""
    async with Engine(db, worker=False) as client:
        await client.send_callback_success(callback_id, json.loads(payload))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("marks")
    parser.add_argument("command", choices=["run", "resume", "send"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--skew", type=float, default=0.0)
    ns = parser.parse_args()
    if ns.command == "send":
        await send(ns.db, *ns.args)
        print(json.dumps(None))
        return
    engine = build(ns.db, ns.marks, ns.skew)
    async with engine:
        if ns.command == "run":
            workflow, execution_id, *rest = ns.args
            handle = await engine.start(
                workflow, rest[0] if rest else None, execution_id=execution_id
            )
        else:
            handle = engine.handle(ns.args[0])
        result = await handle.result(timeout=60)
    print(json.dumps(result))


if __name__ == "__main__":
    anyio.run(main)
