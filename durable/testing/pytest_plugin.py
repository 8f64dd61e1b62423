"""pytest fixtures for testing workflows, loaded automatically when ``durable`` is installed.

(Registered as the ``durable`` entry point of the ``pytest11`` group.)

- ``virtual_clock``: a fresh :class:`~durable.VirtualClock`.
- ``durable_runner``: a :class:`~durable.testing.DurableTestRunner` on that clock, already
  entered for the test (left after it). Register workflows with ``@durable_runner.workflow``.
- ``durable_engine``: ``None``; override it (in a ``conftest.py`` or a test module) to return
  your application's :class:`~durable.Engine`, and ``durable_runner`` runs its workflows.

They work with pytest-asyncio in auto mode and function-scoped event loops (the runner may
be set up and torn down in different tasks).

Example::

    async def test_reminder(durable_runner: DurableTestRunner) -> None:
        @durable_runner.workflow
        async def reminder(ctx: DurableContext) -> str:
            await ctx.wait(timedelta(days=7))
            return "sent"

        assert (await durable_runner.run(reminder)).result == "sent"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from durable.clock import VirtualClock
from durable.engine import Engine
from durable.testing._runner import DurableTestRunner

__all__ = ["durable_engine", "durable_runner", "virtual_clock"]

try:  # pytest-asyncio marks async fixtures in strict mode too; plain pytest otherwise
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - the fixtures then need another async plugin
    _async_fixture = pytest.fixture


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A virtual clock (``durable_runner`` runs on it)."""
    return VirtualClock()


@pytest.fixture
def durable_engine() -> Engine | None:
    """The application engine whose workflows ``durable_runner`` runs (override it)."""
    return None


@_async_fixture
async def durable_runner(
    virtual_clock: VirtualClock, durable_engine: Engine | None
) -> AsyncIterator[DurableTestRunner]:
    """A :class:`DurableTestRunner` entered for the test."""
    async with DurableTestRunner(durable_engine, clock=virtual_clock) as runner:
        yield runner
