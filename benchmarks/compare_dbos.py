"""The same step workloads on ``durable`` and on DBOS Transact, side by side in one run.

Run from the repository root, with the ``bench`` extra installed (``pip install -e .[bench]``:
DBOS Transact and matplotlib, never dependencies of the library itself)::

    python benchmarks/compare_dbos.py [--steps 2000] [--k 10] [--sweep 1,10,50,100,200,500]
        [--min-steps 2000] [--repeat 3] [--dir DIR] [--keep] [--no-chart]

Workloads (every run on a fresh SQLite file in one directory on the disk it reports, each in
its own Python process so neither engine's threads or caches touch the other's figures; the
repeats alternate the two engines, workload by workload):

* **S1**: one workflow awaiting ``--steps`` trivial async steps one after the other, timed
  from the start call to its result.
* **concurrency sweep**: for each ``C`` of ``--sweep``: waves of ``C`` workflows of ``--k``
  trivial async steps each, all started at once and awaited, until at least ``--min-steps``
  steps ran (``bench_concurrency.py``'s sweep); steps/s over all waves.

The engines:

* ``durable``: ``Engine(path)`` with its defaults (WAL, ``synchronous=FULL``, group commit),
  ``concurrency=max(100, C)``; ``bench_steps.s1_once`` and ``bench_concurrency.concurrent_once``.
* ``durable-process``: the same with ``store=SQLiteStore(path, writer="process")``: group
  commit in a writer process, on the other core.
* DBOS Transact: ``@DBOS.workflow()`` / ``@DBOS.step()`` on ``async def`` functions
  (``_dbos_workloads.py``), started with ``DBOS.start_workflow_async`` and awaited with
  ``handle.get_result()``; its SQLite system database (``system_database_url=sqlite:///...``,
  everything else DBOS's defaults) on a fresh file the script first switches to WAL (DBOS
  leaves SQLite's default rollback journal). A SQLAlchemy ``connect`` listener records the
  ``synchronous`` level DBOS's connections come with and sets ``synchronous=FULL`` on each
  (a no-op where that is already the level), so both engines fsync every commit. The
  journal mode and ``synchronous`` of DBOS's own connections, and ``PRAGMA journal_mode``
  on the file afterwards, are reported.

The raw 1-row-per-commit rate of bare ``sqlite3`` (WAL, ``synchronous=FULL``) is measured in
the same run, right before each workload in each repeat. The script prints a table (best and
median of ``--repeat`` runs, the ratio durable/DBOS of the medians, and each over the raw
rate; the "paired" columns take each repeat's own ratio first, a workload's figures over
the raw rate taken right before them, durable over DBOS within the repeat, then the
median), then writes
``steps_vs_concurrency.png`` (steps/s against concurrency, both engines, log axes) and
``steps_vs_concurrency.json`` (every figure, the machine, the command) next to this script.

It only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from _machine import print_machine
from bench_concurrency import DEFAULT_SWEEP, concurrent_once, parse_sweep, waves_for
from bench_steps import (
    RAW_COMMIT_ROWS,
    Figure,
    Workdir,
    choose_directory,
    fmt,
    paired,
    progress,
    raw_commit_figure,
    raw_commits,
    s1_once,
)

HERE = Path(__file__).resolve().parent
CHART = HERE / "steps_vs_concurrency.png"
NUMBERS = HERE / "steps_vs_concurrency.json"
ENGINES = ("durable", "durable-process", "dbos")
DURABLE = ("durable", "durable-process")
LABELS = {
    "durable": "durable",
    "durable-process": "durable writer=process",
    "dbos": "DBOS Transact",
}
CHILD_TIMEOUT = 900.0
RESULT_PREFIX = "RESULT "
S2_TARGET_X_RAW = 4.0  # issue 6: S2 >= 4 x the raw 1-row-per-commit rate


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- one measurement, in a child process ------------------------------------------------------


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def durable_child(spec: dict[str, Any]) -> dict[str, Any]:
    import _enginelog

    _enginelog.capture()
    path = Path(spec["db"])
    store = "process" if spec["engine"] == "durable-process" else "default"
    if spec["workload"] == "s1":
        value = asyncio.run(s1_once(path, spec["steps"], store=store))
    else:
        c, k, waves = spec["concurrency"], spec["k"], spec["waves"]
        value = asyncio.run(concurrent_once(path, c, k, waves, store=store))
    return {
        "value": value,
        "journal_mode": journal_mode(path),
        "synchronous": "FULL (the engine's default)",
        "log": _enginelog.counts(),
    }


SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def dbos_child(spec: dict[str, Any]) -> dict[str, Any]:
    import _dbos_workloads as wl
    import sqlalchemy as sa
    from dbos import DBOS

    path = Path(spec["db"])
    # DBOS keeps SQLite's default rollback journal: make the fresh file WAL (it persists).
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()

    seen: dict[str, set[str]] = {"as_opened": set(), "set": set(), "journal": set()}
    connections = 0

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def full_sync(dbapi_conn: Any, _record: Any) -> None:
        nonlocal connections
        if not isinstance(dbapi_conn, sqlite3.Connection):
            return
        connections += 1
        level = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
        seen["as_opened"].add(SYNCHRONOUS_NAMES.get(level, str(level)))
        dbapi_conn.execute("PRAGMA synchronous = FULL")
        level = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
        seen["set"].add(SYNCHRONOUS_NAMES.get(level, str(level)))
        seen["journal"].add(dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0])

    DBOS(
        config={
            "name": "durable-bench",
            "system_database_url": f"sqlite:///{path}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()

    async def run_s1(steps: int) -> float:
        start = time.perf_counter()
        handle = await DBOS.start_workflow_async(wl.sequential_steps, steps)
        result = await handle.get_result()
        elapsed = time.perf_counter() - start
        expect(result, steps * (steps - 1) // 2)
        return steps / elapsed

    async def run_waves(concurrency: int, steps: int, waves: int) -> float:
        async def one() -> None:
            handle = await DBOS.start_workflow_async(wl.sequential_steps, steps)
            expect(await handle.get_result(), steps * (steps - 1) // 2)

        start = time.perf_counter()
        for _ in range(waves):
            async with asyncio.TaskGroup() as tg:
                for _ in range(concurrency):
                    tg.create_task(one())
        return concurrency * steps * waves / (time.perf_counter() - start)

    try:
        if spec["workload"] == "s1":
            value = asyncio.run(run_s1(spec["steps"]))
        else:
            value = asyncio.run(run_waves(spec["concurrency"], spec["k"], spec["waves"]))
    finally:
        DBOS.destroy()
    return {
        "value": value,
        "journal_mode": journal_mode(path),
        "dbos_connections": connections,
        "dbos_connection_journal_mode": sorted(seen["journal"]),
        "dbos_synchronous_as_opened": sorted(seen["as_opened"]),
        "dbos_synchronous_set": sorted(seen["set"]),
    }


def expect(got: object, expected: object) -> None:
    if got != expected:
        raise RuntimeError(f"wrong result: got {got!r}, expected {expected!r}")


def child_main(spec: dict[str, Any]) -> None:
    run = dbos_child if spec["engine"] == "dbos" else durable_child
    out = run(spec)
    print(RESULT_PREFIX + json.dumps(out), flush=True)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{spec['engine']} {spec['workload']} failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


# -- the run ----------------------------------------------------------------------------------


def run(work: Workdir, args: argparse.Namespace) -> dict[str, Any]:
    raw = raw_commit_figure()
    workloads: list[dict[str, Any]] = [{"workload": "s1", "steps": args.steps, "key": "S1"}]
    for c in args.sweep:
        waves = waves_for(c, args.k, args.min_steps)
        workloads.append(
            {"workload": "sweep", "concurrency": c, "k": args.k, "waves": waves, "key": f"C={c}"}
        )
    values: dict[str, dict[str, list[float]]] = {e: {} for e in args.engines}
    infos: dict[str, list[dict[str, Any]]] = {e: [] for e in args.engines}
    raw_before: dict[str, list[float]] = {w["key"]: [] for w in workloads}
    for r in range(args.repeat):
        for workload in workloads:
            key = workload["key"]
            # the raw rate right before each workload's runs (about half a second): each
            # repeat's figures are also divided by the raw rate taken with them ("paired")
            progress(f"repeat {r + 1}/{args.repeat}: raw SQLite before {key} ...")
            rate = raw_commits(work.fresh("raw-commit"), RAW_COMMIT_ROWS)
            raw.values.append(rate)
            raw_before[key].append(rate)
            order = args.engines if r % 2 == 0 else list(reversed(args.engines))
            for engine in order:
                progress(f"repeat {r + 1}/{args.repeat}: {LABELS[engine]} {key} ...")
                spec = dict(workload, engine=engine, db=str(work.fresh(f"{engine}-{key}")))
                out = run_child(spec)
                values[engine].setdefault(key, []).append(out.pop("value"))
                infos[engine].append(out)
    return {
        "raw": raw,
        "raw_before": raw_before,
        "workloads": workloads,
        "values": values,
        "infos": infos,
    }


def describe(workload: dict[str, Any]) -> str:
    if workload["workload"] == "s1":
        return f"S1: 1 workflow x {workload['steps']:,} steps"
    c, k, waves = workload["concurrency"], workload["k"], workload["waves"]
    plural = "s" if c > 1 else ""
    return f"{c:,} workflow{plural} at once x {k} steps ({waves} wave{'s' if waves > 1 else ''})"


def summarize(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The figures as plain data (what the JSON file holds and the table shows)."""
    raw: Figure = out["raw"]
    rows = []
    for workload in out["workloads"]:
        key = workload["key"]
        row: dict[str, Any] = {"key": key, "workload": describe(workload)}
        if workload["workload"] == "sweep":
            row["concurrency"] = workload["concurrency"]
            row["steps"] = workload["concurrency"] * workload["k"] * workload["waves"]
        else:
            row["steps"] = workload["steps"]
        row["raw_before"] = out["raw_before"][key]  # the raw rate taken before each repeat's runs
        for engine in args.engines:
            figure = Figure(key, "steps/s", out["values"][engine][key])
            row[engine] = {
                "best": figure.best,
                "median": figure.median,
                "values": figure.values,
                "x_raw_median": figure.median / raw.median,
                "x_raw_paired": paired(figure, Figure(key, "commits/s", out["raw_before"][key])),
            }
        for engine in (e for e in DURABLE if e in row and "dbos" in row):
            row[f"{engine}_over_dbos_median"] = row[engine]["median"] / row["dbos"]["median"]
            row[f"{engine}_over_dbos_paired"] = paired(
                Figure(key, "steps/s", row[engine]["values"]),
                Figure(key, "steps/s", row["dbos"]["values"]),
            )
        rows.append(row)
    infos = out["infos"]
    config: dict[str, Any] = {}
    if "dbos" in infos:
        config["dbos"] = {
            "version": version("dbos"),
            "sqlalchemy": version("sqlalchemy"),
            "api": "async: @DBOS.workflow() / @DBOS.step() on async def, "
            "DBOS.start_workflow_async + handle.get_result()",
            "system_database_url": "sqlite:///<fresh file>",
            "file_journal_mode_after": sorted({i["journal_mode"] for i in infos["dbos"]}),
            "connection_journal_mode": sorted(
                {m for i in infos["dbos"] for m in i["dbos_connection_journal_mode"]}
            ),
            "synchronous_as_opened_by_dbos": sorted(
                {m for i in infos["dbos"] for m in i["dbos_synchronous_as_opened"]}
            ),
            "synchronous_set_by_benchmark": sorted(
                {m for i in infos["dbos"] for m in i["dbos_synchronous_set"]}
            ),
            "connections_per_run_max": max(i["dbos_connections"] for i in infos["dbos"]),
            "other_settings": "DBOS defaults (sys_db_pool_size 20, default executor threads)",
        }
    for engine in (e for e in DURABLE if e in infos):
        log: dict[str, int] = {}
        for info in infos[engine]:
            for kind, n in info["log"].items():
                log[kind] = log.get(kind, 0) + n
        store = ", store=SQLiteStore(path, writer='process')" if engine != "durable" else ""
        config[engine] = {
            "version": version("durable"),
            "file_journal_mode_after": sorted({i["journal_mode"] for i in infos[engine]}),
            "synchronous": "FULL (the engine's default)",
            "engine": f"Engine(path, concurrency=max(100, C){store}), defaults otherwise",
            "log": log,
        }
    return {
        "command": shlex.join(sys.orig_argv),
        "repeat": args.repeat,
        "raw_commits_per_s": {"best": raw.best, "median": raw.median, "values": raw.values},
        "rows": rows,
        "config": config,
    }


def print_summary(summary: dict[str, Any], args: argparse.Namespace) -> None:
    raw = summary["raw_commits_per_s"]
    print(
        f"raw: 1 row per commit ({RAW_COMMIT_ROWS:,} commits, bare sqlite3, WAL, FULL): "
        f"best {fmt(raw['best'])}, median {fmt(raw['median'])} commits/s"
    )
    print()
    versus = [e for e in DURABLE if e in args.engines] if "dbos" in args.engines else []
    head = f"{'workload (steps/s)':<40}"
    for engine in args.engines:
        head += f"  {LABELS[engine] + ' best':>18}  {'median':>9}  {'x raw':>6}  {'paired':>6}"
    for engine in versus:
        head += f"  {LABELS[engine].replace('durable ', '') + '/DBOS':>14}  {'paired':>6}"
    print(head)
    print("-" * len(head))
    for row in summary["rows"]:
        line = f"{row['workload']:<40}"
        for engine in args.engines:
            fig = row[engine]
            line += f"  {fmt(fig['best']):>18}  {fmt(fig['median']):>9}"
            line += f"  {fig['x_raw_median']:6.2f}  {fig['x_raw_paired']:6.2f}"
        for engine in versus:
            line += f"  {row[f'{engine}_over_dbos_median']:14.1f}"
            line += f"  {row[f'{engine}_over_dbos_paired']:6.1f}"
        print(line)
    versus_note = "; .../DBOS: of medians" if versus else ""
    print(
        f"(x raw: median over the median raw 1-row-per-commit rate{versus_note}; paired: the"
        " median of each repeat's own ratio, the raw rate taken right before that workload)"
    )
    print()
    for engine, config in summary["config"].items():
        print(f"{LABELS[engine]} configuration:")
        for key, value in config.items():
            if key == "log":
                continue
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"  {key:<32}  {shown}")
    for engine in (e for e in DURABLE if e in summary["config"]):
        log = summary["config"][engine]["log"]
        print(f"{LABELS[engine]} engine log, all runs (info level and above):")
        if not log:
            print("  no lines")
        for kind, n in log.items():
            print(f"  {n:>9,}  {kind}")


def write_chart(summary: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if "concurrency" in r]
    if not rows:
        return
    xs = [r["concurrency"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = {"durable": "tab:blue", "durable-process": "tab:green", "dbos": "tab:orange"}
    # at each point the higher of the two durable medians is labelled above it and the
    # lower one below, so that close lines do not put their labels on top of each other
    top = [max((r[e]["median"] for e in args.engines if e in DURABLE), default=0.0) for r in rows]
    for engine in args.engines:
        med = [r[engine]["median"] for r in rows]
        low = [min(r[engine]["values"]) for r in rows]
        high = [max(r[engine]["values"]) for r in rows]
        ax.plot(xs, med, marker="o", color=colors[engine], label=f"{LABELS[engine]} (median)")
        ax.fill_between(xs, low, high, color=colors[engine], alpha=0.15)
        for x, y, highest in zip(xs, med, top, strict=True):
            below = engine in DURABLE and y < highest
            ax.annotate(
                f"{y:,.0f}",
                (x, y),
                textcoords="offset points",
                xytext=(0, -13 if below else 7),
                ha="center",
                fontsize=8,
                color=colors[engine],
            )
    raw = summary["raw_commits_per_s"]["median"]
    ax.axhline(raw, color="gray", linestyle="--", linewidth=1)
    ax.annotate(
        f"raw sqlite3: 1 row per commit ({raw:,.0f}/s)",
        (xs[0], raw),
        textcoords="offset points",
        xytext=(2, 4),
        fontsize=8,
        color="gray",
    )
    target = S2_TARGET_X_RAW * raw
    ax.axhline(target, color="gray", linestyle=":", linewidth=1)
    ax.annotate(
        f"S2 target (issue 6): {S2_TARGET_X_RAW:g} x raw",
        (xs[0], target),
        textcoords="offset points",
        xytext=(2, 4),
        fontsize=8,
        color="gray",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("workflows running at once")
    ax.set_ylabel(f"steps/s ({args.k} trivial async steps per workflow)")
    ax.set_title(
        "Steps/s against concurrency, SQLite WAL, synchronous=FULL\n"
        f"{info['cores']} cores {info['cpu']}, {info['filesystem'].split(' on ')[0]}; "
        f"durable {info['git']}, DBOS {version('dbos')}; "
        f"median of {args.repeat}, band = min-max",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(args.chart)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="durable vs DBOS Transact on SQLite.")
    parser.add_argument("--steps", type=int, default=2000, help="S1: steps in the workflow")
    parser.add_argument("--k", type=int, default=10, help="sweep: steps per workflow")
    parser.add_argument(
        "--sweep",
        type=parse_sweep,
        default=list(DEFAULT_SWEEP),
        help=f"concurrencies (default {','.join(map(str, DEFAULT_SWEEP))})",
    )
    parser.add_argument(
        "--min-steps", type=int, default=2000, help="sweep: steps per point at least (waves)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument(
        "--engines",
        type=lambda s: [e for e in s.split(",") if e],
        default=list(ENGINES),
        help="comma-separated subset of durable,durable-process,dbos",
    )
    parser.add_argument("--dir", help="where to create the databases (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    parser.add_argument("--no-chart", action="store_true", help="write neither PNG nor JSON")
    parser.add_argument("--chart", type=Path, default=CHART, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=NUMBERS, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "k", "min_steps", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.engines or set(args.engines) - set(ENGINES):
        parser.error(f"--engines: a subset of {','.join(ENGINES)}")
    if len(set(args.engines)) != len(args.engines):
        parser.error("--engines: each engine at most once")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(json.loads(args.child))
        return
    if "dbos" in args.engines and version("dbos") == "not installed":
        sys.exit("DBOS Transact is not installed: pip install -e '.[bench]'")
    path, why = choose_directory(args.dir)
    info = print_machine(path)
    print(f"  dbos        {version('dbos')}")
    print(f"  sqlalchemy  {version('sqlalchemy')}")
    print(f"command     {shlex.join(sys.orig_argv)}")
    print(f"databases   {path} ({why})")
    print()
    began = time.perf_counter()
    try:
        out = run(Workdir(path), args)
    finally:
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    summary = summarize(out, args)
    summary["machine"] = {k: v for k, v in info.items() if k != "fs_type"}
    summary["machine"]["dbos"] = version("dbos")
    print_summary(summary, args)
    if not args.no_chart:
        write_chart(summary, args, info)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwrote {os.path.relpath(args.chart)} and {os.path.relpath(args.json)}")
    print(f"\ntotal time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
