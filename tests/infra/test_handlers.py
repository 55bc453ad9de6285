"""Every HTTP function entry behind Powertools, invoked with real API Gateway HTTP API v2 payloads.

Checks what CloudWatch would see: one JSON object per stdout line, the API Gateway request id as
`correlation_id` on the function's and the core's log lines, and EMF metrics (cold start, latency, synthesis).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
import wave
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider import cold_start
from fastapi import APIRouter

from tests.infra.helpers import LambdaContext, emf, json_lines, load_event, load_function, logs, metric, metric_names
from tts_service.app import create_app
from tts_service.aws.handler import instrument, lambda_handler, route_key
from tts_service.engine import Engine


@pytest.fixture(scope="module")
def tts_function(engine: Engine) -> ModuleType:
    return load_function("tts")


@pytest.fixture(scope="module")
def voices_function(engine: Engine) -> ModuleType:
    return load_function("voices")


def invoke(module: ModuleType, event_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    event = load_event(event_name)
    response: dict[str, Any] = module.handler(event, LambdaContext())
    return event, response


def invocation_line(entries: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [e for e in logs(entries) if e.get("message") == "invocation"]
    return line


def test_tts_speaks_and_logs_with_the_correlation_id(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a fresh instance (cold start) WHEN API Gateway delivers POST /tts
    cold_start.reset_cold_start_flag()
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
    assert len(cold) == 1 and metric(cold[0], "ColdStart") == 1
    main = next(b for b in blobs if "Latency" in metric_names(b))
    assert {"Latency", "ServerError", "AudioDuration", "SynthesisRealTimeFactor"} <= metric_names(main)
    assert main["route"] == "POST /tts" and main["service"] == "tts"
    assert metric(main, "ServerError") == 0
    assert metric(main, "AudioDuration") == pytest.approx(seconds, abs=0.01)
    assert 0 < metric(main, "SynthesisRealTimeFactor") < 5
    assert main["voice"] == "en_US-joe-medium"  # metadata, not a dimension
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"]


def test_tts_wav_is_base64_for_api_gateway(tts_function: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    _, response = invoke(tts_function, "http_post_tts_wav.json")
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"])[:4] == b"RIFF"
    # a warm invocation publishes no cold start
    blobs = emf(json_lines(capsys.readouterr().out))
    assert not any("ColdStart" in metric_names(b) for b in blobs)


def test_bad_input_is_a_json_4xx_not_an_error_metric(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    event, response = invoke(tts_function, "http_post_tts_invalid.json")
    assert response["statusCode"] == 422
    assert json.loads(response["body"])["error"]["code"] == "validation_error"
    entries = json_lines(capsys.readouterr().out)
    assert invocation_line(entries)["correlation_id"] == event["requestContext"]["requestId"]
    main = next(b for b in emf(entries) if "Latency" in metric_names(b))
    assert metric(main, "ServerError") == 0 and "AudioDuration" not in main


def test_healthz_on_the_tts_function_reports_the_loaded_voice(
    tts_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _, response = invoke(tts_function, "http_get_healthz.json")
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ready"
    assert invocation_line(json_lines(capsys.readouterr().out))["route"] == "GET /healthz"


@pytest.mark.parametrize(
    ("event_name", "check"),
    [
        ("http_get_voices.json", lambda body: "en_US-joe-medium" in json.dumps(body)),
        ("http_get_voices_detail.json", lambda body: any(v["id"] == "en_US-joe-medium" for v in body)),
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
    assert line["route"] == event["routeKey"]


def test_core_stdlib_logs_become_json_with_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a route that logs through a plain stdlib logger, as the core does
    router = APIRouter()

    @router.get("/voices")
    async def noisy() -> dict[str, str]:
        logging.getLogger("tts_service.engine.synth").warning("voice slow to load", extra={"voice": "x"})
        return {"ok": "yes"}

    handler = lambda_handler(create_app(router), service="voices")
    event = load_event("http_get_voices.json")
    assert handler(event, LambdaContext())["statusCode"] == 200

    # THEN that line is JSON, with the invocation's correlation id and its extra fields
    entries = logs(json_lines(capsys.readouterr().out))
    (core,) = [e for e in entries if e.get("message") == "voice slow to load"]
    assert core["correlation_id"] == event["requestContext"]["requestId"]
    assert (core["level"], core["voice"]) == ("WARNING", "x")


def test_core_logs_survive_a_service_name_inside_a_logger_name(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the root handler installed, then a function whose service name is part of core logger names (as
    # "tts" is of "tts_service.*", "chat" of "tts_service.chat.*"): Powertools tries to filter those out
    lambda_handler(create_app(APIRouter()), service="voices")
    service = f"svc{uuid.uuid4().hex[:8]}"
    core_logger = logging.getLogger(f"tts_service.{service}.worker")

    def fn(event: dict[str, Any], context: Any) -> dict[str, Any]:
        core_logger.warning("still here")
        return {"statusCode": 200}

    handler = instrument(fn, service=service)
    event = load_event("http_get_health.json")
    handler(event, LambdaContext())

    # THEN the core's line is printed, once, with the correlation id
    entries = logs(json_lines(capsys.readouterr().out))
    lines = [e for e in entries if e.get("message") == "still here"]
    assert len(lines) == 1 and lines[0]["correlation_id"] == event["requestContext"]["requestId"]


def test_a_failing_plain_handler_is_logged_and_counted_then_raises(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("secret user text")

    handler = instrument(broken, service="stream")
    event = load_event("ws_message_speak.json")
    with pytest.raises(RuntimeError):
        handler(event, LambdaContext())
    entries = json_lines(capsys.readouterr().out)
    (failure,) = [e for e in logs(entries) if e.get("message") == "invocation failed"]
    assert failure["error_type"] == "RuntimeError"
    assert failure["correlation_id"] == event["requestContext"]["requestId"]
    assert failure["connection_id"] == event["requestContext"]["connectionId"]
    assert "secret user text" not in json.dumps(entries)
    (blob,) = [b for b in emf(entries) if "ServerError" in metric_names(b)]
    assert metric(blob, "ServerError") == 1 and blob["route"] == "$default"


@pytest.mark.parametrize(
    ("event_name", "route"),
    [("http_post_chat.json", "POST /chat"), ("ws_connect.json", "$connect"), ("ws_disconnect.json", "$disconnect")],
)
def test_route_key_is_the_template_never_the_raw_path(event_name: str, route: str) -> None:
    assert route_key(load_event(event_name)) == route


def test_route_key_of_a_rest_v1_event() -> None:
    assert route_key({"httpMethod": "GET", "resource": "/voices", "path": "/voices"}) == "GET /voices"
    assert route_key({}) == "unknown"
