"""Timer wake-up lateness (L1): 1,000 durable timers due within one second, real clock.

Run from the repository root::

    python benchmarks/bench_timers.py [--n 1000] [--window 1.0] [--lead 3.0]
        [--concurrency 100] [--repeat 3] [--dir DIR] [--keep]

One engine with the defaults (WAL, ``synchronous=FULL``, the system clock, ``concurrency``
the engine's default of 100 unless ``--concurrency``) on a fresh SQLite file. The workflow::

    async def timer(ctx, delay):
        await ctx.wait(delay)
        return await ctx.step(wall_clock)   # async def wall_clock(): return time.time()

The script picks the due times first: ``--n`` instants spread evenly over a ``--window``
second window that opens ``--lead`` seconds from now, and starts execution ``i`` with
``delay = due[i] - time.time()`` computed just before its ``engine.start`` (one start after
another). It checks that every execution has suspended (no invocation running, the
earliest ``wake_at`` in the store is a timer) before the first one is due, then awaits every
result. The engine records each timer's due time (``ctx.now()`` at the wait plus the delay,
``scheduled_end`` in the history); lateness is measured against that:

* **step lateness**: the step's ``time.time()`` minus the recorded due time: when the
  workflow's code after the wait ran (the worker noticed the timer, claimed and loaded the
  execution, replayed it, recorded ``WaitSucceeded`` durably, then ran the step);
* **fire lateness**: the ``WaitSucceeded`` event's timestamp minus the due time: when the
  engine decided the timer had fired.

Reported as p50/p95/p99/max in ms per run (``--repeat`` runs, each on a fresh file) and over
all runs pooled (target: step lateness p99 < 50 ms). The recorded due time
is a few ms after the intended one (the wait starts once the execution runs); that offset is
shown too.

It only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench_steps import progress, session

from durable import DurableContext, Engine

DEFAULT_CONCURRENCY = 100  # the Engine's default


async def wall_clock() -> float:
    return time.time()


async def timer(ctx: DurableContext, delay: float) -> float:
    await ctx.wait(delay)
    return await ctx.step(wall_clock)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0-100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


async def all_suspended(engine: Engine, first_due: float) -> bool:
    if engine.worker.active:
        return False
    next_wake = await engine.store.next_wake_at()
    return next_wake is not None and next_wake >= first_due and not engine.worker.active


@dataclass
class Run:
    step: list[float]  # ms: the step's time.time() - the recorded due time
    fired: list[float]  # ms: WaitSucceeded's timestamp - the recorded due time
    offset: list[float]  # ms: the recorded due time - the intended one
    early: int  # timers that fired before their due time (must be 0)
    span: float  # s: from the first recorded due time to the last
    started: float  # s: to start all
    margin: float  # s: from all suspended to the first due time (negative: set-up overran)
    tail: float  # s: from the last due time to the last result


async def measure(path: Path, args: argparse.Namespace) -> Run:
    n, window, lead = args.n, args.window, args.lead
    engine = Engine(str(path), concurrency=args.concurrency)
    workflow = engine.workflow(timer)

    async with engine:
        opens = time.time() + lead
        due = [opens + window * i / n for i in range(n)]

        began = time.time()
        for i in range(n):  # one after another: each timer starts close to its intended time
            # a set-up slower than --lead would make the delay negative: shows as lateness
            delay = max(0.001, due[i] - time.time())
            await engine.start(workflow, delay, execution_id=f"t{i}")
        started = time.time() - began
        while not await all_suspended(engine, due[0]):  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.01)
        suspended_at = time.time()
        progress(
            f"  {n:,} started in {started:.2f} s, all suspended "
            f"{opens - suspended_at:.2f} s before the first timer; waiting ..."
        )
        results = {
            i: await engine.handle(f"t{i}").result(timeout=lead + window + 60) for i in range(n)
        }
        finished = time.time()
        scheduled: dict[int, float] = {}
        fired: dict[int, float] = {}
        for i in range(n):
            for event in await engine.history(f"t{i}"):
                if event.event_type == "WaitStarted":
                    scheduled[i] = event.details["scheduled_end"]
                elif event.event_type == "WaitSucceeded":
                    fired[i] = event.timestamp.timestamp()

    return Run(
        step=[(results[i] - scheduled[i]) * 1000 for i in range(n)],
        fired=[(fired[i] - scheduled[i]) * 1000 for i in range(n)],
        offset=[(scheduled[i] - due[i]) * 1000 for i in range(n)],
        early=sum(1 for i in range(n) if fired[i] < scheduled[i]),
        span=max(scheduled.values()) - min(scheduled.values()),
        started=started,
        margin=opens - suspended_at,
        tail=finished - due[-1],
    )


PERCENTILES = (50, 95, 99, 100)


def cells(values: list[float]) -> str:
    return "  ".join(f"{percentile(values, p):7.1f}" for p in PERCENTILES)


def print_runs(runs: list[Run], args: argparse.Namespace) -> None:
    print(
        f"timers       {args.n:,} per run due over {args.window:g} s, opening {args.lead:g} s"
        f" after set-up began; {len(runs)} run(s), each on a fresh file"
    )
    print(f"engine       Engine(path, concurrency={args.concurrency}), defaults otherwise")
    print()
    head = (
        f"{'run':>3}  {'set-up s':>8}  {'margin s':>8}  {'span s':>6}  "
        f"{'p50':>7}  {'p95':>7}  {'p99':>7}  {'max':>7}  {'fired p99':>9}  {'early':>5}"
    )
    print("step lateness in ms (the step's time.time() - the recorded due time), per run:")
    print(head)
    print("-" * len(head))
    for i, run in enumerate(runs, 1):
        print(
            f"{i:>3}  {run.started:8.2f}  {run.margin:8.2f}  {run.span:6.3f}  {cells(run.step)}"
            f"  {percentile(run.fired, 99):9.1f}  {run.early:>5}"
        )
    print("(margin: all suspended this long before the first due time; span: of the recorded")
    print(" due times; fired: the WaitSucceeded timestamp - the due time; early: fired before")
    print(" the due time)")
    if any(run.margin < 0 for run in runs):
        print("WARNING: a set-up overran --lead; its early timers were late at birth")
    print()
    pooled: dict[str, list[float]] = {"step": [], "fired": [], "offset": []}
    for run in runs:
        pooled["step"] += run.step
        pooled["fired"] += run.fired
        pooled["offset"] += run.offset
    header = f"{'all runs pooled (ms)':<40}  {'p50':>7}  {'p95':>7}  {'p99':>7}  {'max':>7}"
    print(header)
    print("-" * len(header))
    for name, key in (
        ("step ran: time.time() in the step - due", "step"),
        ("timer fired: WaitSucceeded ts - due", "fired"),
        ("recorded due - intended due (set-up)", "offset"),
    ):
        print(f"{name:<40}  {cells(pooled[key])}")
    print()
    p99s = [percentile(run.step, 99) for run in runs]
    print(
        f"L1 step lateness p99: median over runs {statistics.median(p99s):.1f} ms, "
        f"range {min(p99s):.1f}-{max(p99s):.1f} ms, pooled {percentile(pooled['step'], 99):.1f}"
        " ms (target < 50 ms)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Durable timer wake-up lateness (L1).")
    parser.add_argument("--n", type=int, default=1000, help="timers")
    parser.add_argument("--window", type=float, default=1.0, help="seconds the due times span")
    parser.add_argument(
        "--lead", type=float, default=3.0, help="seconds from set-up to the first due time"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="the engine's concurrency (default: the engine's default)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh file")
    parser.add_argument("--dir", help="where to create the database (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args(argv)
    if min(args.n, args.concurrency, args.repeat) < 1:
        parser.error("--n, --concurrency and --repeat must be at least 1")
    if args.window <= 0 or args.lead <= 0:
        parser.error("--window and --lead must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with session(args.dir, keep=args.keep) as path:
        runs = [asyncio.run(measure(path / f"l1-{i}.db", args)) for i in range(args.repeat)]
        print_runs(runs, args)


if __name__ == "__main__":
    main()
