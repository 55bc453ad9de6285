"""WS /ws/tts and POST /tts/stream: the protocol end to end, with the in-process client and a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.audio import assert_speech, parse_wav
from tests.support.live import LiveServer
from tests.support.streams import PARAGRAPH, collect, pcm_seconds, rms
from tests.support.wait import wait_until
from tts_service.engine import Engine
from tts_service.engine.audio import wav_header
from tts_service.engine.graphs import HEAD
from tts_service.engine.pipeline import Synthesis
from tts_service.streaming import driver


def tts_seconds(client: TestClient, text: str) -> float:
    response = client.post("/tts", json={"text": text}, headers={"Accept": "audio/wav"})
    assert response.status_code == 200
    return parse_wav(response.content).seconds


async def _ws_paragraph(url: str) -> tuple[list[Any], list[bytes]]:
    events: list[Any] = []
    audio: list[bytes] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "speak", "text": PARAGRAPH}))
        async with asyncio.timeout(120):
            async for frame in ws:
                if isinstance(frame, bytes):
                    audio.append(frame)
                    events.append("audio")
                    continue
                event = json.loads(frame)
                events.append(event)
                if event["type"] in ("end", "error"):
                    break
    return events, audio


def test_websockets_client_gets_paragraph_in_order(live_server: LiveServer, stream_client: TestClient) -> None:
    events, audio = asyncio.run(_ws_paragraph(f"{live_server.ws}/ws/tts"))
    start, end = events[0], events[-1]
    assert start["type"] == "start"
    assert start["sample_rate"] == 22050
    assert start["sample_width"] == 2
    assert start["channels"] == 1
    assert start["encoding"] == "binary"
    assert start["voice"] == "en_US-joe-medium"
    assert events[1:-1] == ["audio"] * len(audio)
    assert len(audio) >= 4
    assert end == {"type": "end", "chunks": len(audio), "duration_ms": end["duration_ms"], "cancelled": False}
    pcm = b"".join(audio)
    assert end["duration_ms"] == round(1000 * pcm_seconds(pcm))
    whole = tts_seconds(stream_client, PARAGRAPH)
    assert abs(pcm_seconds(pcm) - whole) / whole < 0.10
    assert rms(pcm) > 300


def test_the_server_declines_per_message_deflate(stream_app: FastAPI) -> None:
    """Clients offer deflate by default; speech barely shrinks under it and the event loop pays for every frame."""
    server = LiveServer(stream_app, ws="auto")  # what the shim runs
    server.start()

    async def handshake() -> tuple[str | None, list[Any], bytes]:
        async with websockets.connect(f"{server.ws}/ws/tts", max_size=None, compression="deflate") as client:
            await client.send(json.dumps({"type": "speak", "text": "Plain frames, sent as they were made."}))
            audio = b""
            async with asyncio.timeout(60):
                async for frame in client:
                    if isinstance(frame, bytes):
                        audio += frame
                    elif json.loads(frame)["type"] in ("end", "error"):
                        break
            assert client.response is not None
            return client.response.headers.get("Sec-WebSocket-Extensions"), client.protocol.extensions, audio

    try:
        header, extensions, audio = asyncio.run(handshake())
    finally:
        server.stop()
    assert header is None
    assert extensions == []
    assert 1.0 < pcm_seconds(audio) < 5.0  # the whole sentence arrived
    assert rms(audio) > 300


def test_base64_events_are_numbered_and_carry_sentences(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "speak", "text": PARAGRAPH, "encoding": "base64", "spectrogram": True}))
        events, binary = collect(ws)
    assert not binary
    audio = [e for e in events if e["type"] == "audio"]
    specs = [e for e in events if e["type"] == "spectrogram"]
    assert [e["seq"] for e in audio] == list(range(len(audio)))
    assert len(audio) >= 4
    assert [e["seq"] for e in specs] == [e["seq"] for e in audio]
    assert all(len(row) == 80 for s in specs for row in s["frames"])
    sentences = [e["text"] for e in audio if e["text"]]
    assert sentences == [
        "The morning train was late again.",
        "Passengers waited on the cold platform with their coffee.",
        "When it finally arrived, everyone rushed inside.",
        "The ride into the city took almost an hour.",
    ]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in audio)
    assert events[-1]["duration_ms"] == round(1000 * pcm_seconds(pcm))


def test_incremental_text_word_by_word(stream_client: TestClient) -> None:
    text = "Dr. Lee measured 3.5 liters, e.g. a lot. It was enough... Really enough? Yes"
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "start", "encoding": "base64", "noise_w": 0.0}))
        for word in text.split(" "):
            ws.send_text(json.dumps({"type": "text", "text": word + " "}))
        ws.send_text(json.dumps({"type": "end"}))
        events, _ = collect(ws)
    spoken = [e["text"] for e in events if e["type"] == "audio" and e["text"]]
    assert spoken == ["Dr. Lee measured 3.5 liters, e.g. a lot.", "It was enough...", "Really enough?", "Yes"]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "audio")
    assert_speech(parse_wav(_wav(pcm)), text)
    assert events[-1]["type"] == "end"
    assert not events[-1]["cancelled"]


def test_flush_speaks_pending_text_and_stream_stays_open(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "start", "encoding": "base64"}))
        assert ws.receive_json()["type"] == "start"
        ws.send_text(json.dumps({"type": "text", "text": "Hello there"}))
        ws.send_text(json.dumps({"type": "flush"}))
        first = ws.receive_json()
        assert first["type"] == "audio"
        assert first["text"] == "Hello there"
        ws.send_text(json.dumps({"type": "text", "text": "General Kenobi."}))
        ws.send_text(json.dumps({"type": "end"}))
        events, _ = collect(ws)
    assert [e["text"] for e in events if e["type"] == "audio" and e["text"]] == ["General Kenobi."]
    assert events[-1]["type"] == "end"


def test_malformed_messages_get_error_events_and_connection_stays_usable(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        cases: list[tuple[str | bytes, str]] = [
            ("not json", "invalid_json"),
            ('{"type": "sing"}', "unknown_type"),
            ('{"type": "speak"}', "validation_error"),
            (b"\x00\x01", "binary_not_supported"),
            (json.dumps({"type": "speak", "text": "a" * 6000}), "text_too_long"),
            ('{"type": "text", "text": "hi"}', "unexpected_message"),
            ('{"type": "speak", "text": "Hi.", "voice": "nobody"}', "voice_not_found"),
            ('{"type": "speak", "text": "   "}', "validation_error"),
        ]
        for raw, code in cases:
            if isinstance(raw, bytes):
                ws.send_bytes(raw)
            else:
                ws.send_text(raw)
            event = ws.receive_json()
            assert event["type"] == "error", (raw, event)
            assert event["code"] == code, (raw, event)
            assert event["message"]
        ws.send_text(json.dumps({"type": "speak", "text": "Still here.", "encoding": "base64"}))
        events, _ = collect(ws)
    assert events[0]["type"] == "start"
    assert events[-1]["type"] == "end"
    assert events[-1]["chunks"] >= 1


def test_second_speak_during_a_stream_is_refused_without_breaking_it(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "speak", "text": "One. Two. Three.", "encoding": "base64"}))
        ws.send_text(json.dumps({"type": "speak", "text": "Again."}))
        events, _ = collect(ws)
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["unexpected_message"]
    assert events[-1]["type"] == "end"
    assert not events[-1]["cancelled"]


def test_cancel_after_first_audio_ends_within_one_chunk(stream_client: TestClient, engine: Engine) -> None:
    # Texts of their own: the engine's audio cache replays texts it has already made, with nothing to cancel.
    text = " ".join([PARAGRAPH.replace("train", "bus")] * 3)
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "speak", "text": text, "encoding": "base64"}))
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["type"] == "audio"
        ws.send_text(json.dumps({"type": "cancel"}))
        after: list[dict[str, Any]] = []
        while True:
            event = ws.receive_json()
            after.append(event)
            if event["type"] == "end":
                break
        end = after[-1]
        assert end["cancelled"] is True
        full = tts_seconds(stream_client, text)
        assert end["duration_ms"] < 0.5 * full * 1000  # stopped early, far from the whole text
        # At most the rest of the chunk in progress: one engine chunk is at most one long sentence here.
        assert all(e["type"] == "audio" for e in after[:-1])
        assert sum(len(base64.b64decode(e["audio"])) for e in after[:-1]) / 2 / 22050 < 8.0
        # The connection takes a new stream at once, and the worker is free again.
        ws.send_text(json.dumps({"type": "speak", "text": "Next.", "encoding": "base64"}))
        events, _ = collect(ws)
        assert events[-1]["type"] == "end"
        assert not events[-1]["cancelled"]
    assert wait_until(lambda: engine.pool.admitted == 0)


def test_disconnect_mid_stream_frees_the_worker(
    live_server: LiveServer, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    produced: list[str] = []
    text = " ".join([PARAGRAPH.replace("train", "ferry")] * 4)
    for name in ("_frontend", "_decode"):
        original = getattr(Synthesis, name)

        def counting(self: Synthesis, *args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            produced.append(_name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(Synthesis, name, counting)

    async def leave_after_first_audio() -> None:
        async with websockets.connect(f"{live_server.ws}/ws/tts", max_size=None) as ws:
            await ws.send(json.dumps({"type": "speak", "text": text}))
            async with asyncio.timeout(60):
                assert json.loads(await ws.recv())["type"] == "start"
                assert isinstance(await ws.recv(), bytes)

    asyncio.run(leave_after_first_audio())
    assert wait_until(lambda: engine.pool.admitted == 0), "the stream kept its place after the client left"
    stopped_at = len(produced)
    produced.clear()
    assert list(engine.iter_stream_chunks(engine.request(text)))  # the whole text, as the jobs to compare with
    assert len(produced) > 8
    assert stopped_at < len(produced) / 2  # synthesis stopped; it did not run on to the end
    # A following request is served normally.
    response = httpx.post(f"{live_server.http}/tts", json={"text": "Back again."}, timeout=60)
    assert response.status_code == 200


def _wav(pcm: bytes) -> bytes:
    return wav_header(22050, len(pcm)) + pcm


def test_tts_stream_wav(stream_client: TestClient) -> None:
    response = stream_client.post("/tts/stream", json={"text": PARAGRAPH})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    body = response.content
    assert body[:4] == b"RIFF"
    assert body[8:12] == b"WAVE"
    assert body[36:40] == b"data"
    assert int.from_bytes(body[40:44], "little") == 0xFFFFFFFF - 36  # streaming header: length unknown
    pcm = body[44:]
    assert_speech(parse_wav(_wav(pcm)), PARAGRAPH)
    assert response.headers["x-sample-rate"] == "22050"


def test_tts_stream_pcm_and_errors(stream_client: TestClient) -> None:
    response = stream_client.post("/tts/stream", json={"text": "Raw bytes please."}, headers={"Accept": "audio/pcm"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("audio/pcm")
    assert response.content[:4] != b"RIFF"
    assert rms(response.content) > 300
    bad = stream_client.post("/tts/stream", json={"text": ""})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    missing = stream_client.post("/tts/stream", json={"text": "Hi.", "voice": "nobody"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "voice_not_found"


def test_tts_stream_first_bytes_arrive_before_the_last_sentence_is_made(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Synthesis stops after the first chunk until the client has its first bytes: a server that buffered the
    # whole response would never send them, and the wait below would run out instead.
    first_bytes = threading.Event()
    held: list[bool] = []
    text = PARAGRAPH.replace("train", "tram")  # not in the audio cache, so it is synthesized
    for name in ("_frontend", "_decode"):
        original = getattr(Synthesis, name)

        def gated(self: Synthesis, *args: Any, _original: Any = original, worker: int | None = None) -> Any:
            if worker != HEAD:
                # Nothing after the first window is synthesized until the client holds its first bytes.
                held.append(first_bytes.wait(timeout=30))
            return _original(self, *args, worker=worker)

        monkeypatch.setattr(Synthesis, name, gated)
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{live_server.http}/tts/stream", json={"text": text}) as response,
    ):
        assert response.status_code == 200
        received = b""
        for data in response.iter_bytes():
            if not first_bytes.is_set() and len(received + data) > 44:
                first_bytes.set()
            received += data
    assert held, "the first bytes only came after the last sentence was synthesized"
    assert all(held), "the first bytes only came after the last sentence was synthesized"
    assert len(received) > 44 + 22050 * 2 * 5


def test_runaway_text_is_refused_while_the_stream_goes_on(
    stream_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "MAX_QUEUED", 0)
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "start", "encoding": "base64"}))
        assert ws.receive_json()["type"] == "start"
        ws.send_text(json.dumps({"type": "text", "text": "Too much. "}))
        event = ws.receive_json()
        assert event["type"] == "error"
        assert event["code"] == "busy"
        assert not event["ends_stream"]
        ws.send_text(json.dumps({"type": "end"}))
        events, _ = collect(ws)
    assert events[-1]["type"] == "end"
    assert events[-1]["chunks"] == 0
