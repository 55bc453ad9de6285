"""Chat answers name their conversation by absolute URL, from PUBLIC_BASE_URL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import SettingsFactory
from tts_service.api import chat
from tts_service.app import create_app
from tts_service.chat import ChatService, get_chat_service
from tts_service.config import Settings


def test_conversation_url_is_under_the_public_base_url(
    make_settings: SettingsFactory, fake_llm: FakeLlmServer, services: list[ChatService]
) -> None:
    service = ChatService(make_settings())
    services.append(service)
    app = create_app(
        chat.router, settings=Settings(public_base_url="https://tts.example.com", rate_limit_enabled=False)
    )
    app.dependency_overrides[get_chat_service] = lambda: service
    fake_llm.script("Hello there.")
    with TestClient(app) as client:
        answer = client.post("/chat", json={"message": "Hi", "conversation_id": "c-42"})
        assert answer.status_code == 200, answer.text
        url = answer.json()["conversation_url"]
        assert url == "https://tts.example.com/conversations/c-42"
        assert answer.headers["content-location"] == url
        # AND the URL names the resource: its path is the route that reads the conversation
        assert client.get(url.removeprefix("https://tts.example.com")).json()["conversation_id"] == "c-42"
