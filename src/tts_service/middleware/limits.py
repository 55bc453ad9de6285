"""Request body size limit (413) and request timeout (504), both answered as JSON through the error mapping."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.errors import GatewayTimeout, PayloadTooLarge
from tts_service.middleware._asgi import header
from tts_service.observability import Metrics
from tts_service.responses import refuse

logger = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: at once from Content-Length, else while reading a chunked body.

    The body is read here, up to the limit, and replayed to the app: our bodies are small JSON documents the
    app would buffer anyway, and refusing before the app runs means no half-handled request.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    def _too_large(self) -> PayloadTooLarge:
        self.metrics.observe_rejected("payload_too_large")
        return PayloadTooLarge(f"request body is over {self.max_bytes} bytes", limit=self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await refuse(scope, receive, send, self._too_large(), 0)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away mid-body: the app sees the disconnect, never a truncated body.
                pending: list[Message] = [message]
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await refuse(scope, receive, send, self._too_large(), 0)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)


class TimeoutMiddleware:
    """504 JSON when the response has not started within `seconds`.

    Only the wait for the status line counts: a streamed response that has started may run on (its own idle
    limits apply), and WebSocket sessions are not timed at all.
    """

    def __init__(self, app: ASGIApp, *, seconds: float, metrics: Metrics) -> None:
        self.app = app
        self.seconds = seconds
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.seconds) as deadline:

                async def send_and_stop_clock(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        deadline.reschedule(None)
                    await send(message)

                await self.app(scope, receive, send_and_stop_clock)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError, not our deadline
            self.metrics.observe_rejected("timeout")
            logger.warning("request timed out", extra={"timeout_secs": self.seconds})
            exc = GatewayTimeout(f"the request did not complete within {self.seconds:g} s", timeout_secs=self.seconds)
            await refuse(scope, receive, send, exc, 0)


class DisconnectMiddleware:
    """Stop serving a request whose client went away before its response was complete.

    Servers only report a disconnect to the next `receive()`, which a route that computes (a whole `/tts`, a chat
    reply) never calls: it would synthesize the whole text for nobody. Once the body is read, this waits on
    `receive()` itself, and a disconnect cancels the request, which closes its synthesis between pieces and
    frees its admission. Later `receive()` calls of the app get the disconnect from here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        cancelled_by_us = False
        watcher: asyncio.Task[None] | None = None
        final: Message | None = None

        async def watch() -> None:
            nonlocal cancelled_by_us, final
            message = await receive()
            while message["type"] == "http.request":  # a body nobody read (a route without one): drain it
                message = await receive()
            final = message
            gone.set()
            if not done:
                cancelled_by_us = True
                task.cancel()

        async def body_then_watch() -> Message:
            nonlocal watcher
            if watcher is not None:
                await gone.wait()
                assert final is not None
                return final
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch())
            elif message["type"] == "http.disconnect":
                gone.set()
            return message

        done = False

        async def finishing_send(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
            await send(message)

        try:
            await self.app(scope, body_then_watch, finishing_send)
        except asyncio.CancelledError:
            if not cancelled_by_us or task.uncancel() > 0:
                raise
            logger.info("client went away; request stopped")
        finally:
            done = True
            if watcher is not None and not watcher.done():
                watcher.cancel()
