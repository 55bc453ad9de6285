"""The tts and voices Lambda handlers answering real API Gateway events (HTTP API v2 and REST v1)."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import pytest

from tests.support.audio import assert_speech, parse_wav
from tests.support.lambda_events import FakeLambdaContext, load_event, load_function
from tts_service.engine import Engine


@pytest.fixture(scope="module")
def tts_function(engine: Engine) -> ModuleType:
    return load_function("tts")


@pytest.fixture(scope="module")
def voices_function(engine: Engine) -> ModuleType:
    return load_function("voices")


def invoke(module: ModuleType, event_name: str) -> dict[str, Any]:
    response: dict[str, Any] = module.handler(load_event(event_name), FakeLambdaContext())
    return response


def header(response: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return str(headers.get(name) or multi.get(name) or "")


@pytest.mark.parametrize(
    ("event_name", "text"),
    [
        ("http_v2_post_tts.json", "Hello from Lambda."),
        ("rest_v1_post_tts.json", "Hello from the REST API."),
        ("http_v2_post_tts_base64_body.json", "Encoded body."),
    ],
)
def test_tts_json_response(tts_function: ModuleType, event_name: str, text: str) -> None:
    response = invoke(tts_function, event_name)
    assert response["statusCode"] == 200
    assert header(response, "content-type").startswith("application/json")
    body = json.loads(response["body"])
    assert body["sample_rate"] == 22050
    assert_speech(parse_wav(base64.b64decode(body["audio_base64"])), text)


def test_tts_wav_response_is_base64_encoded(tts_function: ModuleType) -> None:
    response = invoke(tts_function, "http_v2_post_tts_wav.json")
    assert response["statusCode"] == 200
    assert header(response, "content-type") == "audio/wav"
    assert response["isBase64Encoded"] is True
    assert_speech(parse_wav(base64.b64decode(response["body"])), "Raw audio from Lambda.")


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("http_v2_post_tts_invalid.json", 422, "validation_error"),
        ("http_v2_post_tts_malformed.json", 400, "invalid_json"),
    ],
)
def test_tts_errors_are_json(tts_function: ModuleType, event_name: str, status: int, code: str) -> None:
    response = invoke(tts_function, event_name)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code


@pytest.mark.parametrize("event_name", ["http_v2_get_voices_detail.json", "rest_v1_get_voices_detail.json"])
def test_voices_detail(voices_function: ModuleType, event_name: str) -> None:
    response = invoke(voices_function, event_name)
    assert response["statusCode"] == 200
    voices = json.loads(response["body"])
    joe = next(v for v in voices if v["id"] == "en_US-joe-medium")
    assert joe["sample_rate"] == 22050


def test_voices_list(voices_function: ModuleType) -> None:
    response = invoke(voices_function, "http_v2_get_voices.json")
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"en_US": ["en_US-joe-medium"]}


def test_voices_function_does_not_serve_tts(voices_function: ModuleType) -> None:
    response = invoke(voices_function, "http_v2_post_tts.json")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"
