"""What chat clients send: the body of `POST /chat` and the frames of a chat connection (`WS /ws/chat` on the
local server, the WebSocket API on AWS), and the turn request a chat message becomes."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts_service.chat.memory import MemoryState
from tts_service.chat.service import CONVERSATION_ID_PATTERN
from tts_service.chat.turn import TurnRequest
from tts_service.engine import SpeechOptions
from tts_service.engine.options import SpeechText
from tts_service.errors import BinaryMessage, MessageNotJSON, UnknownMessageType, ValidationFailed
from tts_service.streaming.events import Encoding


class ChatRequest(SpeechOptions):
    """Body of POST /chat and POST /voice-chat; the speech options apply when the reply is spoken."""

    message: SpeechText = Field(description="The user's message: 1 to MAX_MESSAGE_CHARS characters after trimming.")
    conversation_id: str | None = Field(
        None,
        pattern=CONVERSATION_ID_PATTERN,
        description="Continue this conversation; omitted: a new one (its id is in the response).",
    )
    speak: bool = Field(False, description="Also return the reply as speech (always on for /voice-chat).")


class ChatResponse(BaseModel):
    """The reply, the conversation it belongs to, whether memory worked, and the speech when asked."""

    reply: str
    conversation_id: str
    conversation_url: str = Field(description="Absolute URL of GET /conversations/{id} (from PUBLIC_BASE_URL).")
    memory: MemoryState = Field(description='"ok", "unavailable" (answered without memory) or "disabled".')
    audio_base64: str | None = Field(None, description="A complete 16-bit mono WAV file, standard base64.")
    sample_rate: int | None = None
    duration_ms: int | None = None
    voice: str | None = None
    cleaned_text: str | None = Field(None, description="The text that was spoken (formatting removed).")


class ChatMessage(SpeechOptions):
    """`{"type": "chat", "message", ...}`: answer this message, streaming tokens and (by default) speech."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat"] = "chat"
    message: SpeechText
    conversation_id: str | None = Field(None, pattern=CONVERSATION_ID_PATTERN)
    speak: bool = True
    encoding: Literal["binary", "base64"] = "binary"


def parse_chat_frame(raw: str | bytes) -> ChatMessage | Literal["cancel"]:
    """One client frame: a chat message or a cancel; a protocol error otherwise."""
    if isinstance(raw, bytes):
        raise BinaryMessage("binary frames are not accepted; send JSON text frames")
    try:
        data = json.loads(raw)
    except ValueError:
        raise MessageNotJSON("the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise MessageNotJSON("the frame must be a JSON object")
    kind = data.get("type", "chat")
    if kind == "cancel":
        return "cancel"
    if kind not in ("chat", "message"):
        raise UnknownMessageType(f"unknown message type {str(kind)[:40]!r}; expected chat or cancel")
    return _chat_message({**data, "type": "chat"})


def _chat_message(data: dict[str, Any]) -> ChatMessage:
    try:
        return ChatMessage.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]]
        raise ValidationFailed("; ".join(problems)) from None


def turn_request(
    msg: ChatMessage, owner: str, *, encoding: Encoding, max_audio_bytes: int | None = None
) -> TurnRequest:
    """The turn a chat message asks for, answered in `owner`'s conversations, its audio sent as `encoding`."""
    return TurnRequest(
        message=msg.message,
        owner=owner,
        conversation_id=msg.conversation_id,
        speak=msg.speak,
        options=msg.options(),
        encoding=encoding,
        max_audio_bytes=max_audio_bytes,
    )
