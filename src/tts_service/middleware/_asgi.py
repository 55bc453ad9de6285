"""Small ASGI helpers shared by the middlewares: headers, refusals rendered through the one error mapping."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from tts_service.errors import ServiceError

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


def path_of(scope: Scope) -> str:
    """The request path without the root path a proxy or Mangum may have prefixed."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def is_health(scope: Scope) -> bool:
    return path_of(scope).rstrip("/") in HEALTH_PATHS


def is_console(scope: Scope) -> bool:
    """A GET (or HEAD) of the console's page or one of its files."""
    if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    path = path_of(scope)
    return path == CONSOLE_PAGE or path.startswith(CONSOLE_ASSETS)


async def refuse(scope: Scope, receive: Receive, send: Send, exc: ServiceError, ws_code: int) -> None:
    """Answer with `exc`: a JSON error over HTTP; for a WebSocket not yet accepted, a close with `ws_code`."""
    from tts_service.app import error_response  # app imports this package; import late to avoid a cycle

    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        # Closing before accept makes the server answer the handshake with 403; the reason tells clients why.
        await send({"type": "websocket.close", "code": ws_code, "reason": exc.message[:120]})
        return
    # Over a WebSocket handshake, servers with the denial-response extension send this as a plain HTTP answer.
    await error_response(exc, scope)(scope, receive, send)


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
