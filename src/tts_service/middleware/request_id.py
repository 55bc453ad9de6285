"""`X-Request-ID`: taken from the client when well-formed, generated otherwise, returned, and put in every log line."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.middleware._asgi import add_headers, header
from tts_service.observability.logging import request_id_var

HEADER = b"x-request-id"
# Letters, digits and a few separators: UUIDs, ULIDs, trace ids and API Gateway ids (base64), nothing that can
# forge log lines or headers.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+/\-]{0,127}$")


def choose_request_id(scope: Scope) -> str:
    """The client's id if well-formed, else API Gateway's request id (on Lambda), else a new UUID."""
    offered = header(scope, HEADER)
    if offered is not None and _WELL_FORMED.match(offered.strip()):
        return offered.strip()
    event: Any = scope.get("aws.event")
    if isinstance(event, dict):
        gateway_id = (event.get("requestContext") or {}).get("requestId")
        if isinstance(gateway_id, str) and _WELL_FORMED.match(gateway_id):
            return gateway_id
    return str(uuid.uuid4())


class RequestIdMiddleware:
    """Outermost layer: binds the request id to the context for its whole life and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start", "websocket.accept"):
                add_headers(message, [(HEADER, encoded)])
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
