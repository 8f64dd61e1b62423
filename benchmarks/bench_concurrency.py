"""Step throughput of many concurrent executions (S2), next to the raw SQLite commit rate.

Run from the repository root::

    python benchmarks/bench_concurrency.py [--n 500] [--k 10] [--repeat 3]
        [--sweep 1,10,50,100,200,500] [--min-steps 2000] [--sustained WAVES]
        [--dir DIR] [--keep]

What it measures (every database is a fresh file with the engine's defaults, WAL and
``synchronous=FULL``, in one directory on the disk it reports):

* **raw**: one ~100-byte INSERT per ``BEGIN IMMEDIATE ... COMMIT`` with bare ``sqlite3``
  (``bench_steps.raw_commits``), measured in the same run, in rounds with S2 and its variants
  (``bench_steps.rounds``; ratios also paired round by round): the ceiling of anything that makes
  each checkpoint durable before moving on *without* sharing commits.
* **S2**: ``--n`` executions of a workflow awaiting ``--k`` trivial async steps one after the
  other, all started at once (``Engine(path, concurrency=max(100, n))`` so the worker admits
  every one), timed from before the first ``engine.start`` to the last result. Steps/s counts
  the ``n * k`` steps; every step is checkpointed before its workflow moves on, and the
  execution's creation and its final commit are inside the timing too. Group commit lets the
  executions share fsyncs, so S2 can beat the raw rate by a wide margin.
* **the writers**: S2 runs on the store's defaults (``writer="auto"``: the first batch of
  500 creations starts the writer process in the background, inside the timing, and the
  thread writes until it is ready), and again with ``writer="thread"`` (the thread only, the
  default before) and ``writer="process"`` (the process started by ``open()``, before the
  timing).
* **engine alone**: the S2 workload on a ``MemoryStore`` (no SQLite, nothing durable): the
  ceiling of any store under this engine, and how much of S2's time is the store's.
* **sweep** (``--sweep C1,C2,...``): the same workload at each concurrency ``C``: waves of
  ``C`` executions started at once and awaited, repeated until at least ``--min-steps`` steps
  ran (one wave when ``C * k`` is already that many), on a fresh file per point. This is
  what ``compare_dbos.py`` runs for its chart.
* **sustained** (``--sustained WAVES``): ``WAVES`` waves of ``--n`` executions x ``--k`` steps,
  one after the other, into *one* database, which grows as a service's does: with the ids
  the engine makes (time-ordered UUIDv7) and with random UUIDv4 ids passed by the caller
  (``execution_id=uuid.uuid4().hex``), on each writer. The events of an execution are kept
  in the order of its id, so random ids spread each commit's writes over the whole file.

It only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench_steps import (
    RAW_COMMIT_ROWS,
    Figure,
    Workdir,
    check,
    expected_sum,
    fmt,
    measure,
    print_table,
    progress,
    ratio,
    raw_commit_figure,
    raw_commits,
    rounds,
    sequential_steps,
    session,
    store_for,
)

from durable import Engine

DEFAULT_CONCURRENCY = 100  # the Engine's default
DEFAULT_SWEEP = (1, 10, 50, 100, 200, 500)


def make_engine(path: Path, concurrency: int, *, store: str = "default") -> Engine:
    """The engine's defaults, with a worker that admits ``concurrency`` invocations at once
    (on another store when asked: see ``bench_steps.store_for``)."""
    engine = Engine(
        str(path),
        concurrency=max(DEFAULT_CONCURRENCY, concurrency),
        store=store_for(path, store),
    )
    engine.workflow(sequential_steps)
    return engine


def waves_for(concurrency: int, steps: int, min_steps: int) -> int:
    """How many waves of ``concurrency`` executions make at least ``min_steps`` steps."""
    return max(1, math.ceil(min_steps / (concurrency * steps)))


async def wave(engine: Engine, concurrency: int, steps: int, random_ids: bool = False) -> None:
    """Start ``concurrency`` executions at once and await every result (``random_ids``: each
    started with a UUIDv4 id of its own instead of the one the engine makes)."""

    async def one() -> None:
        execution_id = uuid.uuid4().hex if random_ids else None
        handle = await engine.start("sequential_steps", steps, execution_id=execution_id)
        check("S2 result", await handle.result(), expected_sum(steps))

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(one())


async def concurrent_once(
    path: Path,
    concurrency: int,
    steps: int,
    waves: int = 1,
    *,
    store: str = "default",
    random_ids: bool = False,
) -> float:
    """Steps/s of ``waves`` waves of ``concurrency`` executions x ``steps`` steps."""
    engine = make_engine(path, concurrency, store=store)
    async with engine:
        start = time.perf_counter()
        for _ in range(waves):
            await wave(engine, concurrency, steps, random_ids)
        elapsed = time.perf_counter() - start
    return concurrency * steps * waves / elapsed


def parse_sweep(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be integers of at least 1")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a concurrency named twice: {text!r}")
    return values


@dataclass
class SweepPoint:
    concurrency: int
    waves: int
    steps: int  # in all waves
    figure: Figure


def run(
    work: Workdir, args: argparse.Namespace
) -> tuple[list[Figure], list[tuple[str, str]], list[SweepPoint]]:
    repeat, n, k = args.repeat, args.n, args.k

    raw_commit = raw_commit_figure()
    s2 = Figure(f"S2: {n:,} concurrent executions x {k} steps (defaults)", "steps/s")
    s2_thread = Figure('S2 with the writer thread only (writer="thread")', "steps/s")
    s2_process = Figure('S2 with the writer process from open() (writer="process")', "steps/s")
    engine_alone = Figure("S2 engine alone: on MemoryStore, not durable", "steps/s")
    rounds(
        repeat,
        [
            (raw_commit, lambda: raw_commits(work.fresh("raw-commit"), RAW_COMMIT_ROWS)),
            (s2, lambda: asyncio.run(concurrent_once(work.fresh("s2"), n, k))),
            (
                s2_thread,
                lambda: asyncio.run(concurrent_once(work.fresh("s2-thread"), n, k, store="thread")),
            ),
            (
                s2_process,
                lambda: asyncio.run(
                    concurrent_once(work.fresh("s2-process"), n, k, store="process")
                ),
            ),
            (
                engine_alone,
                lambda: asyncio.run(concurrent_once(work.fresh("s2-memory"), n, k, store="memory")),
            ),
        ],
        f"raw and S2 ({n:,} executions x {k} steps)",
    )
    figures = [raw_commit, s2, s2_thread, s2_process, engine_alone]
    ratios = [
        ("S2 steps/s / raw commits/s", ratio(s2, raw_commit, same_rounds=True)),
        (
            "S2 writer thread steps/s / raw commits/s",
            ratio(s2_thread, raw_commit, same_rounds=True),
        ),
        (
            "S2 writer process steps/s / raw commits/s",
            ratio(s2_process, raw_commit, same_rounds=True),
        ),
        ("engine alone steps/s / raw commits/s", ratio(engine_alone, raw_commit, same_rounds=True)),
        ("S2 time per step (median)", f"{1e6 / s2.median:,.1f} us"),
        ("S2 of which the engine alone", f"{1e6 / engine_alone.median:,.1f} us"),
        ("raw time per commit (median)", f"{1e6 / raw_commit.median:,.0f} us"),
    ]
    if args.sustained:
        sustained = run_sustained(work, args)
        figures += sustained
        ratios += [(f"{f.name} / raw commits/s", ratio(f, raw_commit)) for f in sustained]
        for writer, (ordered, random) in (
            ("default writer (auto)", sustained[0:2]),
            ("writer process", sustained[2:4]),
        ):
            text = ratio(ordered, random, same_rounds=True)
            ratios.append((f"sustained, {writer}: engine ids / random ids", text))
    sweep: list[SweepPoint] = []
    for c in args.sweep or []:
        waves = waves_for(c, k, args.min_steps)
        progress(f"sweep: concurrency {c:,}, {waves} wave(s) x {repeat} ...")
        figure = measure(
            Figure(f"sweep: concurrency {c:,}", "steps/s"),
            repeat,
            lambda c=c, waves=waves: asyncio.run(
                concurrent_once(work.fresh(f"sweep-{c}"), c, k, waves)
            ),
        )
        sweep.append(SweepPoint(c, waves, c * k * waves, figure))
    return figures, ratios, sweep


def run_sustained(work: Workdir, args: argparse.Namespace) -> list[Figure]:
    """S2 again, ``--sustained`` waves into one database: engine ids and random ids, on each
    writer; the four in rounds (``bench_steps.rounds``), so a drift of the machine hits all."""
    n, k, waves = args.n, args.k, args.sustained
    plan = [
        (
            Figure(f"sustained: {waves} waves, {writer}, {ids}", "steps/s"),
            lambda store=store, random_ids=random_ids: asyncio.run(
                concurrent_once(
                    work.fresh("sustained"), n, k, waves, store=store, random_ids=random_ids
                )
            ),
        )
        for store, writer in (("default", "default writer (auto)"), ("process", "writer process"))
        for random_ids, ids in ((False, "engine ids (UUIDv7)"), (True, "random ids (UUIDv4)"))
    ]
    rounds(args.repeat, plan, f"sustained: {waves} waves x 4")
    return [figure for figure, _ in plan]


def print_sweep(sweep: list[SweepPoint], raw_commit: Figure) -> None:
    print()
    print(f"{'concurrency':>11}  {'waves':>5}  {'steps':>6}  {'best':>10}  {'median':>10}  x raw")
    print(f"{'-' * 11}  {'-' * 5}  {'-' * 6}  {'-' * 10}  {'-' * 10}  {'-' * 6}")
    for p in sweep:
        f = p.figure
        x = f.median / raw_commit.median
        print(
            f"{p.concurrency:>11,}  {p.waves:>5,}  {p.steps:>6,}  "
            f"{fmt(f.best):>10}  {fmt(f.median):>10}  {x:6.2f}"
        )
    print("(steps/s; x raw = median over the median raw 1-row-per-commit rate)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Concurrent step throughput of durable (S2).")
    parser.add_argument("--n", type=int, default=500, help="S2: executions started at once")
    parser.add_argument("--k", type=int, default=10, help="steps per execution")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument(
        "--sweep",
        type=parse_sweep,
        help=f"also measure these concurrencies (e.g. {','.join(map(str, DEFAULT_SWEEP))})",
    )
    parser.add_argument(
        "--min-steps", type=int, default=2000, help="sweep: steps per point at least (waves)"
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=0,
        metavar="WAVES",
        help="also run WAVES waves of --n executions into one database (e.g. 8)",
    )
    parser.add_argument("--dir", help="where to create the databases (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    args = parser.parse_args(argv)
    for name in ("n", "k", "repeat", "min_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.sustained < 0:
        parser.error("--sustained must be at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with session(args.dir, keep=args.keep) as path:
        figures, ratios, sweep = run(Workdir(path), args)
        print_table(figures, ratios)
        if sweep:
            print_sweep(sweep, figures[0])


if __name__ == "__main__":
    main()
