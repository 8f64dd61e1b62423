"""The web UI: an ASGI app (Starlette) showing executions and their timelines, with a JSON
API under ``/api/`` (needs the ``web`` extra: ``pip install 'durable[web]'``).

Mount it in a FastAPI or Starlette app (``app.mount("/durable", create_app(engine))``) or
serve it with ``durable ui``.
"""

from __future__ import annotations

from durable.web._app import create_app

__all__ = ["create_app"]
