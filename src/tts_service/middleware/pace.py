"""Clients that do not keep up: a send timeout on responses and WebSockets, an idle timeout on WebSockets, and a
per-client cap on concurrent streams.

A stream holds a synthesis admission for as long as it runs, and a client that stops reading makes every send
wait (the server's flow control): without a bound, a few dozen stalled clients would hold every admission and
everyone else would get 503 `busy`. A send that cannot complete within `STREAM_SEND_TIMEOUT_SECS` ends the
response or the WebSocket: the handler sees the client as gone (`SlowClient` is an OSError, which Starlette and
the handlers already treat as a disconnect), its synthesis is closed and its admission released.

The timeout bounds one send, not a stream: a player that reads at the speed of speech blocks a send for at most
one chunk's playing time (a decoder window, ~6 s, plus any `sentence_silence`), well within the default.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.errors import TooManyStreams
from tts_service.middleware._asgi import WS_GOING_AWAY, WS_TRY_AGAIN_LATER, SlowClient
from tts_service.observability import Metrics
from tts_service.observability.logging import response_abandoned_var
from tts_service.responses import refuse
from tts_service.urls import path_of

logger = logging.getLogger(__name__)


class PaceMiddleware:
    """Ends a response or WebSocket whose client does not take a send within `send_timeout` seconds, and closes a
    WebSocket on which nothing moved either way for `idle_timeout` seconds."""

    def __init__(self, app: ASGIApp, *, send_timeout: float, idle_timeout: float, metrics: Metrics) -> None:
        self.app = app
        self.send_timeout = send_timeout
        self.idle_timeout = idle_timeout
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await _Session(self, scope, receive, send).run()
        else:
            await self.app(scope, receive, send)

    def _too_slow(self, kind: str) -> SlowClient:
        self.metrics.observe_rejected("slow_client")
        logger.info("client too slow; ended", extra={"kind": kind, "send_timeout_secs": self.send_timeout})
        return SlowClient(f"the client took no data for {self.send_timeout:g} s")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        stalled = False

        async def timed_send(message: Message) -> None:
            nonlocal stalled
            if stalled:
                raise SlowClient("the response was abandoned")
            if message["type"] != "http.response.body":
                await send(message)
                return
            try:
                async with asyncio.timeout(self.send_timeout):
                    await send(message)
            except TimeoutError:
                stalled = True
                raise self._too_slow("http") from None

        try:
            await self.app(scope, receive, timed_send)
        except SlowClient:
            if not stalled:
                raise
            # The response cannot be finished: the server closes the connection (see tts_service.observability.logging).
            response_abandoned_var.set(True)


class _Session:
    """One WebSocket under PaceMiddleware."""

    def __init__(self, owner: PaceMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.owner = owner
        self.scope = scope
        self._receive = receive
        self._send = send
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.dead = False
        """A send timed out: the client is treated as gone from here on."""
        self.closed = False
        self._next: asyncio.Future[Message] | None = None

    async def run(self) -> None:
        try:
            await self.owner.app(self.scope, self.receive, self.send)
        finally:
            if self._next is not None and not self._next.done():
                self._next.cancel()

    async def send(self, message: Message) -> None:
        if self.dead:
            raise SlowClient("the client stopped reading")
        if message["type"] == "websocket.close":
            self.closed = True
        try:
            async with asyncio.timeout(self.owner.send_timeout):
                await self._send(message)
        except TimeoutError:
            self.dead = True
            raise self.owner._too_slow("websocket") from None
        self.last_activity = self.loop.time()

    async def receive(self) -> Message:
        while True:
            if self.dead:
                return {"type": "websocket.disconnect", "code": WS_GOING_AWAY}
            if self._next is None:
                # One receive in flight across waits, so a timed-out wait never loses a message.
                self._next = asyncio.ensure_future(self._receive())
            remaining = self.last_activity + self.owner.idle_timeout - self.loop.time()
            if remaining > 0 or self.closed:
                # Once closed, the client's answer (or the server's close timer) ends the wait.
                done, _ = await asyncio.wait({self._next}, timeout=None if self.closed else remaining)
                if not done:
                    continue  # a send may have moved the clock meanwhile
                message = self._next.result()
                self._next = None
                if message["type"] != "websocket.connect":
                    self.last_activity = self.loop.time()
                return message
            logger.info("websocket idle; closed", extra={"idle_timeout_secs": self.owner.idle_timeout})
            try:
                await self.send(
                    {"type": "websocket.close", "code": WS_GOING_AWAY, "reason": "idle: no message either way"}
                )
            except (SlowClient, OSError, RuntimeError):
                self.dead = True
            return {"type": "websocket.disconnect", "code": WS_GOING_AWAY}


class StreamCap:
    """How many streams each client has open in this process."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    def enter(self, client: str) -> bool:
        if self.open[client] >= self.per_client:
            return False
        self.open[client] += 1
        return True

    def leave(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


class StreamCapMiddleware:
    """429 `too_many_streams` for a client (its API key, else its IP) that already has `per_client` streams open:
    WebSocket sessions and the streaming HTTP routes. Counted per process, like the in-memory rate limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        per_client: int,
        stream_paths: frozenset[str],
        client_id: Callable[[Scope], str],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.cap = StreamCap(per_client)
        self.stream_paths = stream_paths
        self.client_id = client_id
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        counted = scope["type"] == "websocket" or (
            scope["type"] == "http" and path_of(scope).rstrip("/") in self.stream_paths
        )
        if not counted:
            await self.app(scope, receive, send)
            return
        client = self.client_id(scope)
        if not self.cap.enter(client):
            self.metrics.observe_rejected("too_many_streams")
            exc = TooManyStreams(
                f"this client already has {self.cap.per_client} streams open; close one first",
                headers={"Retry-After": "1"},
                limit=self.cap.per_client,
            )
            await refuse(scope, receive, send, exc, WS_TRY_AGAIN_LATER)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.cap.leave(client)
