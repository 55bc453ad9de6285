"""`tts-smoke`: passes against a healthy server (keys in headers or tickets, chat when an LLM is configured), and
fails with one line per check against a dead port, a wrong key, or audio that is silence or does not fit."""

from __future__ import annotations

import contextlib
import io
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient

from tests.fakes.llm_server import FakeLlmServer
from tests.support.live import LiveServer
from tests.support.shim import free_port
from tts_service import smoke
from tts_service.api import chat, client_config, health, stream, tickets, tts, voices
from tts_service.app import create_app
from tts_service.chat import ChatService, get_chat_service
from tts_service.config import Settings
from tts_service.engine import Engine

KEY = "smoke-key-0123456789"


@pytest.fixture
def server(engine: Engine, fake_llm: FakeLlmServer, tmp_path: Path) -> Iterator[LiveServer]:
    """Every router of the shim on a real uvicorn on loopback, with API keys and chat on the fake LLM."""
    service = ChatService(
        Settings(
            openai_api_key="sk-test",
            openai_base_url=fake_llm.openai_url,
            llm_model="fake-model",
            llm_timeout_secs=10,
            data_dir=tmp_path,
        )
    )
    routers = (health.router, tts.router, voices.router, stream.router, chat.router, tickets.router)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await service.llm.aclose()  # as the shim does: the LLM connections close with the server's loop

    settings = Settings(api_keys=KEY, rate_limit_enabled=False)
    app = create_app(*routers, client_config.router, settings=settings, lifespan=lifespan)
    app.dependency_overrides[get_chat_service] = lambda: service
    live = LiveServer(app)
    live.start()
    try:
        yield live
    finally:
        live.stop()
        service.memory.close()


def options(url: str, **overrides: object) -> smoke.Options:
    return smoke.parse([url, "--timeout", "30"]).__class__(
        **{**vars(smoke.parse([url, "--timeout", "30"])), **overrides}
    )


def run(opts: smoke.Options, checks: tuple[str, ...] = smoke.CHECKS) -> tuple[list[smoke.Result], list[str]]:
    lines: list[str] = []
    return smoke.run(opts, checks, out=lines.append), lines


@pytest.mark.parametrize("ws_auth", ["header", "ticket"])
def test_every_check_passes_against_a_healthy_server(server: LiveServer, fake_llm: FakeLlmServer, ws_auth: str) -> None:
    results, lines = run(options(server.http, api_key=KEY, ws_auth=ws_auth))
    assert [(r.name, r.outcome) for r in results] == [(name, "PASS") for name in smoke.CHECKS], lines
    assert lines[-1].startswith(f"smoke OK against {server.http}: 6 ok, 0 failing, 0 skipped")
    # the chat check cleaned up after itself: the conversation it made is gone
    assert fake_llm.chat_requests()


def test_chat_is_skipped_without_an_llm_unless_required(engine: Engine) -> None:
    app = create_app(health.router, chat.router, settings=Settings(rate_limit_enabled=False))
    live = LiveServer(app)
    service = ChatService(Settings(openai_api_key=None))
    app.dependency_overrides[get_chat_service] = lambda: service
    live.start()
    try:
        results, lines = run(options(live.http), ("health", "chat"))
        assert [r.outcome for r in results] == ["PASS", "SKIP"]
        assert "LLM not configured" in lines[1]
        results, _ = run(options(live.http, require_chat=True), ("chat",))
        assert results[0].outcome == "FAIL"
    finally:
        live.stop()
        service.memory.close()


def test_a_dead_port_fails_every_check_with_a_reason_each(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert smoke.main([url, "--timeout", "5"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(smoke.CHECKS) + 1
    for name, line in zip(smoke.CHECKS, lines, strict=False):
        assert line.startswith(f"FAIL {name}: "), line
        assert "refused" in line.lower(), line
    assert lines[-1] == f"smoke FAILED against {url}: 0 ok, 6 failing, 0 skipped"


def test_a_wrong_key_fails_clearly(server: LiveServer) -> None:
    results, lines = run(options(server.http, api_key="not-the-key"), ("health", "tts", "ws"))
    assert [r.outcome for r in results] == ["PASS", "FAIL", "FAIL"]  # health needs no key
    assert "HTTP 401 (expected 200) unauthorized" in lines[1]
    assert "handshake refused with HTTP 403" in lines[2] or "HTTP 401" in lines[2]


def wav_bytes(seconds: float, amplitude: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        frames = int(seconds * 16000)
        wav.writeframes(
            b"".join(((amplitude if i % 20 < 10 else -amplitude) & 0xFFFF).to_bytes(2, "little") for i in range(frames))
        )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (wav_bytes(3.0, 0), "the audio is silence"),
        (wav_bytes(0.2, 3000), "0.20 s of audio for"),
        (wav_bytes(60.0, 3000), "60.00 s of audio for"),
        (b"RIFF....not a wav", "does not decode as WAV"),
    ],
)
def test_audio_that_does_not_fit_the_text_fails(body: bytes, reason: str) -> None:
    fake = FastAPI()

    @fake.post("/tts")
    async def answer() -> Response:
        return Response(body, media_type="audio/wav")

    opts = options("http://fake")
    check = smoke.Smoke(opts)
    check.http = TestClient(fake, base_url="http://fake")  # type: ignore[assignment]
    with pytest.raises(smoke.CheckFailed, match=reason):
        check.tts()


def test_the_websocket_url_follows_the_http_one_unless_given() -> None:
    assert (
        smoke.Smoke(options("https://tts.example.com/speech/")).websocket_url() == "wss://tts.example.com/speech/ws/tts"
    )
    assert smoke.Smoke(options("http://127.0.0.1:8085")).websocket_url() == "ws://127.0.0.1:8085/ws/tts"
    aws = options(
        "https://abc.execute-api.eu-west-1.amazonaws.com/", ws_url="wss://def.execute-api.eu-west-1.amazonaws.com/prod"
    )
    assert smoke.Smoke(aws).websocket_url() == "wss://def.execute-api.eu-west-1.amazonaws.com/prod"
