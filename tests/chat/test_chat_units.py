"""Smaller pieces: what each provider is sent, the speakable-text cleaner, a client leaving mid-turn, a cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import AppFactory
from tts_service.chat import ChatService
from tts_service.chat.speech import speakable
from tts_service.chat.turn import DoneEvent, TokenEvent, TurnRequest, TurnStartEvent, spoken_turn
from tts_service.config import Settings
from tts_service.credentials import SHARED_OWNER
from tts_service.engine import Engine


def test_ollama_request_body(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client("ollama", llm_temperature=0.3, llm_max_tokens=64, system_prompt="Be brief.")
    client.post("/chat", json={"message": "Hi"})
    sent = fake_llm.chat_requests()[-1]
    assert sent == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"temperature": 0.3, "num_predict": 64},
    }


def test_openai_request_body_and_key(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client("openai", llm_temperature=0.3, llm_max_tokens=64, system_prompt="Be brief.")
    client.post("/chat", json={"message": "Hi"})
    received = [r for r in fake_llm.requests if r.path == "/v1/chat/completions"][-1]
    assert received.headers["authorization"] == "Bearer sk-test"
    assert received.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert received.body["temperature"] == 0.3
    assert received.body["max_tokens"] == 64
    assert received.body.get("stream") in (None, False)


def test_provider_probe_of_a_hanging_server_is_bounded(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client("ollama")
    fake_llm.fault = "hang"
    # The probe is a GET, which the fake never hangs; a hanging chat is covered by the fault tests.
    info = client.get("/llm/provider").json()
    assert info["available"] is True


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("**Hello** there! See [docs](http://x.y/z).", "Hello there! See docs."),
        ("Use `pip` at https://pypi.org now.", "Use pip at link now."),
        ("# Title\n\n- one item\n- two items", "Title\n\none item\ntwo items"),
        ("It costs 3.5 dollars, e.g. today.", "It costs 3.5 dollars, e.g. today."),
        ("snake_case and 2*3*4 stay", "snake_case and 2*3*4 stay"),
        ("Code:\n```python\nprint(1)\n```\nDone.", "Code:\n \nDone."),
        ("Great job 🎉!", "Great job!"),
        ("Visit https://example.com/a. Then rest.", "Visit link. Then rest."),
    ],
)
def test_speakable(written: str, spoken: str) -> None:
    assert speakable(written) == spoken


def test_ws_client_leaving_mid_turn_frees_everything(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a turn in progress with a slow LLM
    client, _ = make_client(llm_timeout_secs=20)
    fake_llm.script(" ".join(f"Sentence {i} goes on." for i in range(60)))
    fake_llm.token_delay = 0.02
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Talk.", "conversation_id": "leaver"})
        while True:
            message = ws.receive()
            if message.get("bytes") is not None:
                break
    # WHEN the client has gone, THEN nothing was stored and the next client is served at once
    fake_llm.token_delay = 0.0
    fake_llm.script("Next.")
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Hi", "speak": False})
        while (event := json.loads(ws.receive_text()))["type"] != "done":
            pass
    assert event["reply"] == "Next."
    assert client.get("/conversations/leaver").status_code == 404


class _InstantLlm:
    """An LLM whose whole reply is ready at once: the turn's queue is full before the first event is read."""

    provider = "instant"
    configured = True

    def require_configured(self) -> None:
        return None

    async def stream(self, messages: list[Any]) -> AsyncIterator[str]:
        for i in range(200):
            yield f"word{i} "


def test_a_cancel_wins_over_queued_events(engine: Engine) -> None:
    # GIVEN a turn whose events are all queued before the transport reads the first (a fast LLM, slow client)
    service = ChatService(Settings(memory_enabled=False), llm=_InstantLlm())  # type: ignore[arg-type]
    req = TurnRequest(message="Talk.", owner=SHARED_OWNER, speak=False, max_audio_bytes=16384)

    async def play() -> list[Any]:
        cancel = asyncio.Event()
        seen: list[Any] = []
        async for event in spoken_turn(service, engine, req, cancel):
            seen.append(event)
            if isinstance(event, TokenEvent):
                cancel.set()  # WHEN the client cancels after the first token
        return seen

    events = asyncio.run(play())
    # THEN the turn ends there, cancelled, instead of sending the 199 tokens waiting in the queue
    assert [type(e) for e in events] == [TurnStartEvent, TokenEvent, DoneEvent]
    done = events[-1]
    assert done.cancelled is True
    assert done.reply.startswith("word0 ")
