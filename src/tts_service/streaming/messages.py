"""Client -> server messages: JSON text frames parsed and validated into typed messages or protocol errors."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tts_service.engine.options import SpeechOptions, SpeechText
from tts_service.errors import (
    BinaryMessage,
    MessageNotJSON,
    TextTooLong,
    UnknownMessageType,
    ValidationFailed,
)

StreamFormat = Literal["pcm", "mp3", "opus", "mulaw", "alaw"]
"""`tts_service.audio.WEBSOCKET_FORMATS`: formats whose pieces play as they arrive."""


class _Opening(SpeechOptions):
    """What a message that opens a stream says besides the speech options: how its events are to come."""

    encoding: Literal["binary", "base64"] = "binary"
    spectrogram: bool = False
    format: StreamFormat = "pcm"
    sample_rate: int | None = None
    timestamps: Literal["none", "word"] = "none"
    """`word`: a `words` event before the audio of each chunk whose words start in it."""


class SpeakMessage(_Opening):
    """Speak this text, then end the stream."""

    type: Literal["speak"]
    text: SpeechText


class StartMessage(_Opening):
    """Open an incremental stream; text follows in `text` messages."""

    type: Literal["start"]


class _Control(BaseModel):
    # Control messages tolerate extra fields (client ids, timestamps); speak/start refuse them like /tts does.
    model_config = ConfigDict(extra="ignore")


class TextMessage(_Control):
    """More text of an incremental stream (any split: tokens, words, characters)."""

    type: Literal["text"]
    text: SpeechText


class FlushMessage(_Control):
    """Speak what is pending now, even without a sentence end."""

    type: Literal["flush"]


class EndMessage(_Control):
    """Speak the rest, then end the stream."""

    type: Literal["end"]


class CancelMessage(_Control):
    """Stop: no more audio after the current chunk; the server answers `end` with `cancelled: true`."""

    type: Literal["cancel"]


ClientMessage = Annotated[
    SpeakMessage | StartMessage | TextMessage | FlushMessage | EndMessage | CancelMessage,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
MESSAGE_TYPES = ("speak", "start", "text", "flush", "end", "cancel")


def parse_message(raw: str | bytes, max_text_chars: int) -> ClientMessage:
    """One client frame to a message; a ProtocolError / ValidationFailed / TextTooLong subclass otherwise."""
    if isinstance(raw, bytes):
        raise BinaryMessage("binary frames are not accepted; send JSON text frames")
    # Refuse before parsing: a JSON string escapes a character to at most 12 bytes ("\ud83d\ude00").
    if len(raw) > 12 * max_text_chars + 4096:
        raise TextTooLong(
            f"message is {len(raw)} characters; text is limited to {max_text_chars}", limit=max_text_chars
        )
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise MessageNotJSON("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise MessageNotJSON("message must be a JSON object with a 'type'")
    kind = data.get("type")
    if kind not in MESSAGE_TYPES:
        raise UnknownMessageType(
            f"unknown message type {kind!r}; expected one of: {', '.join(MESSAGE_TYPES)}",
            types=list(MESSAGE_TYPES),
        )
    text = data.get("text")
    if isinstance(text, str) and len(text) > max_text_chars:
        raise TextTooLong(f"text is {len(text)} characters; the limit is {max_text_chars}", limit=max_text_chars)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _validation_failed(exc) from None


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    problems: list[str] = []
    fields: set[str] = set()
    for err in exc.errors()[:10]:
        # The discriminated union puts the type name first in the location; it is not a field.
        loc = ".".join(str(p) for p in err.get("loc", ())[1:])
        fields.add(loc)
        if err.get("type") == "missing":
            problems.append(f"{loc}: field required")
        elif err.get("type") == "extra_forbidden":
            problems.append(f"{loc}: unknown field")
        else:
            problems.append(f"{loc}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return ValidationFailed("; ".join(problems) or "invalid message", fields=sorted(fields - {""}))
