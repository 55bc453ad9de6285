"""Provider faults over real sockets: each maps to its status and code, and TTS keeps working."""

from __future__ import annotations

import base64
import socket

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests.fakes.llm_server import FakeLlmServer
from tests.support.audio import assert_speech, parse_wav
from tests.support.chat import AppFactory
from tts_service.config import Settings
from tts_service.observability.metrics import get_metrics

PROVIDERS = ("openai", "ollama")
FAULT_STATUS = {
    "http_500": (502, "llm_unavailable"),
    "drop": (502, "llm_unavailable"),
    "malformed": (502, "llm_bad_response"),
    "hang": (504, "llm_timeout"),
}


def assert_tts_works(client: TestClient) -> None:
    text = "Speech still works while the model is down."
    response = client.post("/tts", json={"text": text})
    assert response.status_code == 200, response.text
    assert_speech(parse_wav(base64.b64decode(response.json()["audio_base64"])), text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reply_ok(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a provider that answers
    client, _ = make_client(provider)
    fake_llm.script("The sky is blue because of Rayleigh scattering.")
    # WHEN a message is sent
    response = client.post("/chat", json={"message": "Why is the sky blue?"})
    # THEN the reply is the provider's, with a new conversation id and working memory
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "The sky is blue because of Rayleigh scattering."
    assert body["memory"] == "ok"
    assert len(body["conversation_id"]) == 36
    assert "audio_base64" not in body
    sent = fake_llm.chat_requests()[-1]
    assert sent["model"] == "fake-model"
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}


@pytest.mark.parametrize("fault", list(FAULT_STATUS))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_fault_maps_to_error(provider: str, fault: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a provider that fails in this way
    client, _ = make_client(provider)
    fake_llm.fault = fault
    # WHEN a message is sent
    response = client.post("/chat", json={"message": "Hello?"})
    # THEN the error has the right status and code, in the service's error shape
    status, code = FAULT_STATUS[fault]
    outcome = "timeout" if fault == "hang" else "error"
    assert get_metrics().value("tts_llm_requests_total", provider=provider, outcome=outcome) >= 1
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    # AND speech synthesis is unaffected
    assert_tts_works(client)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_fault_maps_to_error_event(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a provider that drops the connection after two tokens
    client, _ = make_client(provider)
    fake_llm.fault = "drop"
    fake_llm.script("One two three four five six seven.")
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Count.", "speak": False})
        events = []
        while True:
            event = ws.receive_json()
            events.append(event)
            if event["type"] in ("done", "error"):
                break
        # THEN the turn ends with an llm_unavailable error event after the tokens that did arrive
        assert events[0]["type"] == "start"
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "llm_unavailable"
        # AND the connection still serves the next turn
        fake_llm.fault = None
        fake_llm.script("Fine now.")
        ws.send_json({"type": "chat", "message": "Again.", "speak": False})
        while (event := ws.receive_json())["type"] != "done":
            pass
        assert event["reply"] == "Fine now."


def test_openai_without_key_is_not_configured(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client("openai", openai_api_key=None)
    response = client.post("/chat", json={"message": "Hello"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "llm_not_configured"
    assert fake_llm.chat_requests() == []
    info = client.get("/llm/provider").json()
    assert info["configured"] is False
    assert info["available"] is False
    assert info["error"] == "llm_not_configured"
    assert_tts_works(client)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_down_is_unavailable(provider: str, make_client: AppFactory) -> None:
    # GIVEN a provider URL where nothing listens
    port = free_port()
    client, _ = make_client(
        provider, openai_base_url=f"http://127.0.0.1:{port}/v1", ollama_base_url=f"http://127.0.0.1:{port}"
    )
    response = client.post("/chat", json={"message": "Hello"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_unavailable"
    info = client.get("/llm/provider").json()
    assert info["provider"] == provider
    assert info["available"] is False
    assert_tts_works(client)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_llm_provider_reports_model_and_reachability(provider: str, make_client: AppFactory) -> None:
    client, _ = make_client(provider)
    info = client.get("/llm/provider").json()
    assert info["provider"] == provider
    assert info["model"] == "fake-model"
    assert info["configured"] is True
    assert info["available"] is True
    assert info["memory"]["mode"] == "embedded"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": "   "}, 422, "validation_error"),
        ({"message": "x" * 10001}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"message": "hi", "conversation_id": "bad id with spaces"}, 422, "validation_error"),
        ({"message": "hi", "bogus": 1}, 422, "validation_error"),
    ],
)
def test_bad_requests(
    body: dict[str, object], status: int, code: str, make_client: AppFactory, fake_llm: FakeLlmServer
) -> None:
    client, _ = make_client()
    response = client.post("/chat", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert fake_llm.chat_requests() == []


def test_settings_refuse_llm_timeout_above_request_timeout() -> None:
    with pytest.raises(ValidationError, match="LLM_TIMEOUT_SECS"):
        Settings(llm_timeout_secs=90, request_timeout_secs=60)
