"""Memory held by suspended executions (M1): 100,000 executions waiting on a one-day timer.

Run from the repository root::

    python benchmarks/bench_memory.py [--n 100000] [--batch 500] [--dir DIR] [--keep]

One engine with the defaults (WAL, ``synchronous=FULL``; ``concurrency=--batch`` so every
start of a batch runs at once) on a fresh SQLite file. The workflow is one
``await ctx.wait(timedelta(days=1))``. The script starts ``--n`` executions, ``--batch`` at a
time (each batch's ``engine.start`` calls run concurrently; handles are dropped), then waits
until every one has suspended: the worker runs no invocation (``engine.worker.active`` is
empty) and the earliest ``wake_at`` in the store (``engine.store.next_wake_at()``) is the
first timer, a day away. It measures, after a full ``gc.collect()``:

* the process's resident memory (``VmRSS`` from ``/proc/self/status``) before the first
  start (the engine already entered) and once all are suspended: the growth, and the growth
  divided by ``--n``. ``VmHWM`` (the peak) is shown too. RSS includes SQLite's page cache of
  the two connections and memory the allocator keeps after the start-up burst, so it is an
  upper bound on what the suspended executions hold. To separate that fixed part from a
  per-execution cost, the starts pause once the first tenth has been started, wait until
  those are suspended and measure again: the growth from there to ``--n``, divided by the
  executions added, is the marginal cost of one more suspended execution;
* live Python memory blocks (``sys.getallocatedblocks()``) before and after: what is still
  allocated, without the allocator's slack;
* what is still held: ``asyncio.all_tasks()`` before and after, ``len(engine.worker.active)``,
  and the workflow's coroutine objects alive in the process (``gc.get_objects()`` filtered by
  ``inspect.iscoroutine`` and the workflow's code object). The target is no task and no
  coroutine per suspended execution, and an RSS growth under 50 MB for 100,000.

Then it counts the RUNNING executions through ``engine.list`` (after the measurement, which
its own objects would disturb) to check that all ``--n`` exist.

It only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench_steps import progress, session

from durable import DurableContext, Engine, ExecutionStatus
from durable.stores import SQLiteStore

TIMER = timedelta(days=1)


async def sleeper(ctx: DurableContext, i: int) -> None:
    await ctx.wait(TIMER)


def proc_status(field: str, pid: int | str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def live_coroutines() -> tuple[int, int]:
    """The workflow's coroutine objects still alive: (suspended in a frame, closed).

    A suspended execution should hold none; a closed one (no frame left) that something
    still refers to is garbage that has not been dropped yet, not a held execution.
    """
    code = sleeper.__code__
    found = [o for o in gc.get_objects() if inspect.iscoroutine(o) and o.cr_code is code]
    suspended = sum(1 for o in found if o.cr_frame is not None)
    return suspended, len(found) - suspended


class Snapshot:
    def __init__(self, engine: Engine) -> None:
        gc.collect()
        self.rss = proc_status("VmRSS")
        self.hwm = proc_status("VmHWM")
        self.blocks = sys.getallocatedblocks()
        self.tasks = len(asyncio.all_tasks())
        self.active = len(engine.worker.active)
        self.coroutines, self.closed_coroutines = live_coroutines()
        # The store's writer process (the default writer="auto" starts one under a burst
        # of writes): its memory is another process's, counted here beside ours.
        store = engine.store
        self.writer_pid = store.writer_pid if isinstance(store, SQLiteStore) else None
        self.writer_rss = 0 if self.writer_pid is None else proc_status("VmRSS", self.writer_pid)


async def all_suspended(engine: Engine, first_due: float) -> bool:
    """No invocation runs and no execution is due before the first one-day timer."""
    if engine.worker.active:
        return False
    next_wake = await engine.store.next_wake_at()
    return next_wake is not None and next_wake >= first_due and not engine.worker.active


async def count_running(engine: Engine, page: int = 10_000) -> int:
    total, offset = 0, 0
    while True:
        rows = await engine.list(
            status=ExecutionStatus.RUNNING, workflow="sleeper", limit=page, offset=offset
        )
        total += len(rows)
        offset += page
        if len(rows) < page:
            return total


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


async def measure(path: Path, n: int, batch: int) -> None:
    engine = Engine(str(path), concurrency=batch)
    workflow = engine.workflow(sleeper)

    async def wait_suspended() -> None:
        while not await all_suspended(engine, first_due):  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)  # let finished invocation tasks be collected by the loop

    async with engine:
        before = Snapshot(engine)
        # every timer is due at least a day after this (each is started later)
        first_due = time.time() + TIMER.total_seconds()
        # a first tenth, then a pause to measure: what the rest adds is the marginal cost
        tenth = max(batch, n // 10 // batch * batch) if n >= 2 * batch else n
        began = time.perf_counter()
        paused = 0.0
        early: Snapshot | None = None
        for low in range(0, n, batch):
            if low == tenth:
                progress(f"  {tenth:,} started; measuring once they are suspended ...")
                pause = time.perf_counter()
                await wait_suspended()
                early = Snapshot(engine)
                paused = time.perf_counter() - pause
            async with asyncio.TaskGroup() as tg:
                for i in range(low, min(n, low + batch)):
                    tg.create_task(engine.start(workflow, i, execution_id=f"m{i}"))
            if low // batch % 20 == 19:
                progress(f"  started {low + batch:,} ...")
        started = time.perf_counter() - began - paused
        progress(f"  all {n:,} started in {started:.1f} s; waiting until all are suspended ...")
        await wait_suspended()
        suspended = time.perf_counter() - began - paused
        after = Snapshot(engine)
        running = await count_running(engine)

    growth = after.rss - before.rss
    blocks = after.blocks - before.blocks
    rows = [
        ("executions started", f"{n:,} ({batch:,} at a time)"),
        ("RUNNING executions counted afterwards", f"{running:,}"),
        ("time: every start() returned", f"{started:.1f} s ({n / started:,.0f} starts/s)"),
        ("time: all suspended", f"{suspended:.1f} s ({n / suspended:,.0f} executions/s)"),
        ("RSS before the first start", mb(before.rss)),
        ("RSS with all suspended", mb(after.rss)),
        ("RSS growth", f"{mb(growth)}  (target < 50 MB for 100,000)"),
        ("RSS growth per suspended execution", f"{growth / n:,.0f} bytes"),
    ]
    if early is not None:
        marginal = (after.rss - early.rss) / (n - tenth)
        rows += [
            (f"RSS with the first {tenth:,} suspended", mb(early.rss)),
            (f"RSS growth from {tenth:,} to {n:,}", mb(after.rss - early.rss)),
            ("  per execution (marginal cost)", f"{marginal:,.0f} bytes"),
        ]
    rows += [
        ("peak RSS (VmHWM)", mb(after.hwm)),
        (
            "the store's writer process (another process): RSS before / after",
            f"{mb(before.writer_rss)} / {mb(after.writer_rss)}"
            + ("" if after.writer_pid is None else f" (pid {after.writer_pid})"),
        ),
        ("live memory blocks: growth", f"{blocks:,} ({blocks / n:.2f} per execution)"),
        (
            "asyncio tasks: before / after",
            f"{before.tasks} / {after.tasks}"
            + (
                " (one of them reads the writer process's replies)"
                if after.writer_pid is not None and before.writer_pid is None
                else ""
            ),
        ),
        ("worker.active: before / after", f"{before.active} / {after.active}"),
        (
            "workflow coroutines suspended: before / after",
            f"{before.coroutines} / {after.coroutines}",
        ),
        (
            "closed workflow coroutines still referenced: before / after",
            f"{before.closed_coroutines} / {after.closed_coroutines}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    held = after.tasks - before.tasks
    print()
    print(
        f"held per suspended execution: {held / n:.4f} tasks, "
        f"{after.coroutines / n:.4f} coroutines, {after.active} invocations"
    )
    if running != n:
        raise RuntimeError(f"expected {n:,} RUNNING executions, found {running:,}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Memory per suspended execution (M1).")
    parser.add_argument("--n", type=int, default=100_000, help="executions to suspend")
    parser.add_argument("--batch", type=int, default=500, help="starts in flight at once")
    parser.add_argument("--dir", help="where to create the database (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args(argv)
    for name in ("n", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with session(args.dir, keep=args.keep) as path:
        asyncio.run(measure(path / "m1.db", args.n, args.batch))


if __name__ == "__main__":
    main()
