"""X-Request-ID echo and generation, the id in every log line of the request, the access log, privacy."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from fastapi import APIRouter
from mangum import Mangum

from tests.support.apps import AppFactory
from tests.support.lambda_events import FakeLambdaContext, load_event
from tests.support.logs import LogCapture
from tts_service.api import voices
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine
from tts_service.observability.logging import request_id_var

noisy = APIRouter()
_log = logging.getLogger("tts_service.test_route")


@noisy.get("/test/logs")
async def logs_something() -> dict[str, str]:
    _log.info("inside the route")
    return {"ok": "yes"}


def test_well_formed_id_is_echoed(make_client: AppFactory) -> None:
    client, _ = make_client()
    for offered in ("abc-123", "0f8c2d3e-1111-4a4a-9b9b-123456789abc", "trace.id:42_x"):
        assert client.get("/health", headers={"X-Request-ID": offered}).headers["x-request-id"] == offered


@pytest.mark.parametrize("bad", ["", "has space", "line\\nbreak", "x" * 200, "<script>", "-leading-dash"])
def test_malformed_id_is_replaced(make_client: AppFactory, bad: str) -> None:
    client, _ = make_client()
    returned = client.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"]
    assert returned != bad
    uuid.UUID(returned)


def test_id_is_generated_and_unique(make_client: AppFactory) -> None:
    client, _ = make_client()
    ids = {client.get("/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    for value in ids:
        uuid.UUID(value)


def test_errors_carry_the_id(make_client: AppFactory) -> None:
    client, _ = make_client()
    for response in (client.get("/nope"), client.post("/tts", json={"text": ""})):
        assert response.status_code >= 400
        assert response.headers["x-request-id"]


def test_every_log_line_of_a_request_has_its_id(make_client: AppFactory, logs: LogCapture) -> None:
    client, _ = make_client(routers=(noisy,))
    client.get("/test/logs", headers={"X-Request-ID": "req-one"})
    client.get("/test/logs", headers={"X-Request-ID": "req-two"})
    route_lines = [r for r in logs.records if r["message"] == "inside the route"]
    access_lines = [r for r in logs.records if r["logger"] == "tts_service.access"]
    assert [r["request_id"] for r in route_lines] == ["req-one", "req-two"]
    assert [r["request_id"] for r in access_lines] == ["req-one", "req-two"]


def test_worker_thread_logs_carry_the_id(engine: Engine, logs: LogCapture) -> None:
    # Synthesis runs on pool threads; their log lines must name the request that asked for them.
    async def as_a_route_would() -> None:
        request_id_var.set("from-the-loop")
        await engine.pool.run(logging.getLogger("tts_service.worker_test").info, "on a worker")

    asyncio.run(as_a_route_would())
    worker = [r for r in logs.records if r["message"] == "on a worker"]
    assert [r["request_id"] for r in worker] == ["from-the-loop"]


def test_access_log_line_fields(make_client: AppFactory, logs: LogCapture) -> None:
    client, _ = make_client()
    client.get("/api/voices", headers={"X-Request-ID": "access-1"})
    client.get("/no/such/path/12345", headers={"X-Request-ID": "access-2"})
    lines = {r["request_id"]: r for r in logs.records if r["logger"] == "tts_service.access"}
    first = lines["access-1"]
    assert first["level"] == "INFO"
    assert first["message"] == "request"
    assert (first["method"], first["route"], first["status"]) == ("GET", "/api/voices", 200)
    assert first["duration_ms"] >= 0
    assert lines["access-2"]["route"] == "unmatched", "raw paths never become labels or log fields"
    assert lines["access-2"]["status"] == 404


def test_no_user_text_or_secrets_in_logs(make_client: AppFactory, logs: LogCapture) -> None:
    secret = "sk-live-4242-do-not-log"
    text = "My bank PIN is 9931 and my street is Quillfeather Lane."
    client, _ = make_client(api_keys=secret)
    ok = client.post("/tts", json={"text": text}, headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    refused = client.post("/tts", json={"text": text}, headers={"X-API-Key": secret + "-wrong"})
    assert refused.status_code == 401
    invalid = client.post("/tts", json={"text": text, "speed": 99}, headers={"X-API-Key": secret})
    assert invalid.status_code == 422
    assert any(r["logger"] == "tts_service.access" for r in logs.records)
    assert secret not in logs.text
    assert "Quillfeather" not in logs.text
    assert "9931" not in logs.text


def test_log_level_settings() -> None:
    assert Settings(log_level="debug").effective_log_level == "DEBUG"
    assert Settings(rust_log="warn,hyper=info").effective_log_level == "WARNING"
    assert Settings(rust_log="tower=debug,error").effective_log_level == "ERROR"
    assert Settings(log_level="info", rust_log="debug").effective_log_level == "INFO"


def test_on_lambda_the_gateway_request_id_is_used(engine: Engine) -> None:
    handler = Mangum(create_app(voices.router, settings=Settings(rate_limit_enabled=False)), lifespan="off")
    event = load_event("http_v2_get_voices.json")
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    event["headers"]["x-request-id"] = "client-chosen-1"
    again = handler(event, FakeLambdaContext())
    assert {k.lower(): v for k, v in again["headers"].items()}["x-request-id"] == "client-chosen-1"
