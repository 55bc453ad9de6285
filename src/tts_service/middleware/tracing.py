"""A server span per request (and per WebSocket connection): route template, method, status; a no-op while
tracing is off (`tts_service.observability.tracing`).

It sits just inside the request id, so the span covers every refusal too, and the access log line (written
inside it) carries the trace id. The span never records the path, the query string or header values: a path may
hold a conversation id, a query a ticket.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.middleware._asgi import RouteTemplates
from tts_service.observability import tracing


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, routes: RouteTemplates) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = tracing.tracer()
        if tracer is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: PLC0415 optional `otel` extra

        websocket = scope["type"] == "websocket"
        method = "WEBSOCKET" if websocket else str(scope.get("method", "GET"))
        route = self.routes.match(scope)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        parent = tracing.context_from_headers(headers)
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = int(message["status"])
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status == 500:
                status = 403
            await send(message)

        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.scheme": str(scope.get("scheme", "http")),
            "network.protocol.version": str(scope.get("http_version", "1.1")),
        }
        request_id = scope.get("state", {}).get("request_id")
        if isinstance(request_id, str):
            attributes["tts.request_id"] = request_id
        with tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, observing_send)
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", str(status))
