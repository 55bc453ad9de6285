"""A chat connection's turns, whatever carries its frames: `WS /ws/chat` on the local server holds a `ChatSession`
for the connection's life; the WebSocket API on AWS, where each frame is its own invocation, plays one turn per
chat message with `play_turn` and keeps the rest of the state in DynamoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from tts_service.chat.messages import ChatMessage, parse_chat_frame, turn_request
from tts_service.chat.service import ChatService
from tts_service.chat.turn import TurnEvent, TurnRequest, spoken_turn
from tts_service.engine import Engine
from tts_service.errors import ServiceError, UnexpectedMessage
from tts_service.streaming.driver import Incoming, Transport, TransportGone
from tts_service.streaming.events import AudioEvent, Encoding, ErrorEvent, to_json

logger = logging.getLogger(__name__)

SendEvent = Callable[[TurnEvent | ErrorEvent], Awaitable[None]]


async def play_turn(
    service: ChatService, engine: Engine, req: TurnRequest, cancel: asyncio.Event, send: SendEvent
) -> None:
    """Send the events of one spoken turn, a ServiceError (before or during it) as an `error` event.

    When `send` raises (the client left), the turn's events are closed on the way out, which stops the LLM
    stream and synthesis at once rather than whenever the generator is collected.
    """
    try:
        async with aclosing(spoken_turn(service, engine, req, cancel)) as events:
            async for event in events:
                await send(event)
    except ServiceError as exc:
        await send(ErrorEvent.from_error(exc))


class ChatSession:
    """One chat connection: one turn at a time; `cancel` stops the turn in progress."""

    def __init__(
        self,
        service: ChatService,
        engine: Engine,
        owner: str,
        transport: Transport,
        charge: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.engine = engine
        self.owner = owner
        self.transport = transport
        self.charge = charge
        """Charges each turn to the client's budget, as a POST /chat would be (RateLimited when spent)."""
        self.turn: asyncio.Task[None] | None = None
        self.cancel = asyncio.Event()
        self._send_lock = asyncio.Lock()

    async def run(self, receive: Callable[[], Awaitable[Incoming]]) -> None:
        """Handle frames until the client leaves; then stop the turn in progress (LLM and synthesis with it)."""
        try:
            while (raw := await receive()) is not None:
                await self.handle(raw)
        finally:
            await self.stop()

    async def handle(self, raw: str | bytes) -> None:
        """One client frame; a bad one gets an `error` event and the connection stays usable."""
        try:
            msg = parse_chat_frame(raw)
            busy = self.busy()
            if msg == "cancel":
                if busy:
                    self.cancel.set()
                return
            if busy:
                raise UnexpectedMessage("a turn is in progress; send cancel or wait for done")
            if self.charge is not None:
                await self.charge()
            self.start(msg)
        except ServiceError as exc:
            await self.report(exc)

    async def report(self, exc: ServiceError) -> None:
        """Tell the client of a refused frame, unless it has left."""
        with contextlib.suppress(TransportGone):
            await self.send(ErrorEvent.from_error(exc))

    def busy(self) -> bool:
        return self.turn is not None and not self.turn.done()

    def start(self, msg: ChatMessage) -> None:
        self.cancel = asyncio.Event()
        req = turn_request(msg, self.owner, encoding=msg.encoding)
        self.turn = asyncio.create_task(self.play(req, self.cancel))

    async def play(self, req: TurnRequest, cancel: asyncio.Event) -> None:
        async def send(event: TurnEvent | ErrorEvent) -> None:
            await self.send(event, req.encoding)

        try:
            await play_turn(self.service, self.engine, req, cancel, send)
        except TransportGone:
            return  # the client left; closing the turn's events stopped the LLM and synthesis
        except Exception as exc:
            logger.error("chat turn crashed", extra={"error_type": type(exc).__name__})
            with contextlib.suppress(TransportGone):
                await self.send(ErrorEvent("internal_error", "the turn failed; the error was logged"))

    async def send(self, event: TurnEvent | ErrorEvent, encoding: Encoding = "base64") -> None:
        """Send one event; TransportGone when the client has left (whatever the transport raised)."""
        async with self._send_lock:
            try:
                if isinstance(event, AudioEvent) and encoding == "binary":
                    await self.transport.send_bytes(event.pcm)
                else:
                    await self.transport.send_text(to_json(event))
            except Exception as exc:
                raise TransportGone(type(exc).__name__) from exc

    async def stop(self) -> None:
        if self.turn is not None and not self.turn.done():
            self.turn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.turn
