"""Operating commands: ``callback succeed|fail|heartbeat``, ``stop`` and ``purge``."""

from __future__ import annotations

from typing import Any

import click

from durable.cli._common import (
    db_option,
    existing_db,
    format_time,
    parse_duration,
    parse_json,
    run,
)

__all__ = ["register"]


def _answer(db: str, action: str, callback_id: str, **kwargs: Any) -> None:
    from durable.engine import Engine

    async def go() -> None:
        async with Engine(existing_db(db), worker=False) as engine:
            await getattr(engine, f"send_callback_{action}")(callback_id, **kwargs)

    run(go)


def register(cli: click.Group) -> None:
    """Add the operating commands to ``cli``."""

    @cli.group()
    def callback() -> None:
        """Answer a callback: succeed, fail or heartbeat."""

    @callback.command("succeed")
    @db_option
    @click.argument("callback_id")
    @click.argument("payload", required=False)
    def succeed(db: str, callback_id: str, payload: str | None) -> None:
        """Complete CALLBACK_ID with PAYLOAD (JSON; null when omitted)."""
        _answer(db, "success", callback_id, result=parse_json(payload) if payload else None)
        click.echo(f"callback {callback_id} succeeded")

    @callback.command("fail")
    @db_option
    @click.argument("callback_id")
    @click.argument("payload", required=False)
    @click.option("--error-type", default=None, help="Error type (default CallbackFailed).")
    @click.option("--message", default=None, help="Error message.")
    def fail(
        db: str, callback_id: str, payload: str | None, error_type: str | None, message: str | None
    ) -> None:
        """Fail CALLBACK_ID; PAYLOAD may be {"error_type": ..., "message": ...}."""
        fields = parse_json(payload) if payload else {}
        if not isinstance(fields, dict):
            raise click.ClickException(
                "the failure payload must be a JSON object like "
                '{"error_type": "Rejected", "message": "not approved"}'
            )
        kind = error_type or fields.get("error_type") or fields.get("ErrorType") or "CallbackFailed"
        text = message or fields.get("message") or fields.get("ErrorMessage") or ""
        _answer(db, "failure", callback_id, error_type=str(kind), message=str(text))
        click.echo(f"callback {callback_id} failed ({kind})")

    @callback.command("heartbeat")
    @db_option
    @click.argument("callback_id")
    def heartbeat(db: str, callback_id: str) -> None:
        """Tell CALLBACK_ID its outside system is still working."""
        _answer(db, "heartbeat", callback_id)
        click.echo(f"callback {callback_id} heartbeat recorded")

    register_lifecycle(cli)


def register_lifecycle(cli: click.Group) -> None:
    """Add ``stop`` and ``purge`` to ``cli``."""

    @cli.command()
    @db_option
    @click.argument("execution_id")
    @click.option("--reason", default=None, help="Recorded as the message of the stop.")
    def stop(db: str, execution_id: str, reason: str | None) -> None:
        """Stop a running execution and its running child executions."""
        from durable.engine import Engine

        async def go() -> list[str]:
            async with Engine(existing_db(db), worker=False) as engine:
                stopped: list[str] = await engine.stop(execution_id, reason=reason)
                return stopped

        for stopped_id in run(go):
            suffix = "" if stopped_id == execution_id else f" (child of {execution_id})"
            click.echo(f"stopped {stopped_id}{suffix}")

    @cli.command()
    @db_option
    @click.option(
        "--older-than",
        "older_than",
        required=True,
        metavar="DURATION",
        help="Delete executions that ended more than this long ago: 30s, 15m, 12h, 7d, 1d12h.",
    )
    def purge(db: str, older_than: str) -> None:
        """Delete finished executions (and their events) that ended long enough ago.

        Running executions are never touched. There is no prompt.
        """
        from durable.engine import Engine

        seconds = parse_duration(older_than)

        async def go() -> tuple[int, float]:
            async with Engine(existing_db(db), worker=False) as engine:
                cutoff = engine.clock.now() - seconds
                return await engine.purge(finished_before=cutoff), cutoff

        count, cutoff = run(go)
        before = f"ended before {format_time(cutoff)} UTC"
        noun = "execution" if count == 1 else "executions"
        click.echo(f"purged {count} finished {noun} ({before})")
