"""The examples work as their docstrings say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from durable import VirtualClock
from examples.approval import build_engine
from tests.helpers import drive, settle

ROOT = Path(__file__).resolve().parents[2]


def expense(timeout: float) -> dict[str, Any]:
    return {"id": "e-1", "amount": 120.0, "timeout": timeout}


async def test_approval_timeout_escalates() -> None:
    clock = VirtualClock()
    engine = build_engine(":memory:", clock=clock)
    async with engine:
        handle = await engine.start("expense_approval", expense(3600))
        await drive(engine, clock, handle)
        result = await handle.result()
    assert result == {"status": "escalated", "note": "escalated e-1 to the finance team"}


async def test_approval_rejected() -> None:
    clock = VirtualClock()
    engine = build_engine(":memory:", clock=clock)
    async with engine:
        handle = await engine.start("expense_approval", expense(3600))
        await settle(engine)
        history = await engine.history(handle.execution_id)
        callback_id = next(e.details["callback_id"] for e in history if "callback_id" in e.details)
        await engine.send_callback_failure(
            callback_id, error_type="Rejected", message="over budget"
        )
        result = await handle.result()
    assert result == {"status": "rejected", "reason": "over budget", "type": "Rejected"}


@pytest.mark.slow
def test_approval_from_a_second_terminal(tmp_path: Path) -> None:
    db = str(tmp_path / "approval.db")
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "approval.py"), "--db", db],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    callback_id = ""
    for line in worker.stdout:
        if "durable callback succeed" in line:
            callback_id = line.split()[3]
            break
    assert callback_id, worker.stderr.read() if worker.stderr else ""
    approve = subprocess.run(
        [
            sys.executable,
            "-c",
            "from durable.cli import main; main()",
            "callback",
            "succeed",
            callback_id,
            '{"approved": true, "by": "ana"}',
            "--db",
            db,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert approve.returncode == 0, approve.stderr
    assert approve.stdout.strip() == f"callback {callback_id} succeeded"
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "'status': 'paid'" in out
    assert "'approved_by': 'ana'" in out

    again = subprocess.run(
        [
            sys.executable,
            "-c",
            "from durable.cli import main; main()",
            "callback",
            "succeed",
            callback_id,
            "--db",
            db,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1
    assert "CallbackAlreadyCompletedError" in again.stderr
    assert "Traceback" not in again.stderr
