"""``durable ui``: serve the web UI (needs the ``web`` extra)."""

from __future__ import annotations

import click

from durable.cli._common import db_option, existing_db

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add ``ui`` to ``cli``."""

    @cli.command()
    @db_option
    @click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to bind (only this machine by default; 0.0.0.0 exposes it).",
    )
    @click.option(
        "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port."
    )
    def ui(db: str, host: str, port: int) -> None:
        """Serve the web UI: executions, their timelines and a JSON API."""
        db = existing_db(db)
        try:
            import uvicorn

            from durable.web import create_app
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise click.ClickException(
                "the web UI needs its extra: pip install 'durable[web]'"
            ) from None
        click.echo(f"durable ui on http://{host}:{port}/ (database {db})", err=True)
        uvicorn.run(create_app(db), host=host, port=port, log_level="warning")
