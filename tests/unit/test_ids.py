"""Execution ids the engine makes: UUIDv7, ordered by creation time, unique."""

from __future__ import annotations

import time
import uuid

import pytest

from durable import DurableContext, Engine, VirtualClock
from durable.workflow import new_execution_id


def test_an_execution_id_is_a_uuid7_in_32_hex_digits() -> None:
    before = time.time_ns() // 1_000_000
    execution_id = new_execution_id()
    after = time.time_ns() // 1_000_000
    assert len(execution_id) == 32
    assert execution_id == execution_id.lower()
    parsed = uuid.UUID(execution_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= int(execution_id[:12], 16) <= after  # milliseconds since the epoch


def test_ids_sort_by_the_millisecond_they_were_made_in(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for ms in (1_700_000_000_123, 1_700_000_000_124, 1_700_000_999_000, 1_800_000_000_000):
        monkeypatch.setattr(time, "time_ns", lambda ms=ms: ms * 1_000_000 + 999_999)
        made.append(new_execution_id())
    assert sorted(made) == made
    assert [int(i[:12], 16) for i in made] == [
        1_700_000_000_123,
        1_700_000_000_124,
        1_700_000_999_000,
        1_800_000_000_000,
    ]


def test_ids_made_in_one_millisecond_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_123_456_789)
    ids = {new_execution_id() for _ in range(10_000)}
    assert len(ids) == 10_000  # 74 random bits each
    assert {i[:12] for i in ids} == {f"{1_700_000_000_123:012x}"}


async def test_start_without_an_id_gets_a_time_ordered_one() -> None:
    engine = Engine(":memory:", clock=VirtualClock(), worker=False)

    @engine.workflow
    async def wf(ctx: DurableContext) -> None:
        return None

    async with engine:
        first = await engine.start(wf)
        second = await engine.start(wf)
    assert uuid.UUID(first.execution_id).version == 7
    assert first.execution_id[:12] <= second.execution_id[:12]
    assert first.execution_id != second.execution_id
