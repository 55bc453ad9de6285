"""API keys: 401 JSON without a valid key, either header accepted, health open, keys never logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, WebSocket
from starlette.testclient import WebSocketDenialResponse

from tests.ops.conftest import AppFactory, LogCapture
from tts_service.middleware.auth import load_api_keys

SECRET = "sk-ops-test-9f8e7d6c5b4a"


def test_no_key_is_401_json(make_client: AppFactory) -> None:
    client, metrics = make_client(api_keys=f"{SECRET},other-key")
    response = client.get("/voices")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert metrics.value("http_requests_rejected_total", reason="unauthorized") == 1


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {SECRET}"}, {"X-API-Key": SECRET}, {"authorization": f"bearer {SECRET}"}],
    ids=["bearer", "x-api-key", "lowercase"],
)
def test_either_header_is_accepted(make_client: AppFactory, headers: dict[str, str]) -> None:
    client, _ = make_client(api_keys=f"{SECRET},other-key")
    assert client.get("/voices", headers=headers).status_code == 200
    assert client.get("/api/voices", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer wrong"}, {"X-API-Key": SECRET[:-1]}, {"Authorization": SECRET}, {"X-API-Key": ""}],
    ids=["wrong", "prefix", "no-scheme", "empty"],
)
def test_wrong_keys_are_401(make_client: AppFactory, headers: dict[str, str]) -> None:
    client, _ = make_client(api_keys=SECRET)
    response = client.get("/voices", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_health_needs_no_key_but_metrics_does(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET)
    for path in ("/health", "/api/health", "/healthz"):
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": SECRET}).status_code == 200


def test_post_without_key_is_401_before_validation(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET)
    assert client.post("/tts", json={"text": "hello"}).status_code == 401
    assert client.post("/tts", content=b"not json").status_code == 401


def test_no_keys_configured_means_open(make_client: AppFactory) -> None:
    client, _ = make_client()
    assert client.get("/voices").status_code == 200


def test_keys_from_a_file(tmp_path: Path, make_client: AppFactory) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# rotated 2026-11\n{SECRET}\n\nsecond-key  # ops team\n")
    assert load_api_keys(str(key_file)) == [SECRET, "second-key"]
    client, _ = make_client(api_keys=str(key_file))
    assert client.get("/voices", headers={"X-API-Key": "second-key"}).status_code == 200
    assert client.get("/voices", headers={"X-API-Key": str(key_file)}).status_code == 401


def test_missing_key_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_api_keys(str(tmp_path / "nope.txt"))


def test_keys_never_reach_the_logs(make_client: AppFactory, logs: LogCapture) -> None:
    client, _ = make_client(api_keys=SECRET)
    client.get("/voices", headers={"X-API-Key": SECRET})
    client.get("/voices", headers={"Authorization": f"Bearer {SECRET}x"})
    client.get("/voices", headers={"X-API-Key": f"{SECRET}-guess"})
    assert any(r.get("message") == "request" for r in logs.records)
    assert SECRET not in logs.text


def test_websocket_without_key_is_refused(make_client: AppFactory) -> None:
    router = APIRouter()

    @router.websocket("/ws/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    client, _ = make_client(api_keys=SECRET, routers=(router,))
    # The handshake is answered with the same 401 JSON as HTTP (servers without the denial-response extension
    # close with 1008 instead).
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/echo"):
        pass
    assert refused.value.status_code == 401
    assert refused.value.json()["error"]["code"] == "unauthorized"
    with client.websocket_connect("/ws/echo", headers={"X-API-Key": SECRET}) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    with client.websocket_connect(f"/ws/echo?api_key={SECRET}") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
