"""The tts function answering OpenAI-compatible API Gateway events (HTTP API v2), within Lambda's 6 MB response."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import pytest

from tests.support.audio import parse_wav
from tests.support.decode import assert_same_speech, decode
from tests.support.lambda_events import FakeLambdaContext, load_event, load_function
from tts_service.api import delivery
from tts_service.engine import Engine

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def tts_function(engine: Engine) -> ModuleType:
    return load_function("tts")


def invoke(module: ModuleType, event_name: str) -> dict[str, Any]:
    response: dict[str, Any] = module.handler(load_event(event_name), FakeLambdaContext())
    # What Lambda hands back to API Gateway is this JSON document; it must fit the synchronous payload limit.
    assert len(json.dumps(response)) <= LAMBDA_RESPONSE_LIMIT
    return response


def headers(response: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): str(v) for k, v in (response.get("headers") or {}).items()}


@pytest.fixture(scope="module")
def wav_seconds(tts_function: ModuleType) -> float:
    response = invoke(tts_function, "http_v2_post_v1_speech_wav.json")
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    return parse_wav(base64.b64decode(response["body"])).seconds


def test_speech_as_mp3_is_a_base64_body(tts_function: ModuleType, wav_seconds: float) -> None:
    response = invoke(tts_function, "http_v2_post_v1_speech_mp3.json")
    assert response["statusCode"] == 200
    assert headers(response)["content-type"] == "audio/mpeg"
    assert response["isBase64Encoded"] is True
    mp3 = base64.b64decode(response["body"])
    assert_same_speech(decode("mp3", mp3), wav_seconds)
    # Compressed: about a tenth of the WAV, which is what lets long texts fit in 6 MB.
    assert len(mp3) < 0.2 * wav_seconds * 22050 * 2
    assert int(headers(response)["x-audio-duration-ms"]) == pytest.approx(wav_seconds * 1000, abs=1)


def test_speech_as_sse_comes_whole(tts_function: ModuleType, wav_seconds: float) -> None:
    response = invoke(tts_function, "http_v2_post_v1_speech_opus_sse.json")
    assert response["statusCode"] == 200
    assert headers(response)["content-type"].startswith("text/event-stream")
    body = base64.b64decode(response["body"]).decode() if response["isBase64Encoded"] else response["body"]
    events = [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert_same_speech(decode("opus", audio), wav_seconds)


def test_invalid_speech_is_an_openai_error(tts_function: ModuleType) -> None:
    response = invoke(tts_function, "http_v2_post_v1_speech_invalid.json")
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error == {
        "message": error["message"],
        "type": "invalid_request_error",
        "param": "speed",
        "code": "validation_error",
    }


def test_models_are_listed(tts_function: ModuleType) -> None:
    response = invoke(tts_function, "http_v2_get_v1_models.json")
    assert response["statusCode"] == 200
    assert "tts-1" in [m["id"] for m in json.loads(response["body"])["data"]]


def test_long_audio_fits_compressed_and_is_refused_clearly_as_wav(tts_function: ModuleType) -> None:
    # 24 short sentences 5 s apart: ~2 minutes of audio, ~5.5 MB of WAV (7.4 MB as base64), ~1 MB of mp3.
    mp3 = invoke(tts_function, "http_v2_post_tts_long_mp3.json")
    assert mp3["statusCode"] == 200
    assert mp3["isBase64Encoded"] is True
    decoded = decode("mp3", base64.b64decode(mp3["body"]))
    assert decoded.seconds > 120
    assert decoded.rms > 100
    wav = invoke(tts_function, "http_v2_post_tts_long_wav.json")
    assert wav["statusCode"] == 413
    error = json.loads(wav["body"])["error"]
    assert error["code"] == "response_too_large"
    assert "mp3" in error["message"]
    assert "stream" in error["message"]
    assert "6 MB" in error["message"]


def test_v1_refusal_past_the_limit_has_openai_shape(tts_function: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limit lowered to below this WAV's size: the refusal the SDK would see for a very long WAV.
    monkeypatch.setattr(delivery, "BUFFERED_RESPONSE_LIMIT", 200 * 1024)
    response = invoke(tts_function, "http_v2_post_v1_speech_wav.json")
    assert response["statusCode"] == 413
    error = json.loads(response["body"])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "response_too_large"
    assert "compressed response_format" in error["message"]
