"""The transport-neutral parts: message parsing, incremental sentence cutting, event rendering and sizes."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tts_service.engine.speech import SpeechChunk
from tts_service.errors import BinaryMessage, MessageNotJSON, TextTooLong, UnknownMessageType, ValidationFailed
from tts_service.streaming.events import (
    API_GATEWAY_FRAME_LIMIT,
    AWS_MAX_AUDIO_BYTES,
    MAX_EVENT_TEXT,
    EndEvent,
    ErrorEvent,
    EventMaker,
    StartEvent,
    to_json,
)
from tts_service.streaming.messages import SpeakMessage, StartMessage, TextMessage, parse_message
from tts_service.streaming.session import IncrementalText


def test_parse_speak_with_options() -> None:
    msg = parse_message(json.dumps({"type": "speak", "text": "Hi.", "speed": 1.5, "encoding": "base64"}), 100)
    assert isinstance(msg, SpeakMessage)
    assert msg.encoding == "base64"
    assert msg.options().speed == 1.5
    assert not msg.spectrogram


def test_parse_start_defaults_to_binary() -> None:
    msg = parse_message('{"type": "start", "voice": "en_US-joe-medium"}', 100)
    assert isinstance(msg, StartMessage)
    assert msg.encoding == "binary"
    assert msg.options().voice == "en_US-joe-medium"


@pytest.mark.parametrize(
    ("raw", "error", "code"),
    [
        ("not json", MessageNotJSON, "invalid_json"),
        ("[1, 2]", MessageNotJSON, "invalid_json"),
        ('{"type": "sing"}', UnknownMessageType, "unknown_type"),
        ('{"text": "no type"}', UnknownMessageType, "unknown_type"),
        ('{"type": "speak"}', ValidationFailed, "validation_error"),
        ('{"type": "text"}', ValidationFailed, "validation_error"),
        ('{"type": "speak", "text": "x", "speed": 99}', ValidationFailed, "validation_error"),
        ('{"type": "speak", "text": "x", "encoding": "mp3"}', ValidationFailed, "validation_error"),
        ('{"type": "speak", "text": "x", "colour": "red"}', ValidationFailed, "validation_error"),
        (b"\x00\x01binary", BinaryMessage, "binary_not_supported"),
        (json.dumps({"type": "speak", "text": "a" * 101}), TextTooLong, "text_too_long"),
        ("x" * 10_000, TextTooLong, "text_too_long"),
    ],
)
def test_malformed_messages_raise_coded_errors(raw: str | bytes, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as info:
        parse_message(raw, 100)
    assert getattr(info.value, "code", None) == code


def test_missing_text_names_the_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_message('{"type": "speak"}', 100)
    assert info.value.details["fields"] == ["text"]


def test_control_messages_ignore_extra_fields() -> None:
    msg = parse_message('{"type": "text", "text": "Hi", "id": 7}', 100)
    assert isinstance(msg, TextMessage)
    assert msg.text == "Hi"


TRICKY = (
    "Dr. Smith paid 3.5 dollars for tea, e.g. green tea. Wait... what did he say? "
    "He said it was fine! The U.S. team won at 5 p.m. today. Last one without an end"
)
TRICKY_SENTENCES = [
    "Dr. Smith paid 3.5 dollars for tea, e.g. green tea.",
    "Wait... what did he say?",
    "He said it was fine!",
    "The U.S. team won at 5 p.m. today.",
]


@pytest.mark.parametrize("split", ["words", "chars", "tokens"])
def test_incremental_text_cuts_sentences_as_they_complete(split: str) -> None:
    if split == "words":
        pieces = [w + " " for w in TRICKY.split(" ")]
    elif split == "chars":
        pieces = list(TRICKY)
    else:
        pieces = [TRICKY[i : i + 3] for i in range(0, len(TRICKY), 3)]
    text = IncrementalText(1000)
    spoken: list[str] = []
    for piece in pieces:
        spoken.extend(text.feed(piece))
    assert spoken == TRICKY_SENTENCES
    assert text.flush() == "Last one without an end"
    assert text.flush() is None


def test_sentence_is_spoken_once_its_end_is_certain() -> None:
    text = IncrementalText(1000)
    assert text.feed("It costs 3.") == []  # might become 3.5
    assert text.feed("5 now. And") == ["It costs 3.5 now."]
    assert text.pending == " And"


def test_incremental_text_refuses_runaway_pending_text() -> None:
    text = IncrementalText(20)
    text.feed("short ")
    with pytest.raises(TextTooLong):
        text.feed("x" * 30)
    assert text.pending == "short "  # unchanged: the connection stays usable


def _chunk(samples: int, text: str = "A sentence.", end: bool = True) -> SpeechChunk:
    pcm = (np.sin(np.arange(samples) / 5.0) * 8000).astype(np.int16)
    return SpeechChunk(seq=0, text=text, pcm=pcm, sample_rate=22050, sentence_end=end)


def test_event_maker_splits_audio_into_bounded_numbered_events() -> None:
    maker = EventMaker(AWS_MAX_AUDIO_BYTES, spectrogram=True)
    chunk = _chunk(100_000, text="é" * 5000)
    events = maker.events(chunk) + maker.events(_chunk(3000, text="Next one."))
    audio = [e for e in events if e.to_dict()["type"] == "audio"]
    specs = [e for e in events if e.to_dict()["type"] == "spectrogram"]
    assert [e.seq for e in audio] == list(range(len(audio)))
    assert [e.seq for e in specs] == [e.seq for e in audio]
    joined = b"".join(base64.b64decode(e.to_dict()["audio"]) for e in audio)
    assert joined == chunk.pcm.astype("<i2").tobytes() + _chunk(3000).pcm.astype("<i2").tobytes()
    for event in events:
        assert len(to_json(event).encode()) <= API_GATEWAY_FRAME_LIMIT
    texts = [e.to_dict()["text"] for e in audio]
    assert texts[0] == "é" * MAX_EVENT_TEXT
    assert texts[-1] == "Next one."
    assert set(texts[1:-1]) == {""}
    # Spectrogram frames cover each event's samples (hop 256).
    assert sum(len(s.to_dict()["frames"]) for s in specs[:-1]) >= 100_000 // 256
    end = maker.end()
    assert end.chunks == len(audio)
    assert end.duration_ms == round(1000 * 103_000 / 22050)


def test_continuation_pieces_carry_no_text() -> None:
    maker = EventMaker(1 << 20)
    first = maker.events(_chunk(1000, "Long sentence.", end=False))
    rest = maker.events(_chunk(1000, "Long sentence.", end=True))
    after = maker.events(_chunk(1000, "Next."))
    assert [e.to_dict()["text"] for e in first + rest + after] == ["Long sentence.", "", "Next."]


def test_event_shapes() -> None:
    assert StartEvent("s1", "v", 22050, "binary").to_dict() == {
        "type": "start",
        "stream_id": "s1",
        "voice": "v",
        "sample_rate": 22050,
        "sample_width": 2,
        "channels": 1,
        "encoding": "binary",
        "format": "pcm",
    }
    assert EndEvent(3, 1200, cancelled=True).to_dict() == {
        "type": "end",
        "chunks": 3,
        "duration_ms": 1200,
        "cancelled": True,
    }
    err = ErrorEvent.from_error(TextTooLong("too long", limit=5)).to_dict()
    assert err == {"type": "error", "code": "text_too_long", "message": "too long", "limit": 5, "ends_stream": False}
