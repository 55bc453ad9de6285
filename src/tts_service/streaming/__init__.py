"""The speech-streaming protocol, independent of transport: client messages in, server events out.

`messages` parses and validates client frames, `events` renders server events, `session` cuts incremental text
into sentences, and `driver` runs one connection over the engine. The shim's WebSocket and chunked HTTP
(`tts_service.api.stream`) and the API Gateway WebSocket handler (`tts_service.aws.websocket`) render the same
events.
"""

from tts_service.streaming.driver import StreamDriver, Transport
from tts_service.streaming.events import AudioEvent, EndEvent, ErrorEvent, Event, SpectrogramEvent, StartEvent
from tts_service.streaming.messages import ClientMessage, parse_message
from tts_service.streaming.session import IncrementalText

__all__ = [
    "AudioEvent",
    "ClientMessage",
    "EndEvent",
    "ErrorEvent",
    "Event",
    "IncrementalText",
    "SpectrogramEvent",
    "StartEvent",
    "StreamDriver",
    "Transport",
    "parse_message",
]
