"""On Lambda OTel works the same way when configured: the app's spans, exported before the invocation returns."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from tests.support.aws import connection_table
from tests.support.lambda_events import FakeLambdaContext, load_event, load_function
from tests.support.otlp import OtlpReceiver
from tts_service.config import get_settings
from tts_service.engine import Engine

TABLE = "tts-service-StreamTable-tracing"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with connection_table(monkeypatch, TABLE, "eu-west-1", STREAM_TABLE_NAME=TABLE):
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


def test_a_lambda_invocation_exports_its_spans_before_returning(engine: Engine, otlp: OtlpReceiver) -> None:
    # GIVEN the voices function, traced through OTEL_* variables only (X-Ray stays as the template sets it)
    voices = load_function("voices")
    event = copy.deepcopy(load_event("http_v2_get_voices.json"))
    # WHEN it is invoked, and nothing flushes afterwards
    response = voices.handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    # THEN the request's span has already gone out (a frozen instance would never send it later)
    spans = otlp.wait_for(lambda got: any(s.name == "GET /voices" for s in got), timeout=2.0)
    span = next(s for s in spans if s.name == "GET /voices")
    assert span.attributes["http.route"] == "/voices"
    assert span.attributes["http.response.status_code"] == 200


def test_the_websocket_function_traces_each_invocation(engine: Engine, aws: None, otlp: OtlpReceiver) -> None:
    stream = load_function("stream")
    event = copy.deepcopy(load_event("ws_disconnect.json"))
    stream.handler(event, FakeLambdaContext())
    spans = otlp.wait_for(lambda got: any(s.name == "$disconnect" for s in got), timeout=2.0)
    assert next(s for s in spans if s.name == "$disconnect").attributes["tts.route"] == "$disconnect"
