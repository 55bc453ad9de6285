"""OpenTelemetry: off unless OTEL_* says so; then spans reach a loopback OTLP/HTTP receiver, with route templates,
statuses, child spans for synthesis and encoding, the caller's trace continued, and trace ids in the JSON logs."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tests.support.logs import LogCapture
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tts_service.api import health, stream, tts
from tts_service.app import create_app
from tts_service.engine import Engine
from tts_service.observability import tracing

SERVER, ERROR = 2, 2  # OTLP's SPAN_KIND_SERVER and STATUS_CODE_ERROR
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "tts"}, False),  # naming the service alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask_for_it(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_without_configuration_nothing_is_traced_and_spans_are_no_ops() -> None:
    tracing.shutdown()
    assert tracing.configure({}) is False
    assert not tracing.enabled()
    with tracing.span("tts.synthesize", {"tts.voice": "x"}) as span:
        assert span is None
    assert tracing.current_ids() is None


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def test_a_tts_request_is_a_server_span_with_synthesis_and_encoding_children(
    engine: Engine, otlp: OtlpReceiver, logs: LogCapture
) -> None:
    # GIVEN an app built as the shim and the Lambdas build theirs, tracing configured by OTEL_* only
    text = "Tracing is on, secret words stay out."
    with TestClient(create_app(health.router, tts.router)) as client:
        # WHEN a caller that is itself traced asks for speech
        response = client.post(
            "/tts?format=wav",
            json={"text": text},
            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "x-request-id": "trace-me-1"},
        )
        assert response.status_code == 200
        tracing.flush()

    # THEN the collector gets the request's span, named by route template, continuing the caller's trace
    wanted = {"POST /tts", "tts.synthesize", "tts.phonemize", "tts.encode"}
    spans = by_name(otlp.wait_for(lambda got: wanted <= {s.name for s in got}))
    server = spans["POST /tts"]
    assert server.kind == SERVER
    assert server.trace_id == CALLER_TRACE
    assert server.parent_span_id == CALLER_SPAN
    assert server.attributes["http.route"] == "/tts"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["tts.request_id"] == "trace-me-1"
    assert server.resource["service.name"] == "tts-test"
    # AND synthesis and encoding are its children, with what they did but not what was said
    synth, encode = spans["tts.synthesize"], spans["tts.encode"]
    assert synth.parent_span_id == server.span_id
    assert encode.parent_span_id == server.span_id
    assert synth.attributes["tts.voice"] == "en_US-joe-medium"
    assert synth.attributes["tts.text_chars"] == len(text)
    assert synth.attributes["tts.audio_ms"] > 1000
    assert encode.attributes["tts.format"] == "wav"
    assert encode.attributes["tts.bytes"] == len(response.content)
    # phonemizing runs on the request's conductor thread, and still nests under synthesis
    phonemize = spans["tts.phonemize"]
    assert phonemize.trace_id == CALLER_TRACE
    assert phonemize.parent_span_id == synth.span_id
    assert phonemize.attributes["tts.chars"] > 0
    assert "secret words" not in json.dumps([s.attributes for s in otlp.spans])
    # AND the JSON log lines written meanwhile carry the trace id, the access line included
    access = [r for r in logs.records if r.get("logger") == "tts_service.access" and r.get("route") == "/tts"]
    assert access
    assert access[-1]["trace_id"] == CALLER_TRACE
    assert access[-1]["span_id"] == server.span_id


def test_a_server_error_marks_the_span_failed_and_health_is_traced_too(otlp: OtlpReceiver) -> None:
    broken = APIRouter()

    @broken.get("/broken")
    async def fail() -> None:
        raise RuntimeError("boom with user text")

    with TestClient(create_app(health.router, broken)) as client:
        assert client.get("/broken").status_code == 500
        assert client.get("/health").status_code == 200
        tracing.flush()
    spans = by_name(otlp.wait_for(lambda got: {"GET /broken", "GET /health"} <= {s.name for s in got}))
    assert spans["GET /broken"].status_code == ERROR
    assert spans["GET /broken"].attributes["http.response.status_code"] == 500
    assert spans["GET /health"].status_code != ERROR
    assert "boom" not in json.dumps([s.attributes for s in otlp.spans])
    # AND each request is its own trace when the caller sends none
    assert spans["GET /broken"].trace_id != spans["GET /health"].trace_id
    assert spans["GET /health"].parent_span_id == ""


def test_a_stream_span_covers_the_whole_stream_with_its_first_audio(engine: Engine, otlp: OtlpReceiver) -> None:
    with TestClient(create_app(stream.router)) as client:
        response = client.post("/tts/stream", json={"text": "One sentence. And another one.", "format": "pcm"})
        assert response.status_code == 200
        assert len(response.content) > 10_000
        tracing.flush()
    spans = by_name(otlp.wait_for(lambda got: {"POST /tts/stream", "tts.stream"} <= {s.name for s in got}))
    streamed = spans["tts.stream"]
    assert streamed.parent_span_id == spans["POST /tts/stream"].span_id
    assert streamed.events == ["first_audio"]
    assert streamed.attributes["tts.format"] == "pcm"
    assert streamed.attributes["tts.audio_ms"] > 1000
