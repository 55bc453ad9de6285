"""Pure-ASGI middleware (WebSockets and streamed responses pass through untouched) for running in production.

Order, outermost first: request id -> trace span -> access log and metrics -> shutdown drain -> CORS -> rate limit
-> API key -> streams per client -> body size -> disconnect -> timeout -> pace (send and idle timeouts) -> unhandled
errors -> JSON bodies -> the app.
So every answer, refusals included, carries the request id, is traced, counted and logged, and gets CORS headers;
requests with wrong keys spend their IP's budget (no unthrottled key guessing); a request over its budget never
has its body read.
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
from tts_service.middleware.json_body import JsonBodyMiddleware
from tts_service.middleware.limits import BodyLimitMiddleware, DisconnectMiddleware, TimeoutMiddleware
from tts_service.middleware.pace import PaceMiddleware, StreamCapMiddleware
from tts_service.middleware.ratelimit import MessageBudget, RateLimiter, RateLimitMiddleware, client_key
from tts_service.middleware.request_id import RequestIdMiddleware
from tts_service.middleware.tracing import TracingMiddleware
from tts_service.middleware.unhandled import UnhandledErrorMiddleware
from tts_service.observability import Metrics

__all__ = ["Drain", "MessageBudget", "RateLimiter", "install"]

STREAM_PATHS = ("/tts/stream", "/v1/audio/speech")
"""HTTP routes that stream their answer (on the local server) and count as streams of their client."""


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
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(
        PaceMiddleware,
        send_timeout=settings.stream_send_timeout_secs,
        idle_timeout=settings.ws_idle_timeout_secs,
        metrics=metrics,
    )
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_secs, metrics=metrics)
    app.add_middleware(DisconnectMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(
        StreamCapMiddleware,
        per_client=settings.max_streams_per_client,
        stream_paths=frozenset(prefix + path for prefix in prefixes for path in STREAM_PATHS),
        client_id=lambda scope: client_key(scope, credentials, clients),
        metrics=metrics,
    )
    # Always installed: without keys it still names the caller (the shared owner) for the routes.
    app.add_middleware(ApiKeyMiddleware, credentials=credentials, metrics=metrics)
    limiter = RateLimiter.from_settings(settings, metrics) if settings.rate_limit_enabled else None
    app.state.rate_limiter = limiter
    app.state.message_budget = MessageBudget(limiter, lambda scope: client_key(scope, credentials, clients), metrics)
    if limiter is not None:
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
