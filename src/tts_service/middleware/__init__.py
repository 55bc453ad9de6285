"""Pure-ASGI middleware (WebSockets and streamed responses pass through untouched) for running in production.

Order, outermost first: request id -> trace span -> access log and metrics -> shutdown drain -> CORS -> rate limit
-> API key -> body size -> timeout -> the app. So every answer, refusals included, carries the request id, is traced,
counted and logged, and gets CORS headers; requests with wrong keys spend their IP's budget (no unthrottled key
guessing); a request over its budget never has its body read.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from tts_service.config import Settings
from tts_service.credentials import Credentials
from tts_service.middleware._asgi import RouteTemplates
from tts_service.middleware.access import AccessMiddleware
from tts_service.middleware.auth import ApiKeyMiddleware
from tts_service.middleware.clients import ClientResolver
from tts_service.middleware.cors import JsonCORSMiddleware, cors_options
from tts_service.middleware.drain import Drain, DrainMiddleware
from tts_service.middleware.limits import BodyLimitMiddleware, TimeoutMiddleware
from tts_service.middleware.ratelimit import RateLimiter, RateLimitMiddleware
from tts_service.middleware.request_id import RequestIdMiddleware
from tts_service.middleware.tracing import TracingMiddleware
from tts_service.observability import Metrics

__all__ = ["Drain", "RateLimiter", "install"]


def install(
    app: FastAPI, settings: Settings, metrics: Metrics, routers: Sequence[APIRouter], prefixes: Sequence[str] = ("",)
) -> None:
    """Add the operational middleware to `app`, configured from `settings`; `routers` name its route templates."""
    paths = [getattr(route, "path", None) for router in routers for route in router.routes]
    templates = [prefix + path for prefix in prefixes for path in paths if isinstance(path, str)]
    clients = ClientResolver(settings.trusted_proxies)
    credentials = Credentials.from_settings(settings)
    app.state.credentials = credentials
    # add_middleware puts each new layer outside the previous ones: add innermost first.
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_secs, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, metrics=metrics)
    # Always installed: without keys it still names the caller (the shared owner) for the routes.
    app.add_middleware(ApiKeyMiddleware, credentials=credentials, metrics=metrics)
    if settings.rate_limit_enabled:
        limiter = RateLimiter.from_settings(settings)
        app.state.rate_limiter = limiter
        app.add_middleware(
            RateLimitMiddleware, limiter=limiter, clients=clients, credentials=credentials, metrics=metrics
        )
    app.add_middleware(JsonCORSMiddleware, metrics=metrics, **cors_options(settings))
    # Shutdown refusals are counted and logged like any answer; `app.state.drain` is what the shim's server drains.
    app.state.drain = Drain()
    app.add_middleware(DrainMiddleware, drain=app.state.drain, metrics=metrics)
    routes = RouteTemplates(templates)
    app.add_middleware(AccessMiddleware, metrics=metrics, routes=routes, clients=clients)
    # A no-op until tracing is configured (create_app does that from the OTEL_* variables).
    app.add_middleware(TracingMiddleware, routes=routes)
    app.add_middleware(RequestIdMiddleware)
