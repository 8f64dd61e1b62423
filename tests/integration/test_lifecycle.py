"""Retention and purge: finished executions go, running ones and their data stay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from durable import DurableContext, Engine, ExecutionNotFoundError, VirtualClock
from tests.helpers import settle


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_retention_is_enforced_by_the_worker_loop(store: str, tmp_path: Path) -> None:
    clock = VirtualClock()
    url = ":memory:" if store == "memory" else str(tmp_path / "r.db")
    engine = Engine(url, clock=clock, purge_interval=60)

    @engine.workflow(retention=3600)
    async def short_lived(ctx: DurableContext) -> str:
        return "done"

    @engine.workflow
    async def kept(ctx: DurableContext) -> str:
        return "kept"

    @engine.workflow(retention=60)
    async def sleeper(ctx: DurableContext) -> None:
        await ctx.wait(86_400)

    async with engine:
        await engine.run(short_lived, execution_id="gone")
        await engine.run(kept, execution_id="stays")
        await engine.start(sleeper, execution_id="running")
        await settle(engine)
        for _ in range(59):  # an hour, one purge interval at a time
            clock.advance(60)
            await settle(engine)
        assert (await engine.get("gone")).result == "done"  # not yet: 3540 s
        clock.advance(120)
        await settle(engine)
        with pytest.raises(ExecutionNotFoundError):
            await engine.get("gone")
        with pytest.raises(ExecutionNotFoundError):
            await engine.history("gone")
        assert (await engine.get("stays")).result == "kept"
        assert len(await engine.history("running")) > 1  # running: never purged


async def test_engine_purge_deletes_only_what_ended_before_the_cutoff() -> None:
    clock = VirtualClock()
    engine = Engine(":memory:", clock=clock)

    @engine.workflow
    async def quick(ctx: DurableContext, n: int) -> int:
        return n

    @engine.workflow
    async def waiting(ctx: DurableContext) -> None:
        await ctx.wait(3600)

    async with engine:
        await engine.run(quick, 1, execution_id="old")
        clock.advance(100)
        cutoff = datetime.fromtimestamp(clock.now(), tz=UTC)
        await engine.start(waiting, execution_id="running")
        clock.advance(100)
        await engine.run(quick, 2, execution_id="new")
        assert await engine.purge(finished_before=cutoff) == 1
        assert {e.execution_id for e in await engine.list()} == {"running", "new"}
        assert await engine.purge(finished_before=clock.now()) == 1
        assert [e.execution_id for e in await engine.list()] == ["running"]
