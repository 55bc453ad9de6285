"""Bounded work per request: text no voice can take, the spectrogram, and answers a buffered response cannot hold."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tts_service.api import openai_compat, stream, tts
from tts_service.app import create_app
from tts_service.engine import Engine
from tts_service.engine.audio import MAX_SPECTROGRAM_FRAMES, mel_spectrogram

# Each sentence is short to synthesize, and 5 s of silence follows it: minutes of audio for little compute.
PAUSED = "Yes. " * 40


@pytest.fixture(scope="module")
def buffered(engine: Engine) -> Iterator[TestClient]:
    """The tts function's routers as Lambda runs them: responses are collected whole (at most 6 MB)."""
    app = create_app(tts.router, openai_compat.router)
    app.state.buffered_responses = True
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("hello\x00world", "U+0000"),
        ("\x00", "U+0000"),
        ("a\x01b", "U+0001"),
        ("nul at the end\x00", "U+0000"),
        ("lone \ud800 surrogate", "U+D800"),
    ],
)
def test_text_no_voice_can_take_is_422_on_every_route(client: TestClient, text: str, named: str) -> None:
    # GIVEN text with a control character that is not whitespace, or an unpaired surrogate
    raw = json.dumps({"text": text}).encode()
    speech = json.dumps({"model": "tts-1", "voice": "alloy", "input": text}).encode()
    app = create_app(tts.router, stream.router, openai_compat.router)
    headers = {"content-type": "application/json"}
    with TestClient(app) as c:
        # WHEN it is sent to each synthesizing route
        answers = [
            c.post("/tts", content=raw, headers=headers),
            c.post("/tts/stream", content=raw, headers=headers),
            c.post("/v1/audio/speech", content=speech, headers=headers),
        ]
        with c.websocket_connect("/ws/tts") as ws:
            ws.send_text(json.dumps({"type": "speak", "text": text}))
            event = ws.receive_json()
    # THEN each refuses it as bad input, naming the character, and nothing is a 5xx
    assert [a.status_code for a in answers] == [422, 422, 400]  # OpenAI's routes say 400 for bad input
    assert [a.json()["error"]["code"] for a in answers] == ["validation_error"] * 3
    assert named in answers[0].json()["error"]["message"]
    assert event["type"] == "error"
    assert event["code"] == "validation_error"
    # AND whitespace controls are still text
    assert client.post("/tts", json={"text": "Tab\tand\nnewline."}).status_code == 200


def test_spectrogram_is_capped_and_made_off_the_event_loop(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a watch on where the spectrogram is computed
    loops: list[bool] = []
    original = mel_spectrogram

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return original(*args, **kwargs)

    monkeypatch.setattr(tts, "mel_spectrogram", watched)
    # WHEN long audio (about 50 s: ten sentences 5 s apart) asks for one
    body = {"text": "Yes. " * 10, "sentence_silence": 5.0, "include_spectrogram": True}
    data = client.post("/tts", json=body).json()
    # THEN it was computed on a thread, and its frames stay within the cap at a longer hop that says so
    assert loops == [False]
    spec = data["spectrogram"]
    natural = 1 + round(data["duration_ms"] / 1000 * data["sample_rate"]) // 256
    assert natural > MAX_SPECTROGRAM_FRAMES
    assert spec["hop_length"] == 256 * math.ceil(natural / MAX_SPECTROGRAM_FRAMES)
    assert MAX_SPECTROGRAM_FRAMES // 2 < len(spec["frames"]) <= MAX_SPECTROGRAM_FRAMES
    assert all(len(frame) == spec["n_mels"] == 80 for frame in spec["frames"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tts", {"text": PAUSED, "sentence_silence": 5.0}),
        ("/tts?format=wav", {"text": "Slow words, many of them. " * 100, "speed": 0.25}),
        (
            "/v1/audio/speech",
            {
                "model": "tts-1",
                "voice": "alloy",
                "input": "Slow words. " * 300,
                "speed": 0.25,
                "response_format": "wav",
            },
        ),
    ],
)
def test_lambda_refuses_an_answer_that_cannot_fit_before_synthesis(
    buffered: TestClient, admissions: list[int], path: str, body: dict[str, Any]
) -> None:
    # WHEN the buffered (Lambda) app is asked for speech whose least possible size is over 6 MB
    response = buffered.post(path, json=body)
    # THEN it is refused at once with the size limit and a way out, and no synthesis was admitted
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "response_too_large"
    assert "stream" in error["message"]
    assert "not synthesized" in error["message"]
    assert admissions == []


def test_lambda_still_synthesizes_what_may_fit(buffered: TestClient, admissions: list[int]) -> None:
    response = buffered.post("/tts", json={"text": "A short answer fits easily."})
    assert response.status_code == 200
    assert admissions == [1]
