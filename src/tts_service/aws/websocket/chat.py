"""Chat turns over the WebSocket API: a chat message runs a whole spoken turn in the invocation that received it.

The turn holds the connection's lease for its whole length; a `cancel` on another invocation raises the flag in
DynamoDB, which the turn reads between events and turns into its cancel event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING

from tts_service.aws import loop
from tts_service.aws.websocket.poster import ConnectionGone, Poster
from tts_service.aws.websocket.store import ConnectionStore
from tts_service.engine import Engine
from tts_service.errors import ServiceError, Unauthorized, UnexpectedMessage
from tts_service.streaming.events import API_GATEWAY_FRAME_LIMIT, AWS_MAX_AUDIO_BYTES, ErrorEvent

if TYPE_CHECKING:
    from tts_service.chat.service import ChatService
    from tts_service.chat.turn import TurnEvent, TurnRequest

CANCEL_POLL_SECS = 0.25
"""How often a chat turn reads the cancel flag (between events): one consistent GetItem."""
CHAT_TYPES = ("chat", "message")
"""Message types of a chat turn; the rest is the TTS streaming protocol."""


def is_chat(raw: str | bytes) -> bool:
    """A chat message (also without `type` when it has a `message`, as `WS /ws/chat` takes it)?"""
    if not isinstance(raw, str):
        return False
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and (data.get("type") in CHAT_TYPES or ("type" not in data and "message" in data))


class ChatBridge:
    """Runs chat turns for the WebSocket handler, with its engine and connection store."""

    def __init__(self, engine: Engine, store: ConnectionStore, service: ChatService | None = None) -> None:
        self.engine = engine
        self.store = store
        self.service = service

    def turn(self, connection_id: str, raw: str | bytes, poster: Poster) -> None:
        """Run the whole spoken turn of a chat message, posting its events; the stream closes when it ends."""
        # Imported here: the LLM and Qdrant clients cost cold-start time a TTS-only connection never needs.
        from tts_service.chat.messages import ChatMessage, parse_chat_frame, turn_request  # noqa: PLC0415 cold start (above)
        from tts_service.chat.service import get_chat_service  # noqa: PLC0415 cold start (above)

        stream_id = uuid.uuid4().hex
        speaker = uuid.uuid4().hex  # this invocation, as the holder of the connection's lease for the turn
        try:
            msg = parse_chat_frame(raw)
            if not isinstance(msg, ChatMessage):
                raise UnexpectedMessage("not a chat message")
            owner = self.store.open_turn(connection_id, stream_id=stream_id, speaker=speaker)
            if owner is None:
                # An item stored before connections had owners: serve no one's conversations.
                self.store.close_stream(connection_id, stream_id)
                raise Unauthorized("this connection has no owner; reconnect to chat")
        except ServiceError as exc:
            poster.post_quietly(ErrorEvent.from_error(exc))
            return
        # Every event is a JSON text frame here, its audio bounded to fit API Gateway's frame.
        req = turn_request(msg, owner, encoding="base64", max_audio_bytes=AWS_MAX_AUDIO_BYTES)
        service = self.service or get_chat_service()
        try:
            loop.run(self._play(connection_id, service, req, poster))
        finally:
            self.store.close_stream(connection_id, stream_id)

    async def _play(self, connection_id: str, service: ChatService, req: TurnRequest, poster: Poster) -> None:
        from tts_service.chat.session import play_turn  # noqa: PLC0415 chat stack only on a chat turn (cold start)

        cancel = asyncio.Event()
        polled = time.monotonic()

        async def send(event: TurnEvent | ErrorEvent) -> None:
            nonlocal polled
            poster.post(fit_to_frame(event))  # ConnectionGone ends the turn; play_turn stops LLM and synthesis
            if isinstance(event, ErrorEvent) or cancel.is_set() or time.monotonic() - polled < CANCEL_POLL_SECS:
                return
            polled = time.monotonic()
            item = self.store.get(connection_id)
            if item is None:
                raise ConnectionGone(connection_id)
            if item.get("cancelled"):
                cancel.set()

        await play_turn(service, self.engine, req, cancel, send)


def fit_to_frame(event: TurnEvent | ErrorEvent) -> TurnEvent | ErrorEvent:
    """`done` carries the whole reply: shorten it to fit a frame (the client has every token already)."""
    from tts_service.chat.turn import DoneEvent  # noqa: PLC0415 chat stack only on a chat turn (cold start)

    if not isinstance(event, DoneEvent):
        return event  # audio is bounded by AWS_MAX_AUDIO_BYTES, tokens are small
    reply = event.reply
    while reply and len(json.dumps({**event.to_dict(), "reply": reply}, ensure_ascii=False)) > API_GATEWAY_FRAME_LIMIT:
        reply = reply[: len(reply) // 2]
    return event if reply == event.reply else DoneEvent(reply, event.conversation_id, event.memory, event.cancelled)
