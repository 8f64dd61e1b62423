"""``create_app``: the routes, and the engine the app reads through."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Route

from durable.engine import Engine
from durable.web import _api, _pages

if TYPE_CHECKING:
    from starlette.types import Lifespan

__all__ = ["create_app"]


def create_app(engine_or_url: Engine | str) -> Starlette:
    """The web UI as an ASGI app.

    Given an :class:`~durable.Engine`, the app uses it as is: the host app opens and closes
    it. Given a database URL or path, the app opens a client-only engine
    (``Engine(url, worker=False)``) in its lifespan and closes it at shutdown.
    """
    lifespan: Lifespan[Starlette] | None = None
    if isinstance(engine_or_url, Engine):
        engine = engine_or_url
    else:
        engine = Engine(engine_or_url, worker=False)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with engine:
                yield

    routes = [
        Route("/", _pages.executions_page, methods=["GET"]),
        Route("/executions/{execution_id}", _pages.execution_page, methods=["GET"]),
        Route("/api/executions", _api.list_executions, methods=["GET"]),
        Route("/api/executions/{execution_id}", _api.get_execution, methods=["GET"]),
        Route("/api/executions/{execution_id}/history", _api.get_history, methods=["GET"]),
        Route("/api/executions/{execution_id}/stop", _api.stop_execution, methods=["POST"]),
        Route("/api/callbacks/{callback_id}/succeed", _api.succeed_callback, methods=["POST"]),
        Route("/api/callbacks/{callback_id}/fail", _api.fail_callback, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.durable_engine = engine
    return app
