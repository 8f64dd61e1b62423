"""durable.testing's public surface is part of the contract."""

from __future__ import annotations

import durable.testing

EXPECTED = [
    "CallbackInfo",
    "ContextInfo",
    "CrashPoint",
    "CrashRule",
    "DurableTestRunner",
    "HistorySource",
    "InvokeInfo",
    "OperationInfo",
    "OperationStatus",
    "ReplayResult",
    "StepAttempt",
    "StepInfo",
    "TestHandle",
    "TestResult",
    "WaitInfo",
    "check_replay",
]


def test_all_is_pinned_and_sorted() -> None:
    assert durable.testing.__all__ == EXPECTED
    assert sorted(durable.testing.__all__) == durable.testing.__all__


def test_every_public_name_is_documented() -> None:
    for name in durable.testing.__all__:
        if name == "HistorySource":  # a type alias, documented in its module
            continue
        assert getattr(durable.testing, name).__doc__, f"{name} has no docstring"


def test_public_methods_of_the_runner_are_documented() -> None:
    runner = durable.testing.DurableTestRunner
    for name in dir(runner):
        if not name.startswith("_"):
            assert getattr(runner, name).__doc__, f"DurableTestRunner.{name} has no docstring"
