"""Graceful shutdown: on SIGTERM stop accepting, let in-flight work finish up to a deadline, close streams with 1001.

`DrainMiddleware` tracks HTTP requests and WebSocket sessions; `Drain.drain()` (called by the shim's server
on SIGTERM) refuses new requests with 503 `shutting_down`, waits for HTTP requests in flight, and closes each
WebSocket with 1001 (going away) as soon as it falls quiet, so an utterance being streamed is finished
first; at the deadline whatever is left is closed. Streaming handlers can also watch `Drain.draining`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.errors import ShuttingDown
from tts_service.middleware._asgi import WS_GOING_AWAY, add_headers
from tts_service.observability import Metrics
from tts_service.responses import refuse
from tts_service.urls import path_of

logger = logging.getLogger(__name__)

# Liveness stays 200 while draining (the process is fine); readiness and everything else say 503.
_LIVENESS = frozenset({"/health", "/api/health"})
QUIET_SECS = 1.0
"""A WebSocket with no message either way for this long has no utterance in progress (unless it says otherwise)."""
BUSY_STATE = "stream_in_progress"
"""Key of the connection's state under which a WebSocket handler may put a callable saying a stream is in progress:
under load a stream can fall silent between its chunks for longer than QUIET_SECS, and is still closed only at
the deadline."""


class _Session:
    """One WebSocket session: when it last moved, and a way to close it from outside."""

    def __init__(self, send: Send, scope: Scope) -> None:
        self._send = send
        self.scope = scope
        self.last_activity = time.monotonic()
        self.closed = asyncio.Event()

    def quiet(self, now: float) -> bool:
        busy = self.scope.get("state", {}).get(BUSY_STATE)
        if callable(busy) and busy():
            return False
        return now - self.last_activity >= QUIET_SECS

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            await self._send({"type": "websocket.close", "code": WS_GOING_AWAY, "reason": "server shutting down"})
        except Exception:  # the client may already be gone; nothing to tell it then
            logger.debug("close on a finished websocket")


class Drain:
    """What is in flight, and the shutdown sequence."""

    def __init__(self) -> None:
        self.draining = False
        self.http_in_flight = 0
        self.sessions: set[_Session] = set()

    @property
    def idle(self) -> bool:
        return self.http_in_flight == 0 and not self.sessions

    async def drain(self, deadline_secs: float, poll_secs: float = 0.05) -> None:
        """Refuse new work, wait for HTTP requests, close quiet WebSockets; close the rest at the deadline."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_secs
        logger.info(
            "draining",
            extra={
                "http_in_flight": self.http_in_flight,
                "websockets": len(self.sessions),
                "deadline_secs": deadline_secs,
            },
        )
        while not self.idle and loop.time() < end:
            now = time.monotonic()
            for session in [s for s in self.sessions if s.quiet(now)]:
                await session.close()
            await asyncio.sleep(poll_secs)
        for session in list(self.sessions):
            await session.close()
        if self.http_in_flight:
            logger.warning("drain deadline passed", extra={"http_in_flight": self.http_in_flight})
        else:
            logger.info("drained")


class DrainMiddleware:
    """Counts requests and sessions for `Drain`; while draining, new ones get 503 (liveness excepted)."""

    def __init__(self, app: ASGIApp, *, drain: Drain, metrics: Metrics) -> None:
        self.app = app
        self.drain = drain
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.observe_rejected("shutting_down")
        exc = ShuttingDown("the server is shutting down; retry on another instance", headers={"Retry-After": "1"})
        exc.headers["Connection"] = "close"
        await refuse(scope, receive, send, exc, WS_GOING_AWAY)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.drain.draining and path_of(scope).rstrip("/") not in _LIVENESS:
            await self._refuse(scope, receive, send)
            return
        self.drain.http_in_flight += 1
        try:
            if not self.drain.draining:
                await self.app(scope, receive, send)
                return

            async def closing_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    add_headers(message, [(b"connection", b"close")])
                await send(message)

            await self.app(scope, receive, closing_send)
        finally:
            self.drain.http_in_flight -= 1

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.drain.draining:
            await self._refuse(scope, receive, send)
            return
        session = _Session(send, scope)
        self.drain.sessions.add(session)

        async def tracked_send(message: Message) -> None:
            if session.closed.is_set():
                return  # we closed it for shutdown; the handler's late messages have nowhere to go
            session.last_activity = time.monotonic()
            if message["type"] == "websocket.close":
                session.closed.set()
            await send(message)

        async def tracked_receive() -> Message:
            if session.closed.is_set():
                return {"type": "websocket.disconnect", "code": WS_GOING_AWAY}
            incoming = asyncio.ensure_future(receive())
            closing = asyncio.ensure_future(session.closed.wait())
            try:
                await asyncio.wait({incoming, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                if not incoming.done():
                    incoming.cancel()
            if incoming.cancelled():
                return {"type": "websocket.disconnect", "code": WS_GOING_AWAY}
            session.last_activity = time.monotonic()
            return incoming.result()

        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            self.drain.sessions.discard(session)
