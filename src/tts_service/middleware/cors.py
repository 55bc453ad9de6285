"""CORS from an allowlist: Starlette's middleware, with refused preflights rendered as our JSON errors."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from tts_service.config import Settings
from tts_service.errors import OriginNotAllowed
from tts_service.observability import Metrics
from tts_service.responses import error_response

# Any port on the loopback names: what a developer's front-end dev server uses.
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?"

ALLOW_HEADERS = ("Authorization", "X-API-Key", "X-Request-ID", "Content-Type", "Accept")
EXPOSE_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-Voice",
    "X-Audio-Duration-Ms",
    "X-Sample-Rate",
)


def cors_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `JsonCORSMiddleware` from the settings."""
    origins = [o.strip().rstrip("/") for o in (settings.cors_allowed_origins or "").split(",") if o.strip()]
    regex = LOCALHOST_ORIGINS if not origins and settings.environment == "development" else None
    return {
        "allow_origins": origins,
        "allow_origin_regex": regex,
        "allow_methods": ("GET", "POST", "DELETE", "OPTIONS"),
        "allow_headers": ALLOW_HEADERS,
        "expose_headers": EXPOSE_HEADERS,
        "allow_credentials": False,
        "max_age": 600,
    }


class JsonCORSMiddleware(CORSMiddleware):
    """Preflights from allowed origins get the CORS headers; others a 403 JSON error without them."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        self.metrics.observe_rejected("origin_not_allowed")
        reason = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        refused = error_response(OriginNotAllowed(f"CORS preflight refused: {reason} not allowed"))
        refused.headers["Vary"] = "Origin"
        return refused
