"""``durable worker MODULE:ENGINE``: run an application's engine as a standalone worker."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add the ``worker`` command to ``cli``."""
