"""A WebSocket chat is charged per message, not once at the handshake."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import SettingsFactory
from tts_service.api import chat
from tts_service.app import create_app
from tts_service.chat import ChatService, get_chat_service
from tts_service.config import Settings
from tts_service.observability import Metrics


def next_error_or_done(ws: WebSocketTestSession) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = ws.receive_json()
        if event["type"] in ("error", "done"):
            return event


def test_every_chat_message_is_charged(
    make_settings: SettingsFactory, services: list[ChatService], fake_llm: FakeLlmServer
) -> None:
    # GIVEN a budget of 3 requests a minute (the handshake spends one) and an LLM
    service = ChatService(make_settings())
    services.append(service)
    app = create_app(chat.ws_router, settings=Settings(rate_limit_per_minute=3), metrics=Metrics(process=False))
    app.dependency_overrides[get_chat_service] = lambda: service
    with TestClient(app) as client, client.websocket_connect("/ws/chat") as ws:
        # WHEN the client sends two chat messages, then a third
        for _ in range(2):
            ws.send_text(json.dumps({"type": "chat", "message": "Hi.", "speak": False}))
            assert next_error_or_done(ws)["type"] == "done"
        ws.send_text(json.dumps({"type": "chat", "message": "Once more.", "speak": False}))
        # THEN the third is refused before the LLM is asked, and the connection stays usable
        refused = next_error_or_done(ws)
        assert refused["type"] == "error"
        assert refused["code"] == "rate_limited"
        ws.send_text("not json")
        assert ws.receive_json()["code"] == "invalid_json"
    assert len(fake_llm.chat_requests()) == 2
