"""Chat fixtures: the fake LLM server on loopback, settings pointing at it, and an app built from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import AppFactory, SettingsFactory
from tts_service.api import chat, tickets, tts
from tts_service.app import create_app
from tts_service.chat import ChatService, get_chat_service
from tts_service.config import Settings
from tts_service.engine import Engine

FAST_TIMEOUT = 1.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_settings(fake_llm: FakeLlmServer, data_dir: Path) -> SettingsFactory:
    """Settings for a provider talking to the fake; keyword arguments override fields."""

    def build(provider: str = "openai", **overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "llm_provider": provider,
            "llm_model": "fake-model",
            "openai_api_key": "sk-test",
            "openai_base_url": fake_llm.openai_url,
            "ollama_base_url": fake_llm.url,
            "llm_timeout_secs": FAST_TIMEOUT,
            "llm_max_retries": 0,
            "data_dir": data_dir,
            "memory_timeout_secs": 10.0,
            "aws_lambda_function_name": None,
            "qdrant_url": None,
        }
        fields.update(overrides)
        return Settings(**fields)

    return build


@pytest.fixture
def services() -> Iterator[list[ChatService]]:
    """Chat services made by a test; their stores are closed (locks released) afterwards."""
    made: list[ChatService] = []
    yield made
    for service in made:
        service.memory.close()


@pytest.fixture
def make_client(engine: Engine, make_settings: SettingsFactory, services: list[ChatService]) -> Iterator[AppFactory]:
    """A TestClient on chat + tts routers whose chat service uses the given settings (`api_keys=` turns keys on)."""
    clients: list[TestClient] = []

    def build(
        provider: str = "openai", settings: Settings | None = None, api_keys: str | None = None, **overrides: Any
    ) -> tuple[TestClient, ChatService]:
        service = ChatService(settings or make_settings(provider, **overrides))
        services.append(service)
        # The app's own settings (keys, rate limits) are the process's unless keys are asked for.
        app_settings = Settings(api_keys=api_keys, rate_limit_enabled=False) if api_keys else None
        app: FastAPI = create_app(chat.router, chat.ws_router, tts.router, tickets.router, settings=app_settings)
        app.dependency_overrides[get_chat_service] = lambda: service
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client, service

    yield build
    for client in clients:
        client.__exit__(None, None, None)
