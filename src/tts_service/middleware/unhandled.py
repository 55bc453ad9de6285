"""The last resort: an exception that escapes a route becomes a JSON 500, without a traceback in the log."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.errors import ServiceError
from tts_service.middleware._asgi import SlowClient
from tts_service.responses import error_response

logger = logging.getLogger(__name__)


class UnhandledErrorMiddleware:
    """Turn any exception that escapes a route into a JSON 500, logging its type but no traceback.

    Starlette's own last-resort handler re-raises after responding, which puts a traceback (and whatever the
    exception message holds) into the server log; this middleware sits inside it and stops that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except SlowClient:
            raise  # not a failure: the client stopped reading, and the middleware that timed it ends the response
        except Exception as exc:
            # The route template, never the raw path: a path may hold a conversation id.
            route = getattr(scope.get("route"), "path", None)
            logger.error("unhandled error", extra={"error_type": type(exc).__name__, "route": route or "unmatched"})
            if started:
                return  # the status line is gone; the client sees a truncated body
            body = ServiceError("internal error; the request was logged")
            await error_response(body, scope)(scope, receive, send)
