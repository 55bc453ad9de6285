"""Spoken replies: POST /chat with speak, POST /voice-chat, and WS /ws/chat (tokens, audio, done, cancel)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from starlette.testclient import WebSocketTestSession

from tests.fakes.llm_server import FakeLlmServer
from tests.support.audio import Wav, assert_speech, parse_wav
from tests.support.chat import AppFactory
from tests.support.streams import frames_until
from tts_service.errors import BinaryMessage, MessageNotJSON, UnknownMessageType

REPLY = "The weather is sunny today. It should stay warm until the evening. Take a hat if you go out."


def test_chat_speak_returns_a_wav_of_the_reply(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    fake_llm.script("**Hello!** See [the forecast](https://example.com/weather) for details.")
    response = client.post("/chat", json={"message": "Weather?", "speak": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"].startswith("**Hello!**")
    assert body["cleaned_text"] == "Hello! See the forecast for details."
    wav = parse_wav(base64.b64decode(body["audio_base64"]))
    assert_speech(wav, body["cleaned_text"])
    assert body["sample_rate"] == wav.sample_rate == 22050
    assert abs(body["duration_ms"] - 1000 * wav.seconds) < 5
    assert body["voice"]


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_voice_chat_always_speaks(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client(provider)
    fake_llm.script(REPLY)
    response = client.post("/voice-chat", json={"message": "Weather?", "language": "en_US"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == REPLY
    assert_speech(parse_wav(base64.b64decode(body["audio_base64"])), REPLY)
    assert client.post("/api/voice-chat", json={"message": "Again?"}).status_code == 200  # upstream prefix


def test_unknown_voice_is_refused_before_the_llm_runs(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    response = client.post("/voice-chat", json={"message": "Hi", "voice": "no-such-voice"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "voice_not_found"
    assert fake_llm.chat_requests() == []


# --- WebSocket ---


def read_turn(ws: WebSocketTestSession, limit: int = 2000) -> list[Any]:
    """Frames of one turn until done or error: dicts for JSON events, bytes for binary audio."""
    return frames_until(ws, lambda event: event["type"] in ("done", "error"), limit)


def kinds(frames: list[Any]) -> list[str]:
    return ["audio" if isinstance(f, bytes) else f["type"] for f in frames]


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_ws_chat_streams_tokens_audio_and_done(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN an LLM writing three sentences at a steady pace
    client, _ = make_client(provider)
    with client.websocket_connect("/ws/chat") as ws:
        # (a first short turn loads the streaming decoder, so the timing below is a warm one)
        fake_llm.script("Warming up. Done.")
        ws.send_json({"type": "chat", "message": "Warm up."})
        read_turn(ws)
        fake_llm.script(REPLY)
        fake_llm.token_delay = 0.06
        # WHEN a message is sent
        ws.send_json({"type": "chat", "message": "Weather?", "conversation_id": f"ws-{provider}"})
        frames = read_turn(ws)
    order = kinds(frames)
    # THEN start, then tokens and audio interleaved, then end, then done
    assert order[0] == "start"
    assert order[-2:] == ["end", "done"]
    start, end, done = frames[0], frames[-2], frames[-1]
    assert start["sample_rate"] == 22050
    assert start["sample_width"] == 2
    assert start["channels"] == 1
    assert start["conversation_id"] == f"ws-{provider}"
    assert start["memory"] == "ok"
    tokens = [f["token"] for f in frames if isinstance(f, dict) and f["type"] == "token"]
    assert "".join(tokens) == REPLY == done["reply"]
    assert done["conversation_id"] == f"ws-{provider}"
    assert done["cancelled"] is False
    assert done["stored"] is True
    # AND the first sentence is heard while the LLM is still writing the later ones
    assert order.index("audio") < len(order) - 1 - order[::-1].index("token")
    # AND the audio is the whole reply, spoken
    pcm = b"".join(f for f in frames if isinstance(f, bytes))
    wav = Wav(22050, 1, 2, np.frombuffer(pcm, dtype="<i2"))
    assert_speech(wav, REPLY)
    assert end["chunks"] == order.count("audio")
    assert end["cancelled"] is False
    assert abs(end["duration_ms"] - 1000 * wav.seconds) < 5
    # AND the turn was stored once, whole
    stored = client.get(f"/conversations/ws-{provider}").json()
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "Weather?"), ("assistant", REPLY)]


def test_ws_chat_base64_audio_events_are_numbered(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    fake_llm.script(REPLY)
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Weather?", "encoding": "base64"})
        frames = read_turn(ws)
    audio = [f for f in frames if isinstance(f, dict) and f["type"] == "audio"]
    assert [a["seq"] for a in audio] == list(range(len(audio)))
    assert len(audio) >= 3
    assert audio[0]["text"] == "The weather is sunny today."
    pcm = b"".join(base64.b64decode(a["audio"]) for a in audio)
    assert_speech(Wav(22050, 1, 2, np.frombuffer(pcm, dtype="<i2")), REPLY)
    assert frames[0]["encoding"] == "base64"


def test_ws_chat_without_speech_sends_tokens_only(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    fake_llm.script("Just text.")
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Hi", "speak": False})
        frames = read_turn(ws)
    assert kinds(frames) == ["start", "token", "token", "done"]
    assert frames[-1]["reply"] == "Just text."


def test_ws_cancel_stops_llm_and_speech(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a long reply written slowly
    client, _ = make_client(llm_timeout_secs=20)
    long_reply = " ".join(f"This is sentence number {i} of a long answer." for i in range(40))
    fake_llm.script(long_reply)
    fake_llm.token_delay = 0.03
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Talk a lot.", "conversation_id": "cancel-me"})
        # WHEN the client barges in after the first audio
        frames: list[Any] = []
        while True:
            message = ws.receive()
            if message.get("bytes") is not None:
                frames.append(message["bytes"])
                break
            frames.append(json.loads(message["text"]))
        ws.send_json({"type": "cancel"})
        frames += read_turn(ws)
        # THEN the turn ends with end{cancelled} and done{cancelled} holding only what was written
        end, done = frames[-2], frames[-1]
        assert end["type"] == "end"
        assert end["cancelled"] is True
        assert done["type"] == "done"
        assert done["cancelled"] is True
        assert done["stored"] is False
        assert long_reply.startswith(done["reply"])
        assert len(done["reply"]) < len(long_reply) // 2
        # AND nothing was stored for the cancelled turn
        assert client.get("/conversations/cancel-me").status_code == 404
        # AND the connection takes the next turn
        fake_llm.token_delay = 0.0
        fake_llm.script("Okay.")
        ws.send_json({"type": "chat", "message": "Short please.", "speak": False})
        assert read_turn(ws)[-1]["reply"] == "Okay."


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", MessageNotJSON.code),
        ('{"type": "dance"}', UnknownMessageType.code),
        ('{"type": "chat"}', "validation_error"),
        ('{"type": "chat", "message": "  "}', "validation_error"),
        ('{"type": "chat", "message": "hi", "voice": "nope"}', "voice_not_found"),
        (b"\x00\x01", BinaryMessage.code),
    ],
)
def test_ws_bad_messages_get_error_events(
    frame: str | bytes, code: str, make_client: AppFactory, fake_llm: FakeLlmServer
) -> None:
    client, _ = make_client()
    with client.websocket_connect("/ws/chat") as ws:
        if isinstance(frame, bytes):
            ws.send_bytes(frame)
        else:
            ws.send_text(frame)
        error = ws.receive_json()
        assert error["type"] == "error"
        assert error["code"] == code, error
        fake_llm.script("Still fine.")
        ws.send_json({"type": "chat", "message": "Hi", "speak": False})
        assert read_turn(ws)[-1]["reply"] == "Still fine."


def test_ws_llm_not_configured(make_client: AppFactory) -> None:
    client, _ = make_client(openai_api_key=None)
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "chat", "message": "Hi"})
        error = ws.receive_json()
    assert error == {**error, "type": "error", "code": "llm_not_configured"}


def test_ws_chat_message_in_the_url_is_not_used(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN an upstream-style client that puts the message in the URL, where proxies and logs keep it
    client, _ = make_client()
    fake_llm.script("Hello from the frame.")
    with client.websocket_connect("/ws/chat?message=Hi%20there&conversation_id=q-1&speak=false") as ws:
        # THEN it is told to send a frame, and the LLM never sees the URL's text
        error = ws.receive_json()
        assert error == {**error, "type": "error", "code": "protocol_error"}
        assert "frame" in error["message"]
        assert "Hi there" not in error["message"]
        assert fake_llm.chat_requests() == []
        # AND the connection takes the message as a frame
        ws.send_json({"type": "chat", "message": "Hi there", "conversation_id": "q-1", "speak": False})
        frames = read_turn(ws)
    assert frames[-1]["reply"] == "Hello from the frame."
    assert frames[-1]["conversation_id"] == "q-1"
    assert fake_llm.chat_requests()[-1]["messages"][-1] == {"role": "user", "content": "Hi there"}


def test_ws_message_type_alias(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    fake_llm.script("Alias works.")
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_json({"type": "message", "message": "Hi", "speak": False})
        assert read_turn(ws)[-1]["reply"] == "Alias works."
