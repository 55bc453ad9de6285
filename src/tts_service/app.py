"""The app factory: the Lambdas and the local shim build their FastAPI apps here from the same routers.

Errors become responses in `tts_service.responses`; the operational middleware is `tts_service.middleware`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from tts_service import __version__, middleware
from tts_service.config import Settings, get_settings
from tts_service.observability import Metrics, get_metrics, tracing
from tts_service.openapi import document_errors
from tts_service.responses import add_error_handlers
from tts_service.urls import LEGACY_PREFIX


def create_app(
    *routers: APIRouter,
    title: str = "tts-service",
    lifespan: Any = None,
    settings: Settings | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """A FastAPI app serving `routers`, with the service's error mapping and operational middleware installed."""
    app = FastAPI(
        title=title,
        version=__version__,
        strict_content_type=False,
        lifespan=lifespan,
    )
    add_error_handlers(app)
    for router in routers:
        app.include_router(router)
        app.include_router(router, prefix=LEGACY_PREFIX, include_in_schema=False)
    app.state.metrics = metrics or get_metrics()
    app.state.settings = settings or get_settings()
    tracing.configure()
    middleware.install(app, app.state.settings, app.state.metrics, routers, prefixes=("", LEGACY_PREFIX))
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Serve an OpenAPI schema whose operations list the errors the service renders (`tts_service.openapi`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
