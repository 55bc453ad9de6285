"""Chat answers that are delivered whole: bounded to what a buffered response holds, and stored only once made."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLlmServer
from tests.support.audio import parse_wav
from tests.support.chat import AppFactory, SettingsFactory
from tests.support.lambda_events import FakeLambdaContext as LambdaContext
from tests.support.lambda_events import load_function
from tts_service.api.delivery import BUFFERED_RESPONSE_LIMIT
from tts_service.chat import ChatService
from tts_service.chat.memory import StoredMessage, purge_periodically
from tts_service.engine import Engine, get_engine

# Each sentence is short to synthesize, and 5 s of silence follows it: minutes of audio for little compute.
PAUSED = "Yes. " * 40


def test_voice_chat_on_lambda_speaks_the_sentences_that_fit(
    make_client: AppFactory, fake_llm: FakeLlmServer, admissions: list[int]
) -> None:
    # GIVEN the chat routers as the chat function runs them, and an LLM that answers at length
    client, _ = make_client()
    client.app.state.buffered_responses = True  # type: ignore[attr-defined]
    fake_llm.script(PAUSED.strip())
    # WHEN the reply is spoken with 5 s between sentences (over 3 minutes in all, 11 MB of base64 WAV)
    response = client.post("/voice-chat", json={"message": "Say yes a lot.", "sentence_silence": 5.0})
    # THEN the answer fits a Lambda response: the whole sentences that fit, their text, the whole reply
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) <= BUFFERED_RESPONSE_LIMIT
    body = response.json()
    assert body["reply"] == PAUSED.strip()
    spoken = body["cleaned_text"]
    assert spoken.startswith("Yes. Yes.")
    assert spoken.endswith("Yes.")
    assert spoken.count("Yes.") < 40
    wav = parse_wav(base64.b64decode(body["audio_base64"]))
    assert wav.seconds == pytest.approx(body["duration_ms"] / 1000, abs=0.01)
    assert wav.seconds > 60
    assert admissions == [1]


def test_voice_chat_stores_no_turn_when_its_speech_fails(
    make_client: AppFactory, fake_llm: FakeLlmServer, tiny_engine: Engine
) -> None:
    # GIVEN an engine with no room left (a synthesis that will fail with 503 busy)
    client, _ = make_client()
    client.app.dependency_overrides[get_engine] = lambda: tiny_engine  # type: ignore[attr-defined]
    with tiny_engine.pool.admit():
        # WHEN the LLM answers but the speech cannot be made
        failed = client.post("/voice-chat", json={"message": "Remember this?", "conversation_id": "unheard"})
        # THEN the user hears nothing, and nothing is remembered of the turn
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "busy"
        assert len(fake_llm.chat_requests()) == 1
        assert client.get("/conversations/unheard").status_code == 404
    # AND once it can be spoken, it is delivered and stored
    spoken = client.post("/voice-chat", json={"message": "Remember this?", "conversation_id": "unheard"})
    assert spoken.status_code == 200
    assert spoken.json()["memory"] == "ok"
    stored = client.get("/conversations/unheard").json()
    assert stored["turns"] == 1
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


def test_two_replicas_writing_one_conversation_never_share_a_turn(
    make_settings: SettingsFactory, services: list[ChatService]
) -> None:
    # GIVEN two replicas' memories on one store, and writes that both get to at the same moment
    first, second = ChatService(make_settings()), ChatService(make_settings())
    services.extend([first, second])
    both_ready = threading.Barrier(2, timeout=20)
    one_at_a_time = threading.Lock()

    async def scenario() -> list[StoredMessage]:
        await first.memory.store("owner", "earlier", "Hello.", "Hi.", None)  # opens the store, makes the collection
        second.memory._client = first.memory._client  # the same store, as two pods share one Qdrant server
        client = first.memory._client
        assert client is not None
        upsert = client.upsert

        def meeting_upsert(*args: Any, **kwargs: Any) -> Any:
            both_ready.wait()  # each replica has decided its turn before either writes
            with one_at_a_time:  # the embedded client takes one writer at a time
                return upsert(*args, **kwargs)

        client.upsert = meeting_upsert  # type: ignore[method-assign]
        # WHEN each stores a turn of the same conversation
        await asyncio.gather(
            first.memory.store("owner", "shared", "From pod A.", "Reply A.", None),
            second.memory.store("owner", "shared", "From pod B.", "Reply B.", None),
        )
        client.upsert = upsert  # type: ignore[method-assign]
        second.memory._client = None  # one owner closes the shared client
        return await first.memory.history("owner", "shared")

    messages = asyncio.run(scenario())
    # THEN the two turns stay two turns, each with its own question and answer
    turns: dict[int, list[str]] = {}
    for m in messages:
        turns.setdefault(m.turn, []).append(m.text)
    assert sorted(sorted(texts) for texts in turns.values()) == [
        ["From pod A.", "Reply A."],
        ["From pod B.", "Reply B."],
    ]


def test_expired_turns_are_purged_on_a_timer_without_a_new_turn(
    make_settings: SettingsFactory, services: list[ChatService]
) -> None:
    # GIVEN a stored turn that has already expired (a retention of under a millisecond)
    service = ChatService(make_settings(memory_retention_days=1e-9))
    services.append(service)
    memory = service.memory

    async def scenario() -> tuple[int, int]:
        await memory.store("owner", "old", "Old news.", "Noted.", None)
        client = memory._client
        assert client is not None
        before = client.count(memory.collection, exact=True).count
        purged = asyncio.Event()
        purge = memory.purge

        async def observed() -> int:
            deleted = await purge()
            purged.set()
            return deleted

        memory.purge = observed  # type: ignore[method-assign]
        # WHEN the server's purge timer runs, and nothing else is written
        timer = asyncio.create_task(purge_periodically(memory, 3600))
        await asyncio.wait_for(purged.wait(), 20)
        timer.cancel()
        return before, client.count(memory.collection, exact=True).count

    before, after = asyncio.run(scenario())
    # THEN the expired messages are gone from the store
    assert (before, after) == (2, 0)


def test_the_chat_functions_schedule_purges_expired_turns(
    make_settings: SettingsFactory, services: list[ChatService]
) -> None:
    # GIVEN the chat function as Lambda loads it, with a store holding an expired turn
    module: Any = load_function("chat")  # its globals are set below, as the function's init would
    service = ChatService(make_settings(memory_retention_days=1e-9))
    services.append(service)
    asyncio.run(service.memory.store("owner", "old", "Old news.", "Noted.", None))
    module.memory = service.memory
    # WHEN EventBridge invokes it on its schedule
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "resources": ["arn:rule"]}
    answer = module.handler(event, LambdaContext(function_name="tts-service-chat"))
    # THEN the expired turn's two messages were deleted
    assert answer == {"purged": 2, "memory": "ok"}
