"""Request metrics and the access log: one line per request with its route template, status and duration."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.middleware._asgi import RouteTemplates
from tts_service.middleware.clients import ClientResolver
from tts_service.observability import Metrics

logger = logging.getLogger("tts_service.access")


class AccessMiddleware:
    """Counts requests by route template, method and status, times them, tracks in-flight, and logs each one.

    The log line holds no query string, body or header values: text, audio and keys stay out of logs.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: RouteTemplates, clients: ClientResolver) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.clients = clients

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        method = "WEBSOCKET" if websocket else str(scope.get("method", "GET"))
        status = 500  # what the client gets if the app raises before answering
        sent_bytes = 0
        started = time.perf_counter()
        client_ip = self.clients.resolve(scope)

        async def observing_send(message: Message) -> None:
            nonlocal status, sent_bytes
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = int(message["status"])
            elif kind == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status == 500:
                status = 403  # closed before accept: the server refuses the handshake with 403
            await send(message)

        if not websocket:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observing_send)
        finally:
            if not websocket:
                self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = self.routes.match(scope)
            self.metrics.observe_request(route, method, status, seconds)
            logger.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "bytes_sent": sent_bytes,
                    "client_ip": client_ip,
                },
            )
