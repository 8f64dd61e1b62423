"""Reading commands: ``list`` and ``history`` (and ``show``)."""

from __future__ import annotations

import json
from typing import Any

import click

from durable.cli._common import db_option, existing_db, run
from durable.events import history_to_json

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add the reading commands to ``cli``."""

    @cli.command("list")
    @db_option
    @click.option("--status", help="RUNNING, SUCCEEDED, FAILED, STOPPED or TIMED_OUT.")
    @click.option("--workflow", help="Only executions of this workflow.")
    @click.option("--limit", default=50, show_default=True)
    def list_(db: str, status: str | None, workflow: str | None, limit: int) -> None:
        """List executions, newest first."""
        from durable.engine import Engine

        async def go() -> list[Any]:
            async with Engine(existing_db(db), worker=False) as engine:
                return await engine.list(status=status, workflow=workflow, limit=limit)

        for ex in run(go):
            ended = ex.ended_at.isoformat(timespec="seconds") if ex.ended_at else "-"
            click.echo(f"{ex.execution_id}\t{ex.workflow}\t{ex.status}\t{ended}")

    @cli.command()
    @db_option
    @click.argument("execution_id")
    @click.option(
        "--json", "as_json", is_flag=True, help="The AWS GetDurableExecutionHistory shape."
    )
    def history(db: str, execution_id: str, as_json: bool) -> None:
        """Print an execution's history."""
        from durable.engine import Engine

        async def go() -> list[Any]:
            async with Engine(existing_db(db), worker=False) as engine:
                return await engine.history(execution_id)

        events = run(go)
        if as_json:
            click.echo(json.dumps(history_to_json(events), indent=1))
            return
        for event in events:
            stamp = event.timestamp.isoformat(timespec="milliseconds")
            click.echo(f"{event.event_id:>4} {stamp} {event.event_type:<22} {event.name or ''}")
