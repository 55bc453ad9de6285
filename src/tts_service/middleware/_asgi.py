"""Small ASGI helpers shared by the middlewares: headers, the paths that skip checks, WebSocket close codes.

Refusals are rendered by `tts_service.responses.refuse`.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import compile_path
from starlette.types import Message, Scope

from tts_service.urls import path_of

# Liveness and readiness answer without a key, a rate budget or the synthesis queue.
HEALTH_PATHS = frozenset({"/health", "/healthz", "/api/health", "/api/healthz"})

# The web console's page and its static files (tts_service.api.console, mounted by the shim): public, since the page
# must load before it can ask for a key, and free of rate budgets, since they hold no data and cost nothing.
CONSOLE_PAGE = "/"
CONSOLE_ASSETS = "/assets/"

# WebSocket close codes (RFC 6455 section 7.4.1).
WS_POLICY_VIOLATION = 1008
WS_GOING_AWAY = 1001
WS_TRY_AGAIN_LATER = 1013


class SlowClient(OSError):
    """A send to the client did not complete in time: the response or WebSocket is given up.

    An OSError, as a vanished client's send is, so every handler that copes with a disconnect copes with this.
    """


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (name in lower case), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_health(scope: Scope) -> bool:
    return path_of(scope).rstrip("/") in HEALTH_PATHS


def is_console(scope: Scope) -> bool:
    """A GET (or HEAD) of the console's page or one of its files."""
    if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    path = path_of(scope)
    return path == CONSOLE_PAGE or path.startswith(CONSOLE_ASSETS)


def add_headers(message: Message, headers: list[tuple[bytes, bytes]]) -> None:
    """Append headers to an `http.response.start` message in place."""
    message["headers"] = [*message.get("headers", []), *headers]


class RouteTemplates:
    """Maps a request path to its route template (`/voices/{id}`), never to the raw path: a bounded label."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._compiled = [(compile_path(t)[0], t) for t in dict.fromkeys(templates)]

    def match(self, scope: Scope) -> str:
        path = path_of(scope)
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        route = getattr(scope.get("route"), "path", None)
        return route if isinstance(route, str) else "unmatched"
