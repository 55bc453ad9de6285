"""The API Gateway WebSocket handler under test: real event payloads, a moto DynamoDB table for the connection
state, and `post_to_connection` answered by the fake management API (`tests.support.aws.Capture`).

Every invocation gets a fresh handler instance, so anything that works across invocations works through DynamoDB,
as it must when each message may land on another Lambda instance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLlmServer
from tests.support.aws import TABLE, Capture, Invoke, connection_table
from tts_service.aws import loop
from tts_service.aws.websocket import ConnectionStore, WebSocketHandler
from tts_service.chat import ChatService
from tts_service.config import Settings
from tts_service.engine import Engine


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with connection_table(monkeypatch, TABLE, "us-east-1") as created:
        yield created


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def invoke(engine: Engine, table: Any, capture: Capture) -> Invoke:
    """Run one event on a fresh handler instance (as another Lambda instance would) with the given chat service."""

    def run(event: dict[str, Any], service: ChatService | None = None) -> dict[str, Any]:
        handler = WebSocketHandler(engine, ConnectionStore(table, 3600), capture.client, chat_service=service)
        response: dict[str, Any] = handler(copy.deepcopy(event), None)
        return response

    return run


@pytest.fixture
def make_service(fake_llm: FakeLlmServer, tmp_path: Path) -> Iterator[Callable[..., ChatService]]:
    """A chat service on the fake OpenAI server (embedded memory under tmp_path); overrides change settings."""
    made: list[ChatService] = []

    def build(**overrides: Any) -> ChatService:
        fields: dict[str, Any] = {
            "llm_provider": "openai",
            "llm_model": "fake-model",
            "openai_api_key": "sk-test",
            "openai_base_url": fake_llm.openai_url,
            "llm_timeout_secs": 5.0,
            "llm_max_retries": 0,
            "data_dir": tmp_path / "data",
            "aws_lambda_function_name": None,
            "qdrant_url": None,
            **overrides,
        }
        service = ChatService(Settings(**fields))
        made.append(service)
        return service

    yield build
    for service in made:
        service.memory.close()
        # The handler keeps the LLM's pooled connections open on its process loop between invocations (keep-alive,
        # as a Lambda instance should); a test ends its service, so it closes them there.
        for client in list(service.llm._clients._items.values()):  # type: ignore[attr-defined]
            loop.run(client.close())
