"""The chat Lambda entry (`functions/chat/app.py`) with a real API Gateway HTTP API event."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.fakes.llm_server import FakeLlmServer
from tests.infra.helpers import LambdaContext, load_event, load_function
from tests.support.audio import assert_speech, parse_wav
from tests.support.chat import SettingsFactory
from tts_service.chat import ChatService, get_chat_service


def test_lambda_chat_answers_and_reports_memory_unavailable_without_qdrant_url(
    make_settings: SettingsFactory, fake_llm: FakeLlmServer, services: list[ChatService], data_dir: Path
) -> None:
    # GIVEN the chat function as Lambda imports it, on an instance with no QDRANT_URL
    module = load_function("chat")
    service = ChatService(make_settings(aws_lambda_function_name="tts-service-chat"))
    services.append(service)
    module.app.dependency_overrides[get_chat_service] = lambda: service
    fake_llm.script("Hello from the fake model.")
    # WHEN API Gateway invokes it with POST /chat
    response = module.handler(load_event("http_post_chat.json"), LambdaContext(function_name="tts-service-chat"))
    # THEN the reply comes back, memory is reported unavailable, and no per-instance store was made
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["reply"] == "Hello from the fake model."
    assert body["memory"] == "unavailable"
    assert fake_llm.chat_requests()[-1]["messages"][-1] == {"role": "user", "content": "Hello there."}
    assert not data_dir.exists()


def test_lambda_voice_chat_returns_speech(
    make_settings: SettingsFactory, fake_llm: FakeLlmServer, services: list[ChatService]
) -> None:
    module = load_function("chat")
    service = ChatService(make_settings())
    services.append(service)
    module.app.dependency_overrides[get_chat_service] = lambda: service
    fake_llm.script("It is a lovely day for a walk.")
    event = load_event("http_post_chat.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/voice-chat"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /voice-chat"
    response = module.handler(event, LambdaContext(function_name="tts-service-chat"))
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert_speech(parse_wav(base64.b64decode(body["audio_base64"])), "It is a lovely day for a walk.")
