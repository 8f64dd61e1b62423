"""The command line through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable import DurableContext, Engine, Jitter, RetryPolicy, VirtualClock
from durable.cli._common import parse_duration
from tests.helpers import advance_until, finished, has

pytestmark = pytest.mark.slow


def durable(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from durable.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_kills_the_worker_and_resumes_the_order(tmp_path: Path) -> None:
    demo = durable("demo", "--db", str(tmp_path / "demo.db"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "(SIGKILL)" in out
    assert "the order completed: {'status': 'completed'" in out
    # every step ran once, except the payment that failed once and was retried
    assert out.count("reserve_inventory: reserving") == 1
    assert out.count("charge: 42.50 -> charged") == 1
    assert out.count("create_shipment: shipping") == 1
    execution_id = out.split("execution ")[1].split()[0]

    listed = durable("list", "--db", str(tmp_path / "demo.db"), cwd=tmp_path)
    assert listed.returncode == 0
    assert [execution_id, "place_order", "SUCCEEDED"] in [
        line.split()[:3] for line in listed.stdout.splitlines()
    ]

    exported = durable(
        "history", execution_id, "--json", "--db", str(tmp_path / "demo.db"), cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    events = json.loads(exported.stdout)["Events"]
    assert events[0]["EventType"] == "ExecutionStarted"
    assert events[-1]["EventType"] == "ExecutionSucceeded"
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    failed = next(e for e in events if e["EventType"] == "StepFailed")
    assert failed["Name"] == "process-payment"
    assert failed["StepFailedDetails"]["RetryDetails"]["NextAttemptDelaySeconds"] == 1
    wait = next(e for e in events if e["EventType"] == "WaitStarted")
    assert wait["WaitStartedDetails"]["Duration"] == 2


def test_read_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    result = durable("list", "--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nope.db").exists()


async def test_unknown_execution_is_one_line_and_non_zero(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    async with Engine(str(db), worker=False):
        pass
    result = durable("history", "missing", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: ExecutionNotFoundError: no execution with id 'missing'"


# -- a database prepared in the test, on a virtual clock --------------------------------

START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
CHARGE_FAILURES = {"o-1": 2}  # how many times each order's payment fails before it works


def _charge(order_id: str, seen: dict[str, int]) -> dict[str, str]:
    seen[order_id] = seen.get(order_id, 0) + 1
    if seen[order_id] <= CHARGE_FAILURES.get(order_id, 0):
        raise TimeoutError("gateway timeout")
    return {"id": f"p-{order_id}"}


def _decline(order_id: str) -> None:
    raise ValueError(f"card declined for {order_id}")


def _orders_engine(db: Path, clock: VirtualClock) -> Engine:
    engine = Engine(str(db), clock=clock, poll_interval=0.05)
    seen: dict[str, int] = {}

    @engine.workflow
    async def ship(ctx: DurableContext, order: dict[str, Any]) -> dict[str, str]:
        await ctx.step(lambda: None, name="print-label")
        await ctx.wait(60, name="truck")
        return {"tracking": f"T-{order['id']}"}

    @engine.workflow
    async def place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        retry = RetryPolicy(max_attempts=4, initial_delay=2, jitter=Jitter.NONE)
        payment = await ctx.step(_charge, order["id"], seen, name="process-payment", retry=retry)
        await ctx.wait(timedelta(hours=1), name="cool-off")
        approval = await ctx.wait_for_callback(
            lambda callback_id: None, name="manager-approval", timeout=timedelta(days=7)
        )
        shipment = await ctx.invoke(ship, order, name="shipping")
        return {"payment": payment["id"], "approval": approval, **shipment}

    @engine.workflow
    async def refund(ctx: DurableContext, order: dict[str, Any]) -> None:
        await ctx.step(_decline, order["id"], name="refund-card", retry=RetryPolicy.none())

    return engine


async def prepare_orders(db: Path) -> dict[str, str]:
    """o-1 SUCCEEDED (a retried step, a wait, a callback, a child), o-2 FAILED, o-3 RUNNING
    waiting for its approval callback, o-4 RUNNING waiting for its child's timer."""
    clock = VirtualClock(START)
    engine = _orders_engine(db, clock)
    ids: dict[str, str] = {}
    async with engine:
        for order_id in ("o-1", "o-3", "o-4"):
            await engine.start("place_order", {"id": order_id}, execution_id=order_id)
            history = await advance_until(engine, clock, order_id, has("CallbackStarted"))
            callback = next(e for e in history if e.event_type == "CallbackStarted")
            ids[f"{order_id} callback"] = callback.details["callback_id"]
            if order_id == "o-3":
                continue
            await engine.send_callback_success(callback.details["callback_id"], {"by": "ann"})
            history = await advance_until(engine, clock, order_id, has("ChainedInvokeStarted"))
            invoke = next(e for e in history if e.event_type == "ChainedInvokeStarted")
            ids[f"{order_id} child"] = invoke.details["child_execution_id"]
            if order_id == "o-1":
                await advance_until(engine, clock, order_id, finished)
        await engine.start("refund", {"id": "o-2"}, execution_id="o-2")
        await advance_until(engine, clock, "o-2", finished)
    return ids


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A read-only database shared by the reading tests."""
    db = tmp_path_factory.mktemp("orders") / "orders.db"
    return db, anyio.run(prepare_orders, db)


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def line_with(out: str, *parts: str) -> str:
    """The one line of ``out`` holding all ``parts``."""
    found = [line for line in out.splitlines() if all(p in line for p in parts)]
    assert len(found) == 1, f"{parts} in {len(found)} lines of:\n{out}"
    return found[0]


def header(out: str) -> dict[str, str]:
    """The key/value block that ``show`` prints first (continuation lines joined by \\n)."""
    fields: dict[str, str] = {}
    key = ""
    for line in out.split("\n\n")[0].splitlines():
        if line[:12].strip():
            key = line[:12].strip()
            fields[key] = line[13:]
        else:
            fields[key] += "\n" + line[13:]
    return fields


def squeeze(line: str) -> str:
    return " ".join(line.split())


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


# -- list --------------------------------------------------------------------------------


def test_list_is_a_table_with_one_row_per_execution(
    orders: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, ids = orders
    result = durable("list", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "execution", "id", "workflow", "status", "started", "(UTC)", "took", "parent", "error",
    ]  # fmt: skip
    assert len(lines) == 1 + 6  # 4 orders and 2 children, one line each
    assert "\x1b[" not in result.stdout  # no colour codes when piped
    by_id = {row[0]: row for row in rows(result.stdout)[1:]}
    assert by_id["o-1"][1:3] == ["place_order", "SUCCEEDED"]
    assert by_id["o-1"][3:5] == ["2027-01-15", "08:00:00"]
    assert by_id["o-1"][5:] == ["1h", "1m", "6s", "-"]  # 6s of retries, the 1h wait, the truck
    assert by_id["o-2"][1:3] == ["refund", "FAILED"]
    assert line_with(result.stdout, "o-2 ").endswith("ValueError: card declined for o-2")
    assert by_id["o-3"][2] == "RUNNING"
    child = by_id[ids["o-1 child"]]
    assert child[1:3] == ["ship", "SUCCEEDED"]
    assert child[-1] == "o-1"  # its parent


def test_list_filters_limit_and_env_db(orders: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    db, ids = orders
    failed = durable("list", "--status", "FAILED", "--db", str(db), cwd=tmp_path)
    assert [row[0] for row in rows(failed.stdout)[1:]] == ["o-2"]
    running = durable("list", "--status", "running", "--db", str(db), cwd=tmp_path)
    assert sorted(row[0] for row in rows(running.stdout)[1:]) == sorted(
        ["o-3", "o-4", ids["o-4 child"]]
    )
    ships = subprocess.run(
        [
            sys.executable,
            "-c",
            "from durable.cli import main; main()",
            "list",
            "--workflow",
            "ship",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DURABLE_DB": str(db)},
    )
    assert ships.returncode == 0, ships.stderr
    assert sorted(row[0] for row in rows(ships.stdout)[1:]) == sorted(
        [ids["o-1 child"], ids["o-4 child"]]
    )
    children = durable("list", "--parent", "o-1", "--db", str(db), cwd=tmp_path)
    assert [row[0] for row in rows(children.stdout)[1:]] == [ids["o-1 child"]]
    limited = durable("list", "--limit", "2", "--db", str(db), cwd=tmp_path)
    assert len(limited.stdout.splitlines()) == 1 + 2
    none = durable("list", "--workflow", "nope", "--db", str(db), cwd=tmp_path)
    assert none.returncode == 0
    assert none.stdout.strip() == "no executions found"

    bad = durable("list", "--status", "DONE", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(bad, "'DONE'", "RUNNING, SUCCEEDED, FAILED, STOPPED, TIMED_OUT")


def test_a_url_with_store_options_names_the_same_database(
    orders: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, _ = orders
    plain = durable("list", "--db", str(db), cwd=tmp_path)
    url = durable("list", "--db", f"sqlite:///{db}?writer=process&busy_timeout=2", cwd=tmp_path)
    assert url.returncode == 0, url.stderr
    assert url.stdout == plain.stdout


def test_list_json(orders: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    db, ids = orders
    result = durable("list", "--json", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {item["execution_id"]: item for item in json.loads(result.stdout)}
    assert len(listed) == 6
    assert listed["o-1"] == {
        "execution_id": "o-1",
        "workflow": "place_order",
        "status": "SUCCEEDED",
        "created_at": "2027-01-15T08:00:00+00:00",
        "ended_at": "2027-01-15T09:01:06+00:00",
        "duration_seconds": 3666.0,
        "parent_id": None,
        "error": None,
    }
    assert listed["o-2"]["error"] == {"type": "ValueError", "message": "card declined for o-2"}
    assert listed["o-3"]["ended_at"] is None
    assert listed[ids["o-4 child"]]["parent_id"] == "o-4"
    failed = durable("list", "--json", "--status", "FAILED", "--db", str(db), cwd=tmp_path)
    assert [item["execution_id"] for item in json.loads(failed.stdout)] == ["o-2"]


# -- show --------------------------------------------------------------------------------


def test_show_a_finished_execution_as_a_timeline(
    orders: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, ids = orders
    result = durable("show", "o-1", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out
    head = header(out)
    assert head["execution"] == "o-1"
    assert head["workflow"] == "place_order"
    assert head["status"] == "SUCCEEDED"
    assert head["started"] == "2027-01-15 08:00:00.000 UTC"
    assert head["ended"] == "2027-01-15 09:01:06.000 UTC (took 1h 1m 6s)"
    assert head["input"] == '{"id": "o-1"}'
    assert head["result"] == (
        '{"payment": "p-o-1", "approval": {"by": "ann"}, "tracking": "T-o-1"}'
    )
    assert head["children"].split() == [ids["o-1 child"], "ship", "SUCCEEDED"]
    exported = durable("history", "o-1", "--json", "--db", str(db), cwd=tmp_path).stdout
    invocations = [e for e in json.loads(exported)["Events"] if "Invocation" in e["EventType"]]
    assert head["invocations"] == str(len(invocations))  # none cut short

    # one line per operation, in order, nested under its parent context
    timeline = out.split("timeline (offsets from the start of the execution)\n")[1]
    table = timeline.split("\n\n")[0].splitlines()
    assert table[0].split() == ["start", "took", "operation", "type", "status", "details", "id"]
    assert [squeeze(row) for row in table[1:]] == [
        '+0s 6s process-payment Step SUCCEEDED 3 attempts, retried after 2s, 4s; → {"id": '
        '"p-o-1"} 55ac4ee16641204c',
        "+6s 1h cool-off Wait SUCCEEDED wait 1h 9fd2a92529f8db24",
        '+1h 6s 0s manager-approval WaitForCallback SUCCEEDED → {"by": "ann"} cb265dba03b1dfbd',
        f"+1h 6s 0s ├─ manager-approval Callback SUCCEEDED callback {ids['o-1 callback']}; "
        '→ {"by": "ann"} 4ed0e7aeed0d36af',
        "+1h 6s 0s └─ (submitter) Step SUCCEEDED 1 attempt; → null 997d33a39a3bb997",
        # the child took a minute: it waited for its truck
        f"+1h 6s 1m shipping ChainedInvoke SUCCEEDED child {ids['o-1 child']} (workflow ship); "
        '→ {"tracking": "T-o-1"} a2fc33cc27569b6e',
    ]

    failures = out.split("failures (2)\n")[1].splitlines()
    assert [" ".join(f.split()) for f in failures] == [
        "+0s process-payment #1 TimeoutError: gateway timeout (retried after 2s)",
        "+2s process-payment #2 TimeoutError: gateway timeout (retried after 4s)",
    ]


def test_show_a_failed_execution_with_its_error(
    orders: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, _ = orders
    out = durable("show", "o-2", "--db", str(db), cwd=tmp_path).stdout
    head = header(out)
    assert head["status"] == "FAILED"
    error, *stack = head["error"].splitlines()
    assert error == "ValueError: card declined for o-2"
    assert "in refund" in stack[-2]  # the recorded stack, innermost frames last
    assert "1 attempt; ValueError: card declined for o-2" in line_with(out, "refund-card", "Step")
    assert line_with(out, "refund-card #1").split()[0] == "+0s"


def test_show_says_what_a_running_execution_waits_on(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    ids = anyio.run(prepare_orders, db)
    out = durable("show", "o-3", "--db", str(db), cwd=tmp_path).stdout
    head = header(out)
    assert head["status"] == "RUNNING"
    # nothing runs it; it wakes when the 7-day callback timeout is due
    assert head["worker"].startswith("not held by any worker; next wake-up 2027-01-22 10:01:06")
    callback_id = ids["o-3 callback"]
    answer = f"callback 'manager-approval' (answer: durable callback succeed {callback_id})"
    assert head["waiting on"] == answer
    pending = line_with(out, "├─ manager-approval", "Callback")
    assert "PENDING" in pending.split()
    assert "waiting for an answer" in pending
    assert "STARTED" in line_with(out, "manager-approval", "WaitForCallback").split()

    # answered from outside while no worker runs: show tells the answer is waiting there
    answered = durable(
        "callback", "succeed", callback_id, '{"by": "bob"}', "--db", str(db), cwd=tmp_path
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == f"callback {callback_id} succeeded"
    out = durable("show", "o-3", "--db", str(db), cwd=tmp_path).stdout
    assert "answered SUCCEEDED" in line_with(out, "├─ manager-approval", "Callback")
    assert "not yet delivered (is a worker running?)" in out

    # o-4 waits on its child execution, which waits on a timer
    out = durable("show", "o-4", "--db", str(db), cwd=tmp_path).stdout
    child_id = ids["o-4 child"]
    invoke = line_with(out, "shipping", "ChainedInvoke")
    assert "PENDING" in invoke.split()
    assert f"child {child_id} (workflow ship); child RUNNING" in invoke
    assert f"child execution {child_id} (RUNNING): durable show {child_id}" in out
    child = durable("show", child_id, "--db", str(db), cwd=tmp_path).stdout
    assert header(child)["parent"] == "o-4"
    truck = line_with(child, "truck", "Wait")
    assert "PENDING" in truck.split()
    assert "wait 1m; until 2027-01-15 11:02:06 UTC" in truck
    assert header(child)["waiting on"].startswith("wait 'truck', ")


async def test_show_names_invocations_cut_short(tmp_path: Path) -> None:
    db = tmp_path / "cut.db"
    engine = Engine(str(db), clock=VirtualClock(START), poll_interval=0.05, shutdown_grace=0)
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    @engine.workflow
    async def hang(ctx: DurableContext, _: None) -> None:
        await ctx.step(forever, name="slow-call")

    async with engine:
        await engine.start(hang, None, execution_id="h-1")
        await started.wait()
    # the engine left while the step ran: the invocation ended as Runtime.Shutdown
    result = durable("show", "h-1", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert header(out)["invocations"] == (
        "1, 1 cut short:\n+0s  Runtime.Shutdown: the worker shut down"
    )
    slow = line_with(out, "slow-call", "Step")
    assert "INTERRUPTED" in slow.split()
    assert "attempt 1 cut short by the end of its invocation" in slow


# -- history -----------------------------------------------------------------------------


def test_history_is_a_table(orders: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    db, ids = orders
    result = durable("history", "o-1", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "#", "time", "(UTC)", "type", "sub", "type", "name", "operation", "details",
    ]  # fmt: skip
    exported = json.loads(
        durable("history", "o-1", "--json", "--db", str(db), cwd=tmp_path).stdout
    )["Events"]
    assert len(lines) == 1 + len(exported)  # one line per event
    assert [line.split()[0] for line in lines[1:]] == [str(i) for i in range(1, len(lines))]
    assert [line.split()[3] for line in lines[1:]] == [e["EventType"] for e in exported]
    assert lines[1].split()[:4] == ["1", "2027-01-15", "08:00:00.000", "ExecutionStarted"]
    failed = lines[3].split()
    assert failed[3:6] == ["StepFailed", "Step", "process-payment"]
    assert " ".join(failed[7:]) == "attempt 1, next in 2s, TimeoutError: gateway timeout"
    wait = line_with(result.stdout, "WaitStarted")
    assert "duration 1h, due 2027-01-15 09:00:06.000" in wait
    assert f"callback {ids['o-1 callback']}, timeout 7d" in line_with(
        result.stdout, "CallbackStarted"
    )
    invoke = line_with(result.stdout, "ChainedInvokeStarted")
    assert f"child {ids['o-1 child']}" in invoke
    assert "callback " not in invoke  # its internal callback is not shown


# -- stop --------------------------------------------------------------------------------


def test_stop_a_running_execution_and_its_child(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    ids = anyio.run(prepare_orders, db)
    stopped = durable(
        "stop", "o-4", "--reason", "customer cancelled", "--db", str(db), cwd=tmp_path
    )
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines() == [
        "stopped o-4",
        f"stopped {ids['o-4 child']} (child of o-4)",
    ]
    listed = {row[0]: row[2] for row in rows(durable("list", "--db", str(db), cwd=tmp_path).stdout)}
    assert listed["o-4"] == listed[ids["o-4 child"]] == "STOPPED"
    assert listed["o-3"] == "RUNNING"
    out = durable("show", "o-4", "--db", str(db), cwd=tmp_path).stdout
    assert header(out)["error"] == "ExecutionStopped: customer cancelled"
    assert "CANCELLED" in line_with(out, "shipping", "ChainedInvoke").split()

    again = durable("stop", "o-4", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(again, "'o-4'", "is not running (it is STOPPED)")
    finished = durable("stop", "o-1", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(finished, "'o-1'", "SUCCEEDED")
    unknown = durable("stop", "o-9", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(unknown, "ExecutionNotFoundError", "'o-9'")


# -- purge -------------------------------------------------------------------------------


async def test_purge_deletes_old_finished_executions_only(tmp_path: Path) -> None:
    db = tmp_path / "purge.db"
    now = time.time()
    for label, started in (("old", now - 10 * 86_400), ("recent", now - 3_600)):
        clock = VirtualClock(started)
        engine = Engine(str(db), clock=clock, poll_interval=0.05)

        @engine.workflow
        async def done(ctx: DurableContext, _: None) -> str:
            return await ctx.step(lambda: "ok", name="work")

        @engine.workflow
        async def pending(ctx: DurableContext, _: None) -> None:
            await ctx.create_callback(name="never")
            await ctx.wait(timedelta(days=30))

        async with engine:
            await engine.start(done, None, execution_id=f"{label}-done")
            await advance_until(engine, clock, f"{label}-done", finished)
            await engine.start(pending, None, execution_id=f"{label}-running")
            await advance_until(engine, clock, f"{label}-running", has("WaitStarted"))

    def ids() -> set[str]:
        return {row[0] for row in rows(durable("list", "--db", str(db), cwd=tmp_path).stdout)[1:]}

    assert ids() == {"old-done", "old-running", "recent-done", "recent-running"}
    purged = durable("purge", "--older-than", "7d", "--db", str(db), cwd=tmp_path)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("purged 1 finished execution (ended before ")
    assert ids() == {"old-running", "recent-done", "recent-running"}
    assert durable(
        "purge", "--older-than", "1d12h", "--db", str(db), cwd=tmp_path
    ).stdout.startswith("purged 0 finished executions")
    purged = durable("purge", "--older-than", "30m", "--db", str(db), cwd=tmp_path)
    assert purged.stdout.startswith("purged 1 finished execution ")
    assert ids() == {"old-running", "recent-running"}  # running ones are never purged
    gone = durable("history", "recent-done", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(gone, "ExecutionNotFoundError")

    for bad in ("7", "7x", "d7", "-1d", "soon"):
        result = durable("purge", "--older-than", bad, "--db", str(db), cwd=tmp_path)
        assert_one_line_error(result, f"invalid duration {bad!r}", "30s, 15m, 12h, 7d")
    assert ids() == {"old-running", "recent-running"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("12h", 43_200), ("7d", 604_800), ("1d12h", 129_600),
     ("2w", 1_209_600), ("1.5h", 5_400), ("1h30m", 5_400), ("0s", 0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json"],
        ["show", "o-1"],
        ["history", "o-1"],
        ["history", "o-1", "--json"],
        ["stop", "o-1"],
        ["purge", "--older-than", "7d"],
        ["callback", "succeed", "cb-1", "{}"],
    ],
)
def test_commands_refuse_a_missing_database(args: list[str], tmp_path: Path) -> None:
    result = durable(*args, "--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert_one_line_error(result, "no database at")
    url = durable(*args, "--db", "sqlite:///nope.db", cwd=tmp_path)
    assert_one_line_error(url, "no database at")
    default = durable(*args, cwd=tmp_path)  # ./durable.db
    assert_one_line_error(default, "no database at 'durable.db'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["show", "history", "stop"])
def test_unknown_execution_ids(
    command: str, orders: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, _ = orders
    result = durable(command, "no-such-id", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(result, "ExecutionNotFoundError", "'no-such-id'")


def test_malformed_json_payload(orders: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    db, ids = orders
    result = durable(
        "callback", "succeed", ids["o-3 callback"], "{by: ann", "--db", str(db), cwd=tmp_path
    )
    assert_one_line_error(result, "payload is not valid JSON")
    result = durable("callback", "fail", ids["o-3 callback"], "[1,", "--db", str(db), cwd=tmp_path)
    assert_one_line_error(result, "payload is not valid JSON")
    # the callback is still waiting
    out = durable("show", "o-3", "--db", str(db), cwd=tmp_path).stdout
    assert "waiting for an answer" in line_with(out, "├─ manager-approval")
