"""Powertools at every Lambda entry (`tts_service.aws.handler`): what CloudWatch would see of the core's logs, of
a failing handler, and the route each event is counted under. The functions built on it: test_functions.py."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from fastapi import APIRouter

from tests.support.lambda_events import FakeLambdaContext as LambdaContext
from tests.support.lambda_events import emf, json_lines, load_event, logs, metric, metric_names
from tts_service.app import create_app
from tts_service.aws.handler import instrument, make_handler, route_key


def test_core_stdlib_logs_become_json_with_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a route that logs through a plain stdlib logger, as the core does
    router = APIRouter()

    @router.get("/voices")
    async def noisy() -> dict[str, str]:
        logging.getLogger("tts_service.engine.synth").warning("voice slow to load", extra={"voice": "x"})
        return {"ok": "yes"}

    handler = make_handler(create_app(router), service="voices")
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
    make_handler(create_app(APIRouter()), service="voices")
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
    assert len(lines) == 1
    assert lines[0]["correlation_id"] == event["requestContext"]["requestId"]


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
    assert metric(blob, "ServerError") == 1
    assert blob["route"] == "$default"


@pytest.mark.parametrize(
    ("event_name", "route"),
    [("http_post_chat.json", "POST /chat"), ("ws_connect.json", "$connect"), ("ws_disconnect.json", "$disconnect")],
)
def test_route_key_is_the_template_never_the_raw_path(event_name: str, route: str) -> None:
    assert route_key(load_event(event_name)) == route


def test_route_key_of_a_rest_v1_event() -> None:
    assert route_key({"httpMethod": "GET", "resource": "/voices", "path": "/voices"}) == "GET /voices"
    assert route_key({}) == "unknown"
