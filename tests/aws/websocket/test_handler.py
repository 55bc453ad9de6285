"""The streaming protocol over the API Gateway WebSocket handler (fixtures: tests/aws/websocket/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from tests.support.audio import assert_speech, parse_wav
from tests.support.aws import CONNECTION, ENDPOINT, Capture, audio_of, message
from tests.support.lambda_events import load_event
from tts_service.aws.websocket import store
from tts_service.engine import Engine, SpeechChunk, SpeechRequest
from tts_service.engine.audio import wav_header
from tts_service.streaming.events import API_GATEWAY_FRAME_LIMIT


def test_connect_speak_disconnect(invoke: Any, capture: Capture, table: Any) -> None:
    assert invoke(load_event("ws_connect.json")) == {"statusCode": 200}
    item = table.get_item(Key={"connection_id": CONNECTION})["Item"]
    assert int(item["expires_at"]) > time.time() + 600

    assert invoke(load_event("ws_message_speak.json")) == {"statusCode": 200}
    assert set(capture.endpoints) == {ENDPOINT}
    assert {cid for cid, _ in capture.frames} == {CONNECTION}
    assert all(len(data) <= API_GATEWAY_FRAME_LIMIT for _, data in capture.frames)
    events = capture.events
    assert events[0]["type"] == "start"
    assert events[0]["encoding"] == "base64"
    assert events[0]["sample_rate"] == 22050
    audio = [e for e in events if e["type"] == "audio"]
    assert [e["seq"] for e in audio] == list(range(len(audio)))
    assert len(audio) >= 2
    assert [e["text"] for e in audio if e["text"]] == [
        "The harbor was quiet this morning.",
        "A few boats drifted near the pier.",
    ]
    assert events[-1] == {
        "type": "end",
        "chunks": len(audio),
        "duration_ms": events[-1]["duration_ms"],
        "cancelled": False,
    }
    pcm = audio_of(events)
    assert_speech(
        parse_wav(wav_header(22050, len(pcm)) + pcm),
        "The harbor was quiet this morning. A few boats drifted near the pier.",
    )
    assert "stream_id" not in table.get_item(Key={"connection_id": CONNECTION})["Item"]

    assert invoke(load_event("ws_disconnect.json")) == {"statusCode": 200}
    assert "Item" not in table.get_item(Key={"connection_id": CONNECTION})


def test_long_sentence_is_split_into_small_frames(invoke: Any, capture: Capture) -> None:
    invoke(load_event("ws_connect.json"))
    text = (
        "Across the valley the old mill turned slowly in the wind while farmers carried their sacks of grain "
        "along the muddy road toward the village market where merchants waited with scales and coins."
    )
    invoke(message({"type": "speak", "text": text, "spectrogram": True}))
    sizes = [len(data) for _, data in capture.frames]
    assert max(sizes) <= API_GATEWAY_FRAME_LIMIT
    events = capture.events
    audio = [e for e in events if e["type"] == "audio"]
    assert len(audio) >= 10  # ~10 s of audio in 16 KB events
    assert [e["seq"] for e in events if e["type"] == "spectrogram"] == [e["seq"] for e in audio]
    assert events[-1]["type"] == "end"


def test_incremental_text_across_invocations(invoke: Any, capture: Capture, table: Any) -> None:
    invoke(load_event("ws_connect.json"))
    invoke(message({"type": "start", "encoding": "binary"}))
    text = "Dr. Ames sold 2.5 tons, e.g. wheat. Prices rose... Then fell! Done"
    for word in text.split(" "):
        invoke(message({"type": "text", "text": word + " "}))
    pending = table.get_item(Key={"connection_id": CONNECTION})["Item"]["pending"]
    assert pending.strip() == "Done"
    invoke(message({"type": "end"}))
    events = capture.events
    assert events[0]["type"] == "start"
    assert events[0]["encoding"] == "base64"  # no binary frames on API Gateway
    spoken = [e["text"] for e in events if e["type"] == "audio" and e["text"]]
    assert spoken == ["Dr. Ames sold 2.5 tons, e.g. wheat.", "Prices rose...", "Then fell!", "Done"]
    audio = [e for e in events if e["type"] == "audio"]
    assert [e["seq"] for e in audio] == list(range(len(audio)))
    assert events[-1]["type"] == "end"
    assert events[-1]["chunks"] == len(audio)
    assert [e["type"] for e in events].count("end") == 1


def test_cancel_on_another_invocation_stops_the_speaker(invoke: Any, capture: Capture, table: Any) -> None:
    invoke(load_event("ws_connect.json"))
    text = (
        "The lighthouse keeper climbed the narrow stairs every evening to light the great lamp that guided ships "
        "safely past the rocks. He never missed a night. Storms came and went."
    )

    def cancel_from_elsewhere(n: int, data: bytes) -> None:
        if n == 2:  # the first audio frame is out: a cancel arrives on another instance
            invoke(message({"type": "cancel"}))

    capture.on_post = cancel_from_elsewhere
    invoke(message({"type": "speak", "text": text}))
    events = capture.events
    types = [e["type"] for e in events]
    assert types[-1] == "end"
    assert types.count("end") == 1
    assert events[-1]["cancelled"] is True
    # No more audio after the chunk in progress: the small first chunk of the long first sentence.
    assert types[1:-1] == ["audio"] * (len(types) - 2)
    assert len(types) - 2 <= 2
    assert events[-1]["duration_ms"] < 1000
    item = table.get_item(Key={"connection_id": CONNECTION})["Item"]
    assert "stream_id" not in item
    assert "speaker" not in item
    # The connection takes a new stream afterwards.
    capture.on_post = lambda n, data: None
    capture.frames.clear()
    invoke(message({"type": "speak", "text": "Back again."}))
    assert capture.events[-1]["type"] == "end"
    assert not capture.events[-1]["cancelled"]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    produced: list[int] = []
    original = Engine.iter_stream_chunks

    def counting(self: Engine, req: SpeechRequest) -> Generator[SpeechChunk, None, None]:
        for chunk in original(self, req):
            produced.append(chunk.seq)
            yield chunk

    monkeypatch.setattr(Engine, "iter_stream_chunks", counting)
    return produced


def test_gone_client_stops_synthesis(invoke: Any, capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    produced = _counting(monkeypatch)
    invoke(load_event("ws_connect.json"))
    capture.fail = lambda attempt, data: "GoneException" if b'"audio"' in data else None
    assert invoke(message({"type": "speak", "text": "One sentence here. Another one there. And a third one."})) == {
        "statusCode": 200
    }
    assert [e["type"] for e in capture.events] == ["start"]
    assert capture.attempts == 2  # start, then the first audio frame: Gone, never retried
    assert produced == [0]  # synthesis stopped at the chunk it could not deliver


def test_disconnect_mid_stream_stops_the_speaker(
    invoke: Any, capture: Capture, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    produced = _counting(monkeypatch)
    invoke(load_event("ws_connect.json"))
    capture.on_post = lambda n, data: invoke(load_event("ws_disconnect.json")) if n == 2 else None
    invoke(message({"type": "speak", "text": "First part is here. Second part follows. Third part ends it."}))
    types = [e["type"] for e in capture.events]
    # The rest of the chunk in progress goes out; nothing after it, and no `end` to a gone client.
    assert types[0] == "start"
    assert set(types[1:]) == {"audio"}
    assert produced == [0]
    assert "Item" not in table.get_item(Key={"connection_id": CONNECTION})


def test_malformed_messages_get_error_events(invoke: Any, capture: Capture) -> None:
    invoke(load_event("ws_connect.json"))
    invoke(load_event("ws_message_binary.json"))
    invoke(message("this is not json"))
    invoke(message({"type": "dance"}))
    invoke(message({"type": "speak"}))
    invoke(message({"type": "text", "text": "no stream yet"}))
    invoke(message({"type": "speak", "text": "x" * 6000}))
    invoke(message({"type": "speak", "text": "Hi.", "voice": "nobody"}))
    codes = [e["code"] for e in capture.events]
    assert codes == [
        "binary_not_supported",
        "invalid_json",
        "unknown_type",
        "validation_error",
        "unexpected_message",
        "text_too_long",
        "voice_not_found",
    ]
    assert all(e["type"] == "error" and e["message"] for e in capture.events)
    capture.frames.clear()
    invoke(message({"type": "speak", "text": "Still usable."}))
    assert [capture.events[0]["type"], capture.events[-1]["type"]] == ["start", "end"]


def test_speak_while_a_stream_is_open_is_refused(invoke: Any, capture: Capture) -> None:
    invoke(load_event("ws_connect.json"))
    invoke(message({"type": "start"}))
    invoke(message({"type": "speak", "text": "Interrupting."}))
    assert [e["type"] for e in capture.events] == ["start", "error"]
    assert capture.events[1]["code"] == "unexpected_message"


def test_queue_is_bounded(invoke: Any, capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_QUEUED", 1)
    invoke(load_event("ws_connect.json"))
    invoke(message({"type": "start"}))
    invoke(message({"type": "text", "text": "One. Two. Three. "}))
    assert [e["type"] for e in capture.events] == ["start", "error"]
    assert capture.events[1]["code"] == "busy"
    assert capture.events[1]["ends_stream"] is False


def test_api_gateway_websocket_sends_pcm_only(invoke: Any, capture: Capture) -> None:
    assert invoke(load_event("ws_connect.json")) == {"statusCode": 200}
    assert invoke(message({"type": "speak", "text": "Hello.", "format": "mp3"})) == {"statusCode": 200}
    (error,) = capture.events
    assert error["type"] == "error"
    assert error["code"] == "validation_error"
    assert "/ws/tts" in error["message"]
