"""Step throughput and replay throughput of ``durable`` on one SQLite file, next to raw SQLite.

Run from the repository root::

    python benchmarks/bench_steps.py [--steps 2000] [--replay-steps 10000] [--repeat 5] [--dir DIR]

What it measures (every database is a fresh file in one directory on the disk it reports):

* **raw**: what SQLite alone does with the engine's settings (WAL, ``synchronous=FULL``):
  one ~100-byte INSERT per transaction (each commit is an fsync), 1,000 rows per transaction,
  and reading back 100k msgpack-encoded ``StepSucceeded`` events in order and decoding them.
* **S1**: one workflow running ``--steps`` trivial async steps one after the other, from
  ``engine.start`` to the result. Every step is checkpointed before the workflow moves on, so
  the ceiling is the raw commit rate. The same workflow on a ``MemoryStore`` (nothing durable)
  is timed too: the engine alone, so the gap per step is what the store and its commits cost.
* **S3**: replay. A workflow records ``--replay-steps`` steps and then suspends on a one-hour
  ``ctx.wait``. A new engine on a copy of that file, with a virtual clock set past the timer,
  picks the execution up, replays every step from the history and finishes it; timed from
  ``async with engine`` to ``handle.result()``. The pure core (decode the stored rows, fold
  them into a ``ReplayState``) is timed alone to separate it from the driver and the store.

Every figure is measured once per round, ``--repeat`` rounds (:func:`rounds`), so each ratio
can also be taken round by round (:func:`paired`). It only prints figures; nothing here
asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from _machine import MEMORY_FILESYSTEMS, filesystem_of, print_machine

from durable import DurableContext, Engine, VirtualClock
from durable.events import Event, EventType, SubType, decode_events, encode_event
from durable.replay import ReplayState, operation_id
from durable.stores import MemoryStore, SQLiteStore, Store

RAW_COMMIT_ROWS = 2_000
RAW_BATCH_SIZE = 1_000
RAW_BATCHES = 50
RAW_READ_EVENTS = 100_000
RAW_BLOB_BYTES = 100
REPLAY_EXECUTION_ID = "bench-replay"
TIMER_SECONDS = 3600.0


# -- the workflows -------------------------------------------------------------------------


async def noop(i: int) -> int:
    return i


async def sequential_steps(ctx: DurableContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step(noop, i)
    return total


async def steps_then_wait(ctx: DurableContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step(noop, i)
    await ctx.wait(TIMER_SECONDS)
    return total


def make_engine(
    path: Path, *, clock: VirtualClock | None = None, store: Store | None = None
) -> Engine:
    """The engine's defaults on ``path`` (or on ``store``), with the benchmark workflows."""
    engine = Engine(str(path), clock=clock, store=store)
    engine.workflow(sequential_steps)
    engine.workflow(steps_then_wait)
    return engine


def expected_sum(n: int) -> int:
    return n * (n - 1) // 2


def check(what: str, got: object, expected: object) -> None:
    """A correctness check of what was measured (never of how long it took)."""
    if got != expected:
        raise RuntimeError(f"{what}: got {got!r}, expected {expected!r}")


# -- figures ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the table, measured once per repeat.

    ``higher_is_better`` is true for rates and false for durations.
    """

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True

    @property
    def best(self) -> float:
        return max(self.values) if self.higher_is_better else min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def measure(figure: Figure, repeat: int, once: Callable[[], float]) -> Figure:
    figure.values.extend(once() for _ in range(repeat))
    return figure


def rounds(repeat: int, plan: list[tuple[Figure, Callable[[], float]]], what: str) -> None:
    """Measure every figure of ``plan`` once per round, ``repeat`` rounds.

    A figure and the raw rate it is divided by are then taken seconds apart, in every round:
    a drift of the machine (another job's fsyncs, a noisy neighbour) hits both, and
    :func:`paired` can compare them round by round. The order rotates every two rounds, and
    each rotation runs once forwards and once backwards, so a figure neither always runs at
    the same place in the round nor always right after the same other one.
    """
    for r in range(repeat):
        progress(f"{what}: round {r + 1} of {repeat} ...")
        shift = (r // 2) % len(plan)  # each rotation once forwards, once backwards
        order = plan[shift:] + plan[:shift]
        for figure, once in reversed(order) if r % 2 else order:
            figure.values.append(once())


def progress(text: str) -> None:
    """Say what a script is doing, on stderr (stdout keeps only the figures)."""
    print(text, file=sys.stderr, flush=True)


def raw_commit_figure() -> Figure:
    """The figure of the raw 1-row-per-commit rate (:func:`raw_commits`), not measured yet."""
    return Figure(f"raw: 1 row per commit ({RAW_COMMIT_ROWS:,} commits)", "commits/s")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.3f}"


# -- raw SQLite ------------------------------------------------------------------------------


def raw_connect(path: Path) -> sqlite3.Connection:
    """A new file with the engine's settings: WAL, ``synchronous=FULL``."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return conn


def raw_commits(path: Path, rows: int) -> float:
    """Commits/s: one ~100-byte row per ``BEGIN IMMEDIATE ... COMMIT``."""
    blob = os.urandom(RAW_BLOB_BYTES)
    conn = raw_connect(path)
    try:
        start = time.perf_counter()
        for _ in range(rows):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (data) VALUES (?)", (blob,))
            conn.execute("COMMIT")
        return rows / (time.perf_counter() - start)
    finally:
        conn.close()


def raw_batches(path: Path, batches: int, size: int) -> float:
    """Rows/s: ``size`` rows per transaction."""
    params = [(os.urandom(RAW_BLOB_BYTES),)] * size
    conn = raw_connect(path)
    try:
        start = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t (data) VALUES (?)", params)
            conn.execute("COMMIT")
        return batches * size / (time.perf_counter() - start)
    finally:
        conn.close()


def step_succeeded_rows(count: int) -> list[bytes]:
    """``count`` encoded ``StepSucceeded`` events shaped like the engine's own."""
    now = time.time()
    return [
        encode_event(
            Event(
                t=EventType.STEP_SUCCEEDED,
                ts=now + i * 1e-4,
                id=operation_id(None, i + 1),
                st=SubType.STEP.value,
                name="noop",
                result=msgspec.msgpack.encode(i),
                attempt=1,
            )
        )
        for i in range(count)
    ]


def raw_read_setup(path: Path, count: int) -> None:
    conn = raw_connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (seq, data) VALUES (?, ?)", enumerate(step_succeeded_rows(count), 1)
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def raw_read_decode(path: Path) -> float:
    """Events/s: ``SELECT data ... ORDER BY seq`` plus ``decode_events`` over every row."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        start = time.perf_counter()
        rows = [data for (data,) in conn.execute("SELECT data FROM t ORDER BY seq")]
        events = decode_events(rows)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return len(events) / elapsed


# -- S1: sequential steps --------------------------------------------------------------------


def store_for(path: Path, store: str) -> Store | None:
    """``"default"``: ``None`` (the engine's default store, ``writer="auto"``);
    ``"thread"`` and ``"process"``: the SQLite store with that writer; ``"memory"``: a
    :class:`MemoryStore` (nothing durable)."""
    if store == "memory":
        return MemoryStore()
    if store in ("thread", "process"):
        return SQLiteStore(path, writer=store)
    if store != "default":
        raise ValueError(f"unknown store {store!r}")
    return None


async def s1_once(path: Path, steps: int, *, store: str = "default") -> float:
    """Steps/s of one workflow, ``start()`` to result, on the engine's default store.

    ``store`` picks another one (see :func:`store_for`): ``"memory"`` is the engine alone,
    so the difference per step is what the SQLite store and its commits cost.
    """
    engine = make_engine(path, store=store_for(path, store))
    async with engine:
        start = time.perf_counter()
        result = await engine.run("sequential_steps", steps)
        elapsed = time.perf_counter() - start
    check("S1 result", result, expected_sum(steps))
    return steps / elapsed


# -- S3: replay ------------------------------------------------------------------------------


async def s3_record(path: Path, steps: int) -> list[bytes]:
    """Record ``steps`` steps and a pending timer; returns the stored history rows.

    This is set-up, not measured: it runs with ``synchronous=NORMAL`` (no fsync per step)
    to keep the script quick; the file it leaves holds the same rows as with ``FULL``.
    """
    engine = make_engine(path, store=SQLiteStore(path, synchronous="NORMAL"))
    async with engine:
        await engine.start("steps_then_wait", steps, execution_id=REPLAY_EXECUTION_ID)
        await engine.wait_idle()  # the invocation has suspended on the timer
    client = Engine(str(path), worker=False)
    async with client:
        execution = await client.get(REPLAY_EXECUTION_ID)
        loaded = await client.store.load(REPLAY_EXECUTION_ID)
    check("S3 status after recording", execution.status.value, "RUNNING")
    if loaded is None:
        raise RuntimeError("S3: the recorded execution is missing")
    rows = loaded[1]
    # ExecutionStarted, (StepStarted, StepSucceeded) per step, WaitStarted, InvocationCompleted
    check("S3 history length", len(rows), 2 * steps + 3)
    check("S3 suspended on", decode_events(rows[-2:])[0].t, EventType.WAIT_STARTED.value)
    return rows


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy (``-wal`` included) through SQLite's backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@dataclass
class ReplayRun:
    elapsed: float  # async with entry -> handle.result() returned
    opened: float  # async with entry -> engine open (store migrated, worker started)


async def s3_replay_once(path: Path, steps: int) -> ReplayRun:
    # The recorded timestamps come from the system clock; the timer is due an hour later.
    clock = VirtualClock(start=time.time() + TIMER_SECONDS + 1)
    engine = make_engine(path, clock=clock)
    start = time.perf_counter()
    async with engine:
        opened = time.perf_counter() - start
        result = await engine.handle(REPLAY_EXECUTION_ID).result()
        elapsed = time.perf_counter() - start
    check("S3 result", result, expected_sum(steps))
    return ReplayRun(elapsed=elapsed, opened=opened)


async def s3_load_once(path: Path) -> float:
    """Events/s of ``store.load`` (the read a replay starts with)."""
    client = Engine(str(path), worker=False)
    async with client:
        start = time.perf_counter()
        loaded = await client.store.load(REPLAY_EXECUTION_ID)
        elapsed = time.perf_counter() - start
    if loaded is None:
        raise RuntimeError("S3: the recorded execution is missing")
    return len(loaded[1]) / elapsed


# -- running ---------------------------------------------------------------------------------


class Workdir:
    """The directory holding every database of a run, handing out fresh file names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._numbers = itertools.count(1)

    def fresh(self, stem: str) -> Path:
        return self.path / f"{stem}-{next(self._numbers)}.db"


def run(work: Workdir, args: argparse.Namespace) -> tuple[list[Figure], list[tuple[str, str]]]:
    repeat, n, m = args.repeat, args.steps, args.replay_steps

    progress("raw read: writing the events ...")
    read_path = work.fresh("raw-read")
    raw_read_setup(read_path, RAW_READ_EVENTS)
    progress(f"S3: recording {m:,} steps ...")
    master = work.fresh("s3-recorded")
    rows = asyncio.run(s3_record(master, m))
    count = len(rows)
    events = decode_events(rows)

    raw_commit = raw_commit_figure()
    raw_batch = Figure(f"raw: {RAW_BATCH_SIZE:,} rows per commit", "rows/s")
    raw_read = Figure(f"raw: SELECT + decode_events ({RAW_READ_EVENTS:,} events)", "events/s")
    s1 = Figure(f"S1: sequential steps ({n:,} per workflow)", "steps/s")
    s1_process = Figure('S1 with the writer process (writer="process")', "steps/s")
    s1_engine = Figure("S1 engine alone: on MemoryStore, not durable", "steps/s")
    s3_events = Figure(f"S3: replay, engine end to end ({count:,} events)", "events/s")
    s3_steps = Figure(f"S3: replay ({m:,} steps)", "steps/s")
    s3_open = Figure("S3:   of which opening the engine", "ms", higher_is_better=False)
    s3_load = Figure("S3: store.load of the history", "events/s")
    s3_core = Figure("S3: pure core: ReplayState.from_rows(rows)", "events/s")
    s3_decode = Figure("S3:   decode_events alone", "events/s")
    s3_fold = Figure("S3:   ReplayState.from_events alone", "events/s")

    def replay() -> float:
        copy = work.fresh("s3-replay")
        copy_database(master, copy)
        replayed = asyncio.run(s3_replay_once(copy, m))
        s3_steps.values.append(m / replayed.elapsed)
        s3_open.values.append(replayed.opened * 1000)
        return count / replayed.elapsed

    rounds(
        repeat,
        [
            (raw_commit, lambda: raw_commits(work.fresh("raw-commit"), RAW_COMMIT_ROWS)),
            (raw_batch, lambda: raw_batches(work.fresh("raw-batch"), RAW_BATCHES, RAW_BATCH_SIZE)),
            (raw_read, lambda: raw_read_decode(read_path)),
            (s1, lambda: asyncio.run(s1_once(work.fresh("s1"), n))),
            (
                s1_process,
                lambda: asyncio.run(s1_once(work.fresh("s1-process"), n, store="process")),
            ),
            (
                s1_engine,
                lambda: asyncio.run(s1_once(work.fresh("s1-memory"), n, store="memory")),
            ),
            (s3_events, replay),
            (s3_load, lambda: asyncio.run(s3_load_once(master))),
            (s3_core, lambda: count / timed(lambda: ReplayState.from_rows(rows))),
            (s3_decode, lambda: count / timed(lambda: decode_events(rows))),
            (s3_fold, lambda: count / timed(lambda: ReplayState.from_events(events))),
        ],
        "raw, S1 and S3",
    )

    figures = [raw_commit, raw_batch, raw_read, s1, s1_process, s1_engine]
    figures += [s3_events, s3_steps, s3_open, s3_load, s3_core, s3_decode, s3_fold]
    ratios = [
        ("S1 steps/s / raw commits/s", ratio(s1, raw_commit, same_rounds=True)),
        (
            "S1 writer process steps/s / raw commits/s",
            ratio(s1_process, raw_commit, same_rounds=True),
        ),
        ("S3 events/s / raw read+decode events/s", ratio(s3_events, raw_read, same_rounds=True)),
        ("S3 events/s / pure-core events/s", ratio(s3_events, s3_core, same_rounds=True)),
        ("S1 time per step (median)", f"{1e6 / s1.median:,.0f} us"),
        ("S1 of which the engine alone", f"{1e6 / s1_engine.median:,.0f} us"),
        ("raw time per commit (median)", f"{1e6 / raw_commit.median:,.0f} us"),
        ("S3 time per replayed step (median)", f"{1e6 / s3_steps.median:,.1f} us"),
    ]
    return figures, ratios


def paired(a: Figure, b: Figure) -> float:
    """The median over rounds of ``a / b``, each taken within one round (see :func:`rounds`)."""
    return statistics.median(x / y for x, y in zip(a.values, b.values, strict=True))


def ratio(a: Figure, b: Figure, *, same_rounds: bool = False) -> str:
    """``a / b`` as best/best and median/median; with ``same_rounds`` (both measured in the
    same :func:`rounds`) also the median of the rounds' own ratios."""
    text = f"{a.best / b.best:.3f} (best/best)  {a.median / b.median:.3f} (median/median)"
    if same_rounds:
        text += f"  {paired(a, b):.3f} (paired: median of the rounds' ratios)"
    return text


def print_table(figures: list[Figure], ratios: list[tuple[str, str]]) -> None:
    width = max(len(f.name) for f in figures)
    print(f"{'figure':<{width}}  {'best':>12}  {'median':>12}  unit")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 12}  {'-' * 9}")
    for f in figures:
        print(f"{f.name:<{width}}  {fmt(f.best):>12}  {fmt(f.median):>12}  {f.unit}")
    print()
    width = max(len(name) for name, _ in ratios)
    for name, value in ratios:
        print(f"{name:<{width}}  {value}")


def choose_directory(requested: str | None) -> tuple[Path, str]:
    """A fresh directory for the databases, and why it is where it is."""
    if requested is not None:
        base = Path(requested)
        base.mkdir(parents=True, exist_ok=True)
        why = "--dir"
    else:
        tmp = tempfile.gettempdir()
        if filesystem_of(tmp)["type"] in MEMORY_FILESYSTEMS:
            base, why = Path.cwd(), f"{tmp} is a memory filesystem: using the current directory"
        else:
            base, why = Path(tmp), f"{tmp} is on disk"
    return Path(tempfile.mkdtemp(prefix="durable-bench-", dir=base)), why


@contextlib.contextmanager
def session(requested: str | None, *, keep: bool, capture_logs: bool = True) -> Iterator[Path]:
    """A benchmark run: its directory, the machine and command printed first; afterwards the
    directory removed (unless ``keep``), the engine's log counts and the total time."""
    import _enginelog

    if capture_logs:
        _enginelog.capture()
    path, why = choose_directory(requested)
    print_machine(path)
    print(f"command     {shlex.join(sys.orig_argv)}")
    print(f"databases   {path} ({why})")
    print()
    began = time.perf_counter()
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
    print()
    if capture_logs:
        _enginelog.print_counts()
    print(f"\ntotal time {time.perf_counter() - began:.1f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Step and replay throughput of durable.")
    parser.add_argument("--steps", type=int, default=2000, help="S1: steps in the workflow")
    parser.add_argument(
        "--replay-steps", type=int, default=10_000, help="S3: steps recorded, then replayed"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure")
    parser.add_argument("--dir", help="where to create the databases (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    args = parser.parse_args(argv)
    for name in ("steps", "replay_steps", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with session(args.dir, keep=args.keep, capture_logs=False) as path:
        figures, ratios = run(Workdir(path), args)
        print_table(figures, ratios)


if __name__ == "__main__":
    main()
