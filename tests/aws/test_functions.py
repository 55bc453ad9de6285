"""The tts and voices functions (functions/*/app.py) answering real API Gateway events (HTTP API v2, REST v1),
and what CloudWatch would see of each: one JSON object per stdout line with the API Gateway request id as
`correlation_id`, and EMF metrics (cold start, latency, synthesis) per route."""

from __future__ import annotations

import base64
import io
import json
import wave
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider import cold_start

from tests.support.audio import assert_speech, parse_wav
from tests.support.lambda_events import (
    FakeLambdaContext,
    emf,
    json_lines,
    load_event,
    load_function,
    logs,
    metric,
    metric_names,
)
from tts_service.engine import Engine


@pytest.fixture(scope="module")
def tts_function(engine: Engine) -> ModuleType:
    return load_function("tts")


@pytest.fixture(scope="module")
def voices_function(engine: Engine) -> ModuleType:
    return load_function("voices")


def invoke(module: ModuleType, event_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    event = load_event(event_name)
    response: dict[str, Any] = module.handler(event, FakeLambdaContext())
    return event, response


def header(response: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return str(headers.get(name) or multi.get(name) or "")


def invocation_line(entries: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [e for e in logs(entries) if e.get("message") == "invocation"]
    return line


# The first test speaks on a cold instance; the ones after it find the function warm.
def test_tts_speaks_and_logs_with_the_correlation_id(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a fresh instance (cold start) WHEN API Gateway delivers POST /tts
    cold_start.reset_cold_start_flag()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
    event, response = invoke(tts_function, "http_post_tts.json")

    # THEN the body holds a real WAV of plausible length
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    with wave.open(io.BytesIO(base64.b64decode(body["audio_base64"]))) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (22050, 2, 1)
        seconds = wav.getnframes() / wav.getframerate()
    assert 0.8 < seconds < 4.0, seconds  # "Shipped to the cloud." is four words

    # AND stdout is JSON only: a request line with the API Gateway request id as correlation id
    entries = json_lines(capsys.readouterr().out)
    line = invocation_line(entries)
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert line["service"] == "tts"
    assert (line["route"], line["status"], line["voice"]) == ("POST /tts", 200, "en_US-joe-medium")
    assert line["audio_ms"] == pytest.approx(seconds * 1000, abs=2)
    assert line["function_request_id"]  # from the Lambda context
    assert "Shipped" not in json.dumps(entries)  # no user text in logs or metrics

    # AND EMF carries the cold start and the synthesis metrics, per route
    blobs = emf(entries)
    cold = [b for b in blobs if "ColdStart" in metric_names(b)]
    assert len(cold) == 1
    assert metric(cold[0], "ColdStart") == 1
    main = next(b for b in blobs if "Latency" in metric_names(b))
    assert {"Latency", "ServerError", "AudioDuration", "SynthesisRealTimeFactor"} <= metric_names(main)
    assert main["route"] == "POST /tts"
    assert main["service"] == "tts"
    assert metric(main, "ServerError") == 0
    assert metric(main, "AudioDuration") == pytest.approx(seconds, abs=0.01)
    assert 0 < metric(main, "SynthesisRealTimeFactor") < 5
    assert main["voice"] == "en_US-joe-medium"  # metadata, not a dimension
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"]


@pytest.mark.parametrize(
    ("event_name", "text"),
    [
        ("http_v2_post_tts.json", "Hello from Lambda."),
        ("rest_v1_post_tts.json", "Hello from the REST API."),
        ("http_v2_post_tts_base64_body.json", "Encoded body."),
    ],
)
def test_tts_json_response(tts_function: ModuleType, event_name: str, text: str) -> None:
    _, response = invoke(tts_function, event_name)
    assert response["statusCode"] == 200
    assert header(response, "content-type").startswith("application/json")
    body = json.loads(response["body"])
    assert body["sample_rate"] == 22050
    assert_speech(parse_wav(base64.b64decode(body["audio_base64"])), text)


@pytest.mark.parametrize(
    ("event_name", "text"),
    [("http_post_tts_wav.json", "Raw audio, please."), ("http_v2_post_tts_wav.json", "Raw audio from Lambda.")],
    ids=["format-query", "accept-header"],
)
def test_tts_wav_is_base64_for_api_gateway(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str], event_name: str, text: str
) -> None:
    _, response = invoke(tts_function, event_name)
    assert response["statusCode"] == 200
    assert header(response, "content-type") == "audio/wav"
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"])[:4] == b"RIFF"
    assert_speech(parse_wav(base64.b64decode(response["body"])), text)
    # a warm invocation publishes no cold start
    blobs = emf(json_lines(capsys.readouterr().out))
    assert not any("ColdStart" in metric_names(b) for b in blobs)


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("http_post_tts_invalid.json", 422, "validation_error"),
        ("http_v2_post_tts_invalid.json", 422, "validation_error"),
        ("http_v2_post_tts_malformed.json", 400, "invalid_json"),
    ],
)
def test_bad_input_is_a_json_4xx_not_an_error_metric(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str], event_name: str, status: int, code: str
) -> None:
    event, response = invoke(tts_function, event_name)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code
    entries = json_lines(capsys.readouterr().out)
    assert invocation_line(entries)["correlation_id"] == event["requestContext"]["requestId"]
    main = next(b for b in emf(entries) if "Latency" in metric_names(b))
    assert metric(main, "ServerError") == 0
    assert "AudioDuration" not in main


def test_healthz_on_the_tts_function_reports_the_loaded_voice(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _, response = invoke(tts_function, "http_get_healthz.json")
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ready"
    assert invocation_line(json_lines(capsys.readouterr().out))["route"] == "GET /healthz"


def _joe(body: Any) -> dict[str, Any]:
    return next(v for v in body if v["id"] == "en_US-joe-medium")


@pytest.mark.parametrize(
    ("event_name", "check"),
    [
        ("http_get_voices.json", lambda body: "en_US-joe-medium" in json.dumps(body)),
        ("http_v2_get_voices.json", lambda body: body == {"en_US": ["en_US-joe-medium"]}),
        ("http_get_voices_detail.json", lambda body: any(v["id"] == "en_US-joe-medium" for v in body)),
        ("http_v2_get_voices_detail.json", lambda body: _joe(body)["sample_rate"] == 22050),
        ("rest_v1_get_voices_detail.json", lambda body: _joe(body)["sample_rate"] == 22050),
        ("http_get_health.json", lambda body: body == {"status": "ok"}),
    ],
)
def test_voices_function_routes(
    voices_function: ModuleType, capsys: pytest.CaptureFixture[str], event_name: str, check: Any
) -> None:
    event, response = invoke(voices_function, event_name)
    assert response["statusCode"] == 200
    assert check(json.loads(response["body"]))
    line = invocation_line(json_lines(capsys.readouterr().out))
    assert line["service"] == "voices"
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    # HTTP API v2 events name their route; REST v1 events give the method and resource template.
    assert line["route"] == event.get("routeKey", f"{event.get('httpMethod')} {event.get('resource')}")


def test_voices_function_does_not_serve_tts(voices_function: ModuleType) -> None:
    _, response = invoke(voices_function, "http_v2_post_tts.json")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"
