"""Our own routes in every format: POST /tts (format / Accept), POST /tts/stream and the WebSocket streams."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.audio import parse_wav
from tests.support.decode import assert_same_speech, decode
from tests.support.streams import collect

TEXT = "The river ran high after the storm. Farmers moved their sheep to the hills before dark."
STREAM_FORMATS = ["pcm", "mp3", "opus", "mulaw", "alaw"]


@pytest.fixture(scope="module")
def wav_seconds(stream_client: TestClient) -> float:
    wav = parse_wav(stream_client.post("/tts?format=wav", json={"text": TEXT}).content)
    return wav.seconds


@pytest.mark.parametrize(
    ("how", "fmt", "content_type", "rate"),
    [
        ({"json": {"text": TEXT, "format": "mp3"}}, "mp3", "audio/mpeg", 22050),
        ({"json": {"text": TEXT}, "headers": {"Accept": "audio/ogg"}}, "opus", "audio/ogg; codecs=opus", 24000),
        ({"json": {"text": TEXT}, "params": {"format": "aac"}}, "aac", "audio/aac", 22050),
        ({"json": {"text": TEXT, "format": "flac"}}, "flac", "audio/flac", 22050),
        ({"json": {"text": TEXT, "format": "pcm", "sample_rate": 16000}}, "pcm", "audio/pcm;rate=16000", 16000),
        ({"json": {"text": TEXT, "format": "wav", "sample_rate": 8000}}, "wav", "audio/wav", 8000),
        ({"json": {"text": TEXT}, "headers": {"Accept": "audio/basic"}}, "mulaw", "audio/PCMU;rate=8000", 8000),
        ({"json": {"text": TEXT, "format": "alaw"}}, "alaw", "audio/PCMA;rate=8000", 8000),
    ],
)
def test_tts_answers_every_format(
    stream_client: TestClient, wav_seconds: float, how: dict[str, Any], fmt: str, content_type: str, rate: int
) -> None:
    response = stream_client.post("/tts", **how)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["x-sample-rate"] == str(rate)
    decoded = decode(fmt, response.content, rate)
    assert decoded.sample_rate == rate
    assert_same_speech(decoded, wav_seconds)


def test_tts_json_carries_wav_at_the_asked_rate(stream_client: TestClient, wav_seconds: float) -> None:
    data = stream_client.post("/tts", json={"text": TEXT, "sample_rate": 16000}).json()
    wav = parse_wav(base64.b64decode(data["audio_base64"]))
    assert data["sample_rate"] == wav.sample_rate == 16000
    assert_same_speech(wav, wav_seconds)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "ogg"}, "format"),
        ({"format": "mp3", "sample_rate": 16000}, "sample_rate"),
        ({"format": "mulaw", "sample_rate": 16000}, "sample_rate"),
        ({"format": "pcm", "sample_rate": 11025}, "sample_rate"),
    ],
)
def test_tts_refuses_formats_and_rates_it_cannot_make(
    stream_client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = stream_client.post("/tts", json={"text": "Hello.", **body})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert error["fields"] == [field]


@pytest.mark.parametrize(
    ("body", "headers", "fmt", "rate"),
    [
        ({"format": "mp3"}, {}, "mp3", 22050),
        ({}, {"Accept": "audio/ogg"}, "opus", 24000),
        ({"format": "aac"}, {}, "aac", 22050),
        ({"format": "flac"}, {}, "flac", 22050),
        ({"format": "mulaw"}, {}, "mulaw", 8000),
        ({"format": "pcm", "sample_rate": 24000}, {}, "pcm", 24000),
        ({}, {"Accept": "audio/pcm"}, "pcm", 22050),
        ({}, {}, "wav", 22050),
    ],
)
def test_http_stream_in_every_format(
    stream_client: TestClient, wav_seconds: float, body: dict[str, Any], headers: dict[str, str], fmt: str, rate: int
) -> None:
    with stream_client.stream("POST", "/tts/stream", json={"text": TEXT, **body}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["x-sample-rate"] == str(rate)
        pieces = list(response.iter_bytes())
    decoded = decode(fmt, b"".join(pieces), rate)
    assert decoded.sample_rate == rate
    assert_same_speech(decoded, wav_seconds)


def test_http_stream_refuses_json(stream_client: TestClient) -> None:
    response = stream_client.post("/tts/stream", json={"text": "Hello.", "format": "json"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == ["format"]


@pytest.mark.parametrize("fmt", STREAM_FORMATS)
@pytest.mark.parametrize("encoding", ["binary", "base64"])
def test_websocket_speaks_every_stream_format(
    stream_client: TestClient, wav_seconds: float, fmt: str, encoding: str
) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_json({"type": "speak", "text": TEXT, "format": fmt, "encoding": encoding})
        events, binary = collect(ws)
    start, end = events[0], events[-1]
    rate = {"opus": 24000, "mulaw": 8000, "alaw": 8000}.get(fmt, 22050)
    assert start["format"] == fmt
    assert start["sample_rate"] == rate
    assert start["sample_width"] == {"pcm": 2, "mulaw": 1, "alaw": 1}.get(fmt)
    audio = [e for e in events if e["type"] == "audio"]
    if encoding == "binary":
        data = b"".join(binary)
        assert len(binary) == end["chunks"] >= 2
    else:
        data = b"".join(base64.b64decode(e["audio"]) for e in audio)
        assert [e["seq"] for e in audio] == list(range(end["chunks"]))
        # Each sentence's text rides on its first audio event (one event when the audio cache answers).
        assert " ".join(e["text"] for e in audio if e["text"]) == TEXT
    assert end["duration_ms"] == pytest.approx(wav_seconds * 1000, rel=0.05)
    assert_same_speech(decode(fmt, data, rate), wav_seconds)


def test_websocket_incremental_text_is_one_continuous_stream(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_json({"type": "start", "format": "opus"})
        for token in ["The river ran ", "high after the storm. ", "Farmers moved their ", "sheep to the hills."]:
            ws.send_json({"type": "text", "text": token})
        ws.send_json({"type": "end"})
        events, binary = collect(ws)
    # One Ogg stream across both sentences: a single header, and it decodes whole.
    data = b"".join(binary)
    assert data.count(b"OpusHead") == 1
    decoded = decode("opus", data)
    assert decoded.seconds == pytest.approx(events[-1]["duration_ms"] / 1000, abs=0.1)
    assert decoded.rms > 300


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"format": "flac"}, "format"),
        ({"format": "mp3", "spectrogram": True}, "spectrogram"),
        ({"format": "mp3", "sample_rate": 8000}, "sample_rate"),
        ({"format": "pcm", "sample_rate": 12345}, "sample_rate"),
    ],
)
def test_websocket_refuses_what_cannot_stream_and_carries_on(
    stream_client: TestClient, msg: dict[str, Any], field: str
) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_json({"type": "speak", "text": "Hello.", **msg})
        error = ws.receive_json()
        assert error["type"] == "error"
        assert error["code"] == "validation_error"
        assert field in error["message"]
        assert error["ends_stream"] is False
        ws.send_json({"type": "speak", "text": "Still here.", "format": "mulaw"})
        events, binary = collect(ws)
    assert events[-1]["type"] == "end"
    assert decode("mulaw", b"".join(binary), 8000).seconds > 0.4


def test_pcm_at_another_rate_over_websocket(stream_client: TestClient, wav_seconds: float) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_json({"type": "speak", "text": TEXT, "sample_rate": 16000})
        events, binary = collect(ws)
    assert events[0]["sample_rate"] == 16000
    assert_same_speech(decode("pcm", b"".join(binary), 16000), wav_seconds)
