"""The ``durable`` command line (needs the ``cli`` extra: ``pip install 'durable[cli]'``).

Every command takes ``--db`` (after the subcommand) or ``DURABLE_DB``; the default is
``./durable.db``. Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["main"]


def _build() -> Any:
    import click

    from durable.cli import _inspect, _ops, _ui, _worker
    from durable.cli._common import db_option, run

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="durable")
    def cli() -> None:
        """durable: embedded durable execution for asyncio."""

    @cli.command()
    @db_option
    def demo(db: str) -> None:
        """Run the order workflow, kill its worker mid-wait (SIGKILL), and resume it."""
        from durable.demo import run_demo

        run(run_demo, db)

    _inspect.register(cli)
    _ops.register(cli)
    _worker.register(cli)
    _ui.register(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``durable`` command."""
    try:
        import click  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        sys.stderr.write("the durable CLI needs its extra: pip install 'durable[cli]'\n")
        raise SystemExit(2) from None
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _build()(args=argv, prog_name="durable")
