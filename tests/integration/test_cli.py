"""The command line through real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from durable import Engine

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
    assert f"{execution_id}\tplace_order\tSUCCEEDED" in listed.stdout

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
