"""PUBLIC_BASE_URL: the absolute URLs the service hands out (`GET /client-config`, chat's `conversation_url`)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests.support.lambda_events import FakeLambdaContext, load_event, load_function
from tts_service.api import client_config
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine


def config_of(settings: Settings, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with TestClient(create_app(client_config.router, settings=settings)) as client:
        response = client.get("/client-config", headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_client_config_names_the_public_base_url_not_the_inner_host() -> None:
    # GIVEN the service behind a TLS proxy on a path prefix, reached on an inner host over plain HTTP
    settings = Settings(public_base_url="https://tts.example.com/speech/")
    # WHEN a client asks where the API is
    body = config_of(settings, {"host": "tts:8085"})
    # THEN every URL is the public one, WebSockets as wss
    assert body["api_base"] == "https://tts.example.com/speech"
    assert body["websocket"] == {
        "tts": "wss://tts.example.com/speech/ws/tts",
        "chat": "wss://tts.example.com/speech/ws/chat",
    }
    assert body["auth"] == {"api_key_required": False, "ws_ticket": "https://tts.example.com/speech/ws-ticket"}
    assert "tts:8085" not in json.dumps(body)


def test_without_public_base_url_the_request_host_is_used() -> None:
    body = config_of(Settings(), {"host": "localhost:8085"})
    assert body["api_base"] == "http://localhost:8085"
    assert body["websocket"]["tts"] == "ws://localhost:8085/ws/tts"


def test_a_separate_websocket_endpoint_serves_both_protocols() -> None:
    settings = Settings(
        public_base_url="https://api.example.com", public_ws_url="wss://ws.example.com/prod", api_keys="k-1"
    )
    with TestClient(create_app(client_config.router, settings=settings)) as client:
        assert client.get("/client-config").status_code == 401  # like every endpoint but health
        body = client.get("/client-config", headers={"X-API-Key": "k-1"}).json()
    assert body["websocket"] == {"tts": "wss://ws.example.com/prod", "chat": "wss://ws.example.com/prod"}
    assert body["auth"]["api_key_required"] is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_base_url", "tts.example.com"),
        ("public_base_url", "ftp://tts.example.com"),
        ("public_base_url", "https://tts.example.com/?x=1"),
        ("public_base_url", "https:///path"),
        ("public_ws_url", "https://ws.example.com"),
    ],
)
def test_malformed_public_urls_are_refused_at_start(field: str, value: str) -> None:
    fields: dict[str, Any] = {field: value}
    with pytest.raises(ValidationError, match=field.upper()):
        Settings(**fields)


def test_on_lambda_the_gateway_host_and_scheme_are_used(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the voices function (it serves /client-config) and an HTTP API event for it
    voices = load_function("voices")
    event = copy.deepcopy(load_event("http_v2_get_voices.json"))
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /client-config"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/client-config"
    # WHEN it is invoked
    response = voices.handler(event, FakeLambdaContext())
    # THEN the URLs are API Gateway's https ones
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["api_base"] == "https://abc123.execute-api.us-east-1.amazonaws.com"
