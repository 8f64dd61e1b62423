"""Arguments every store reads alike, checked once."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["workflow_filter"]


def workflow_filter(workflows: Sequence[str] | None) -> tuple[str, ...] | None:
    """The distinct names of a ``workflows`` filter, in order; ``None`` for no filter.

    An empty result means "no workflow", so nothing matches.

    Raises:
        TypeError: ``workflows`` is a single string (a sequence of its characters otherwise).
    """
    if workflows is None:
        return None
    if isinstance(workflows, str):
        raise TypeError(f"workflows must be a sequence of names, not the string {workflows!r}")
    return tuple(dict.fromkeys(workflows))
