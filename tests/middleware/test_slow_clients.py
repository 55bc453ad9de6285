"""Slow and chatty clients cannot hold synthesis capacity: send timeouts, idle WebSockets, frame size, per-client
stream caps and bounded queues. Servers run on loopback (127.0.0.1) in this process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.testclient import WebSocketDenialResponse
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.llm_server import FakeLlmServer
from tests.support import raw
from tests.support.apps import AppFactory
from tests.support.live import LiveServer
from tests.support.streams import collect
from tests.support.wait import wait_until
from tts_service.api import chat, stream
from tts_service.app import create_app
from tts_service.chat import ChatService, get_chat_service
from tts_service.chat.turn import MAX_QUEUED_EVENTS, TurnRequest, spoken_turn
from tts_service.config import Settings
from tts_service.engine import Engine, SpeechChunk, get_engine
from tts_service.observability import Metrics
from tts_service.streaming.driver import MAX_QUEUED

# Short to synthesize, 5 s of silence between sentences: megabytes of audio a client must read.
PAUSED = "Yes. " * 40

LiveFactory = Callable[..., tuple[LiveServer, Metrics]]


@pytest.fixture
def live(tiny_engine: Engine, fake_llm: FakeLlmServer) -> Iterator[LiveFactory]:
    """A real server on 127.0.0.1 with the stream and chat routers over the one-place engine, built from settings."""
    servers: list[LiveServer] = []
    services: list[ChatService] = []

    def start(**overrides: Any) -> tuple[LiveServer, Metrics]:
        settings = Settings(rate_limit_enabled=False, **overrides)
        service = ChatService(
            Settings(
                openai_base_url=fake_llm.openai_url,
                openai_api_key="sk-test",
                llm_model="fake-model",
                llm_max_retries=0,
                memory_enabled=False,
            )
        )
        services.append(service)
        metrics = Metrics(process=False)
        app = create_app(stream.router, chat.router, chat.ws_router, settings=settings, metrics=metrics)
        app.dependency_overrides[get_engine] = lambda: tiny_engine
        app.dependency_overrides[get_chat_service] = lambda: service
        server = LiveServer(app, settings=settings)
        server.start()
        servers.append(server)
        return server, metrics

    yield start
    for server, service in zip(servers, services, strict=True):
        server.call(service.llm.aclose())  # its pooled connection to the fake LLM lives on the server's loop
        server.stop()
        service.memory.close()


def served_after_release(server: LiveServer, engine: Engine) -> int:
    """Wait for the stalled client's admission to go, then ask for speech: the one place must be free again."""
    assert wait_until(lambda: engine.pool.admitted == 0), "the stalled client still holds the only admission"
    return httpx.post(f"{server.http}/tts/stream", json={"text": "Someone else."}, timeout=30).status_code


def test_a_client_that_stops_reading_a_stream_frees_its_admission(live: LiveFactory, tiny_engine: Engine) -> None:
    # GIVEN a server whose engine has one place, and a client that asks for minutes of audio and stops reading
    server, metrics = live(stream_send_timeout_secs=0.5)
    sock = raw.connect(server.port)
    try:
        head = raw.post_json(sock, "/tts/stream", {"text": PAUSED, "sentence_silence": 5.0, "format": "pcm"})
        assert head.startswith(b"HTTP/1.1 200")
        # THEN its send times out, the stream ends, and the next client is served
        assert served_after_release(server, tiny_engine) == 200
        assert metrics.value("http_requests_rejected_total", reason="slow_client") == 1
    finally:
        raw.vanish(sock)
        assert wait_until(lambda: not server.server.server_state.connections)


def test_a_websocket_client_that_stops_reading_frees_its_admission(live: LiveFactory, tiny_engine: Engine) -> None:
    server, metrics = live(stream_send_timeout_secs=0.5)
    sock = raw.connect(server.port)
    try:
        assert raw.ws_open(sock, "/ws/tts").startswith(b"HTTP/1.1 101")
        raw.ws_send_text(sock, json.dumps({"type": "speak", "text": PAUSED, "sentence_silence": 5.0}))
        assert wait_until(lambda: tiny_engine.pool.admitted == 1), "the stream did not start"
        assert served_after_release(server, tiny_engine) == 200
        assert metrics.value("http_requests_rejected_total", reason="slow_client") == 1
    finally:
        raw.vanish(sock)
        assert wait_until(lambda: not server.server.server_state.connections)


def test_a_chat_client_that_stops_reading_frees_its_admission(
    live: LiveFactory, tiny_engine: Engine, fake_llm: FakeLlmServer
) -> None:
    server, metrics = live(stream_send_timeout_secs=0.5)
    fake_llm.script("Yes, this sentence takes the better part of ten seconds to say slowly. " * 20)
    sock = raw.connect(server.port)
    try:
        assert raw.ws_open(sock, "/ws/chat").startswith(b"HTTP/1.1 101")
        raw.ws_send_text(sock, json.dumps({"type": "chat", "message": "Talk slowly.", "speed": 0.25}))
        assert wait_until(lambda: metrics.value("http_requests_rejected_total", reason="slow_client") == 1)
        assert served_after_release(server, tiny_engine) == 200
    finally:
        raw.vanish(sock)
        assert wait_until(lambda: not server.server.server_state.connections)


def test_an_idle_websocket_is_closed_and_a_busy_one_is_not(live: LiveFactory) -> None:
    server, _ = live(ws_idle_timeout_secs=1.0)
    with connect(f"{server.ws}/ws/tts") as ws:
        # A stream in progress is activity: it runs to its end.
        ws.send(json.dumps({"type": "speak", "text": "Still here.", "encoding": "base64"}))
        while json.loads(ws.recv(timeout=30))["type"] != "end":
            pass
        ended = time.monotonic()
        # Then nothing moves either way: the server closes the connection as going away.
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert time.monotonic() - ended >= 0.9


def test_an_oversized_websocket_message_closes_the_connection(live: LiveFactory) -> None:
    server, _ = live()
    with connect(f"{server.ws}/ws/tts", max_size=None) as ws:
        ws.send(json.dumps({"type": "speak", "text": "x" * (300 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big


def test_streams_per_client_are_capped(make_client: AppFactory) -> None:
    # GIVEN at most two streams per client, and two API keys (two clients)
    client, metrics = make_client(routers=(stream.router,), api_keys="k-one,k-two", max_streams_per_client=2)
    one, two = {"X-API-Key": "k-one"}, {"X-API-Key": "k-two"}
    with client.websocket_connect("/ws/tts", headers=one), client.websocket_connect("/ws/tts", headers=one):
        # WHEN the first client opens a third stream, WebSocket or HTTP
        with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/tts", headers=one):
            pass
        answer = client.post("/tts/stream", json={"text": "Three."}, headers=one)
        # THEN it is refused with 429, while the other client and the first one's other routes are served
        assert refused.value.status_code == 429
        assert answer.status_code == 429
        assert answer.json()["error"]["code"] == "too_many_streams"
        assert "retry-after" in answer.headers
        assert client.post("/tts/stream", json={"text": "Other client."}, headers=two).status_code == 200
        assert client.post("/tts", json={"text": "Not a stream."}, headers=one).status_code == 200
    assert metrics.value("http_requests_rejected_total", reason="too_many_streams") == 2
    # Once its streams are closed, the first client may stream again.
    assert client.post("/tts/stream", json={"text": "Again."}, headers=one).status_code == 200


def test_incremental_text_cannot_queue_more_than_its_bound(make_client: AppFactory) -> None:
    client, _ = make_client(routers=(stream.router,))
    with client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "start", "encoding": "base64"}))
        assert ws.receive_json()["type"] == "start"
        # One message completing more sentences than the queue holds is refused whole; the stream goes on.
        ws.send_text(json.dumps({"type": "text", "text": "Go. " * (MAX_QUEUED + 1)}))
        refused = ws.receive_json()
        assert refused["type"] == "error"
        assert refused["code"] == "busy"
        assert refused["ends_stream"] is False
        ws.send_text(json.dumps({"type": "text", "text": "Just this one. "}))
        ws.send_text(json.dumps({"type": "end"}))
        events, _ = collect(ws)
    assert events[-1]["type"] == "end"
    assert events[-1]["chunks"] >= 1


class _Engine:
    """Enough of an Engine for a spoken turn: it makes a chunk per sentence at once and counts them."""

    def __init__(self) -> None:
        self.settings = Settings(stream_max_audio_bytes=16384)
        self.made = 0

    def request(self, text: str, options: Any) -> Any:
        return SimpleNamespace(text=text, voice=SimpleNamespace(id="fake", sample_rate=16000))

    async def loaded_voice(self, voice: Any) -> Any:
        return SimpleNamespace(sample_rate=16000)

    async def stream(self, req: Any) -> AsyncIterator[SpeechChunk]:
        self.made += 1
        yield SpeechChunk(0, req.text, np.zeros(8192, dtype=np.int16), 16000)


class _Llm:
    async def stream(self, messages: Any) -> AsyncIterator[str]:
        for _ in range(200):
            yield "Word. "


class _Service:
    llm = _Llm()

    async def prepare(self, message: str, conversation_id: str | None, owner: str) -> Any:
        return SimpleNamespace(conversation_id="c", memory="disabled", messages=[])

    async def finish(self, turn: Any, reply: str) -> str:
        return "disabled"


def test_a_turn_holds_a_bounded_amount_of_unsent_audio() -> None:
    async def scenario() -> int:
        engine = _Engine()
        req = TurnRequest(message="Talk.", owner="o", speak=True)
        turn = spoken_turn(_Service(), engine, req, asyncio.Event())  # type: ignore[arg-type]
        try:
            async for event in turn:
                if type(event).__name__ == "AudioEvent":
                    break
            # The transport stops taking events; the LLM and synthesis get every chance to run ahead.
            for _ in range(1000):
                await asyncio.sleep(0)
            return engine.made
        finally:
            await turn.aclose()

    made = asyncio.run(scenario())
    # 200 sentences were written; only what the bounded queues hold was synthesized ahead of the transport.
    assert made <= MAX_QUEUED_EVENTS
