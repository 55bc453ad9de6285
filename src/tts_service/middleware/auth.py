"""Who is calling, for every request: its owner in the request state, or a 401 when keys are required and missing.

With `API_KEYS` set every endpoint but health needs `Authorization: Bearer <key>` or `X-API-Key: <key>`; a
WebSocket handshake may instead present a ticket from `POST /ws-ticket` (see `tts_service.credentials`).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.credentials import SHARED_OWNER, Credentials, ticket_subprotocol
from tts_service.errors import Unauthorized
from tts_service.middleware._asgi import WS_POLICY_VIOLATION, is_console, is_health
from tts_service.observability import Metrics
from tts_service.responses import refuse

logger = logging.getLogger(__name__)

OWNER_STATE = "owner"
"""Request state key holding the caller's owner (a key fingerprint, or the shared owner without keys)."""


def _headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        found.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def identify(credentials: Credentials, scope: Scope) -> str | None:
    """The request's owner, checked once per request (a ticket is spent by the check) and kept in its state."""
    state = scope.setdefault("state", {})
    if OWNER_STATE not in state:
        state[OWNER_STATE] = credentials.owner(_headers(scope), _query(scope), scope["type"] == "websocket")
    found = state[OWNER_STATE]
    return found if isinstance(found, str) else None


def _echo_subprotocol(send: Send, protocol: str) -> Send:
    """Name the offered ticket subprotocol in the handshake's answer: browsers drop a connection that lacks it."""

    async def echoing_send(message: Message) -> None:
        if message["type"] == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": protocol}
        await send(message)

    return echoing_send


class ApiKeyMiddleware:
    """Sets the caller's owner on every request; without a valid key (when keys are required), a 401 JSON error
    or a refused WebSocket handshake. Health endpoints, the console's static files and CORS preflights pass without
    a key."""

    def __init__(self, app: ASGIApp, *, credentials: Credentials, metrics: Metrics) -> None:
        self.app = app
        self.credentials = credentials
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        if websocket:
            protocol = ticket_subprotocol(_headers(scope))
            if protocol is not None:
                send = _echo_subprotocol(send, protocol)
        if not self.credentials.required:
            scope.setdefault("state", {})[OWNER_STATE] = SHARED_OWNER
            await self.app(scope, receive, send)
            return
        if is_health(scope) or is_console(scope) or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if identify(self.credentials, scope) is None:
            headers, query = _headers(scope), _query(scope)
            reason, message = self.credentials.refusal(headers, query, websocket)
            self.metrics.observe_rejected("unauthorized")
            logger.info("unauthorized", extra={"reason": reason})
            exc = Unauthorized(message)
            exc.headers["WWW-Authenticate"] = 'Bearer realm="tts-service"'
            await refuse(scope, receive, send, exc, WS_POLICY_VIOLATION)
            return
        await self.app(scope, receive, send)
