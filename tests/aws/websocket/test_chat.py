"""Spoken chat turns over the API Gateway WebSocket handler: real event payloads, captured `post_to_connection`,
moto DynamoDB, and the production LLM client talking to the fake OpenAI server on loopback.

Every invocation is a fresh handler instance, so a cancel reaches the running turn only through DynamoDB.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLlmServer
from tests.support.audio import assert_speech, parse_wav
from tests.support.aws import CONNECTION, Capture, Invoke, audio_of, message
from tests.support.lambda_events import load_event
from tts_service.aws.websocket import chat
from tts_service.chat import ChatService
from tts_service.engine.audio import wav_header
from tts_service.streaming.events import API_GATEWAY_FRAME_LIMIT

REPLY = "The harbor was quiet this morning. A few boats drifted near the pier."
LONG_REPLY = " ".join(
    [
        "The lighthouse keeper climbed the stairs every evening.",
        "He lit the lamp that guided the ships past the rocks.",
        "Storms came and went over the years.",
        "The keeper never missed a single night.",
        "Sailors told stories about him in every port.",
        "One winter the sea froze near the shore.",
        "Even then the light kept burning.",
        "People still remember his name today.",
    ]
)


def check_closed(table: Any) -> None:
    item = table.get_item(Key={"connection_id": CONNECTION})["Item"]
    assert "stream_id" not in item
    assert "speaker" not in item
    assert "cancelled" not in item


def test_chat_turn_streams_tokens_audio_and_done(
    invoke: Invoke, capture: Capture, table: Any, fake_llm: FakeLlmServer, make_service: Callable[..., ChatService]
) -> None:
    service = make_service()
    fake_llm.script(REPLY)
    invoke(load_event("ws_connect.json"))
    body = {"type": "message", "message": "How was the harbor?", "conversation_id": "harbor-1", "speed": 1.0}
    assert invoke(message(body), service) == {"statusCode": 200}

    assert {cid for cid, _ in capture.frames} == {CONNECTION}
    assert all(len(data) <= API_GATEWAY_FRAME_LIMIT for _, data in capture.frames)
    events = capture.events
    types = [e["type"] for e in events]
    start = events[0]
    assert start["type"] == "start"
    assert start["encoding"] == "base64"
    assert start["sample_rate"] == 22050
    assert start["conversation_id"] == "harbor-1"
    assert start["memory"] == "ok"
    assert start["speak"] is True
    tokens = [e["token"] for e in events if e["type"] == "token"]
    assert "".join(tokens) == REPLY
    assert len(tokens) > 5
    assert types.index("token") < types.index("audio")
    audio = [e for e in events if e["type"] == "audio"]
    assert [e["seq"] for e in audio] == list(range(len(audio)))
    assert len(audio) >= 4  # 16 KB pieces of ~4 s
    assert [e["text"] for e in audio if e["text"]] == [
        "The harbor was quiet this morning.",
        "A few boats drifted near the pier.",
    ]
    end, done = events[-2:]
    assert end["type"] == "end"
    assert end["chunks"] == len(audio)
    assert end["cancelled"] is False
    assert done == {
        "type": "done",
        "reply": REPLY,
        "conversation_id": "harbor-1",
        "memory": "ok",
        "cancelled": False,
        "stored": True,
    }
    pcm = audio_of(events)
    assert_speech(parse_wav(wav_header(22050, len(pcm)) + pcm), REPLY)
    check_closed(table)
    assert fake_llm.chat_requests()[-1]["messages"][-1]["content"] == "How was the harbor?"

    # The turn was stored: the next turn of the conversation sends it to the LLM.
    capture.frames.clear()
    fake_llm.script("Yes.")
    invoke(message({"type": "chat", "message": "Really?", "conversation_id": "harbor-1", "speak": False}), service)
    assert [e["type"] for e in capture.events] == ["start", "token", "done"]
    sent = [m["content"] for m in fake_llm.chat_requests()[-1]["messages"]]
    assert "How was the harbor?" in sent
    assert REPLY in sent


def test_cancel_on_another_invocation_stops_the_turn(
    invoke: Invoke,
    capture: Capture,
    table: Any,
    fake_llm: FakeLlmServer,
    make_service: Callable[..., ChatService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = make_service()
    fake_llm.script(LONG_REPLY)
    # The LLM writes the first sentence and the word that completes it, then waits until the cancel is stored:
    # however slow synthesis is, the reply cannot be finished before the cancel exists.
    fake_llm.hold_from_token = len(LONG_REPLY.split(".")[0].split()) + 1
    fake_llm.token_delay = 0.05
    monkeypatch.setattr(chat, "CANCEL_POLL_SECS", 0.0)  # the flag is read at the first event after the release
    invoke(load_event("ws_connect.json"))
    cancelled: list[int] = []

    def cancel_from_elsewhere(n: int, data: bytes) -> None:
        if b'"type":"audio"' in data and not cancelled:
            cancelled.append(n)
            assert invoke(message({"type": "cancel"})) == {"statusCode": 200}  # a fresh instance, no turn of its own
            fake_llm.release.set()

    capture.on_post = cancel_from_elsewhere
    invoke(message({"type": "message", "message": "Tell me a story."}), service)
    events = capture.events
    assert cancelled
    types = [e["type"] for e in events]
    assert types[-2:] == ["end", "done"]
    assert types.count("end") == 1
    assert "error" not in types
    end, done = events[-2:]
    assert end["cancelled"] is True
    assert done["cancelled"] is True
    assert done["stored"] is False
    assert LONG_REPLY.startswith(done["reply"]), (cancelled, types)
    assert len(done["reply"]) < len(LONG_REPLY), (cancelled, types)
    audio = [e for e in events if e["type"] == "audio"]
    assert [e["seq"] for e in audio] == list(range(len(audio)))
    assert end["chunks"] == len(audio)
    check_closed(table)

    # The connection is free again.
    capture.on_post = lambda n, data: None
    capture.frames.clear()
    invoke(message({"type": "speak", "text": "Back again."}))
    assert capture.events[-1]["type"] == "end"
    assert not capture.events[-1]["cancelled"]


def test_faulty_llm_gives_an_error_and_tts_still_works(
    invoke: Invoke, capture: Capture, table: Any, fake_llm: FakeLlmServer, make_service: Callable[..., ChatService]
) -> None:
    # As on Lambda without QDRANT_URL: no private per-instance memory.
    service = make_service(aws_lambda_function_name="tts-service-stream")
    fake_llm.fault = "http_500"
    invoke(load_event("ws_connect.json"))
    assert invoke(message({"type": "message", "message": "Hello?", "conversation_id": "c-1"}), service) == {
        "statusCode": 200
    }
    events = capture.events
    assert events[0]["type"] == "start"
    assert events[0]["memory"] == "unavailable"
    assert events[-1]["type"] == "error"
    assert events[-1]["code"] == "llm_unavailable"
    assert "done" not in [e["type"] for e in events]
    check_closed(table)

    capture.frames.clear()
    invoke(message({"type": "speak", "text": "Still speaking."}))
    events = capture.events
    assert events[0]["type"] == "start"
    assert events[-1] == {**events[-1], "type": "end", "cancelled": False}
    pcm = audio_of(events)
    assert_speech(parse_wav(wav_header(22050, len(pcm)) + pcm), "Still speaking.")


def test_chat_refused_while_busy_or_malformed(
    invoke: Invoke, capture: Capture, fake_llm: FakeLlmServer, make_service: Callable[..., ChatService]
) -> None:
    service = make_service()
    invoke(load_event("ws_connect.json"))
    invoke(message({"type": "message"}), service)
    invoke(message({"type": "message", "message": "Hi.", "voice": "nobody"}), service)
    invoke(message({"type": "start"}))
    invoke(message({"type": "message", "message": "Hi."}), service)
    assert [e["type"] for e in capture.events] == ["error", "error", "start", "error"]
    assert [e["code"] for e in capture.events if e["type"] == "error"] == [
        "validation_error",
        "voice_not_found",
        "unexpected_message",
    ]
    assert fake_llm.chat_requests() == []


def test_gone_client_stops_the_turn(
    invoke: Invoke, capture: Capture, table: Any, fake_llm: FakeLlmServer, make_service: Callable[..., ChatService]
) -> None:
    service = make_service()
    fake_llm.script(LONG_REPLY)
    invoke(load_event("ws_connect.json"))
    capture.fail = lambda attempt, data: "GoneException" if b'"type":"audio"' in data else None
    assert invoke(message({"type": "message", "message": "Tell me a story."}), service) == {"statusCode": 200}
    types = [e["type"] for e in capture.events]
    assert "audio" not in types
    assert "end" not in types
    assert "done" not in types
    assert capture.attempts == len(capture.frames) + 1  # the refused audio frame was not retried
    check_closed(table)
