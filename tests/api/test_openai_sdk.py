"""The official `openai` SDK against the OpenAI-compatible routes, served by uvicorn on a loopback port."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.audio import parse_wav
from tests.support.decode import assert_same_speech, decode
from tests.support.live import LiveServer
from tts_service.api import health, openai_compat, tts
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine

TEXT = "The museum opens at nine on weekdays. Guided tours leave from the main hall every hour."


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[LiveServer]:
    live = LiveServer(create_app(health.router, tts.router, openai_compat.router))
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    # No retries: an error must surface as the exception of the first answer.
    return openai.OpenAI(base_url=f"{server.http}/v1", api_key="not-checked", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def wav_seconds(client: openai.OpenAI) -> float:
    """The reference: the same text as WAV (the voice's own rate)."""
    wav = parse_wav(client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav").read())
    assert wav.sample_rate == 22050
    return wav.seconds


@pytest.mark.parametrize(
    ("fmt", "rate", "content_type"),
    [
        ("mp3", 22050, "audio/mpeg"),
        ("opus", 24000, "audio/ogg"),
        ("aac", 22050, "audio/aac"),
        ("flac", 22050, "audio/flac"),
        ("wav", 22050, "audio/wav"),
        ("pcm", 24000, "audio/pcm"),
    ],
)
def test_speech_in_every_format(
    client: openai.OpenAI, wav_seconds: float, fmt: Any, rate: int, content_type: str
) -> None:
    response = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input=TEXT, response_format=fmt)
    assert response.response.headers["content-type"].startswith(content_type)
    decoded = decode(fmt, response.read(), 24000 if fmt == "pcm" else None)
    assert decoded.sample_rate == rate
    assert_same_speech(decoded, wav_seconds)


def test_mp3_is_the_default_and_voice_ids_work_as_voice_or_model(client: openai.OpenAI, wav_seconds: float) -> None:
    for model, voice in (("tts-1-hd", "en_US-joe-medium"), ("en_US-joe-medium", "nova")):
        response = client.audio.speech.create(model=model, voice=voice, input=TEXT, instructions="Speak cheerfully.")
        assert response.response.headers["content-type"] == "audio/mpeg"
        assert response.response.headers["x-voice"] == "en_US-joe-medium"
        assert_same_speech(decode("mp3", response.read()), wav_seconds)
    custom = client.audio.speech.create(model="tts-1", voice={"id": "en_US-joe-medium"}, input=TEXT)
    assert_same_speech(decode("mp3", custom.read()), wav_seconds)


@pytest.mark.parametrize(("fmt", "rate"), [("pcm", 16000), ("pcm", 8000), ("wav", 8000), ("mulaw", 8000)])
def test_telephony_rates(client: openai.OpenAI, wav_seconds: float, fmt: Any, rate: int) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt, extra_body={"sample_rate": rate}
    )
    decoded = decode(fmt, response.read(), rate)
    assert decoded.sample_rate == rate
    assert_same_speech(decoded, wav_seconds)


def test_alaw_is_8khz_by_default(client: openai.OpenAI, wav_seconds: float) -> None:
    response = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="alaw")  # type: ignore[arg-type]  # ours, not in the SDK's list
    assert response.response.headers["content-type"].startswith("audio/PCMA;rate=8000")
    assert_same_speech(decode("alaw", response.read(), 8000), wav_seconds)


def test_streaming_response_starts_well_before_synthesis_ends(client: openai.OpenAI) -> None:
    # Text no other test speaks: the audio cache must not answer it.
    text = (
        "Long before the harbour town woke up, the fishing boats had already left the quay. "
        "Their lamps drew thin lines across the dark water while the gulls followed them out. "
        "By the time the bakery opened, the first boats were turning back with their catch. "
        "Children ran down to the pier to count the crates as the sun finally rose over the hills."
    )
    started = time.perf_counter()
    first: float | None = None
    data = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="mp3"
    ) as response:
        for piece in response.iter_bytes():
            if first is None and piece:
                first = time.perf_counter() - started
            data += piece
    total = time.perf_counter() - started
    assert first is not None
    # The whole text takes seconds to synthesize; its first chunk (a quarter second of audio) much less.
    assert first < 0.3 * total, f"first bytes after {first:.2f} s of {total:.2f} s"
    decoded = decode("mp3", data)
    assert decoded.seconds > 15
    assert decoded.rms > 300


@pytest.mark.parametrize("fmt", ["mp3", "pcm", "opus"])
def test_sse_deltas_decode_to_the_whole_utterance(client: openai.OpenAI, wav_seconds: float, fmt: Any) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format=fmt, stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 2
    assert {e["type"] for e in deltas} == {"speech.audio.delta"}
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == len(TEXT)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == pytest.approx(wav_seconds * 50, rel=0.05)  # 20 ms frames
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert_same_speech(decode(fmt, audio, 24000 if fmt == "pcm" else None), wav_seconds)


@pytest.mark.parametrize(
    ("kwargs", "exception", "param", "message"),
    [
        ({"input": ""}, openai.BadRequestError, "input", "at least 1 character"),
        ({"input": "   "}, openai.BadRequestError, "input", "input is empty"),
        ({"input": "x" * 4097}, openai.BadRequestError, "input", "at most 4096 characters"),
        ({"speed": 4.5}, openai.BadRequestError, "speed", "less than or equal to 4"),
        ({"speed": 0.1}, openai.BadRequestError, "speed", "greater than or equal to 0.25"),
        ({"response_format": "ogg"}, openai.BadRequestError, "response_format", "'mp3', 'opus', 'aac'"),
        ({"voice": "nobody"}, openai.BadRequestError, "voice", "voice 'nobody' is not available"),
        ({"model": "tts-9"}, openai.NotFoundError, "model", "model 'tts-9' does not exist"),
        ({"stream_format": "chunks"}, openai.BadRequestError, "stream_format", "'audio' or 'sse'"),
        ({"extra_body": {"sample_rate": 16000}}, openai.BadRequestError, "sample_rate", "sample_rate applies to pcm"),
        ({"extra_body": {"volume": 2}}, openai.BadRequestError, "volume", "unknown field"),
    ],
)
def test_errors_raise_the_sdk_exceptions_with_our_message(
    client: openai.OpenAI, kwargs: dict[str, Any], exception: type[openai.APIStatusError], param: str, message: str
) -> None:
    request: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **kwargs}
    with pytest.raises(exception) as raised:
        client.audio.speech.create(**request)
    err = raised.value
    assert message in err.message
    assert isinstance(err.body, dict)
    assert err.body == {
        "message": err.body["message"],
        "type": "invalid_request_error",
        "param": param,
        "code": err.code,
    }
    assert err.code in ("validation_error", "voice_not_found", "model_not_found")


def test_models_and_voices_are_listed(client: openai.OpenAI, server: LiveServer) -> None:
    models = [m.id for m in client.models.list()]
    assert models[:3] == ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    assert "en_US-joe-medium" in models
    assert client.models.retrieve("tts-1").owned_by == "tts-service"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("whisper-1")
    voices = httpx.get(f"{server.http}/v1/audio/voices").json()["data"]
    by_id = {v["id"]: v for v in voices}
    assert {"alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"} <= set(by_id)
    assert by_id["alloy"]["voice"] == "en_US-joe-medium"
    assert by_id["en_US-joe-medium"]["language"] == "en_US"


def test_unknown_v1_route_is_an_openai_error_and_others_keep_our_shape(server: LiveServer) -> None:
    missing = httpx.get(f"{server.http}/v1/audio/nothing")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"message": "no such route", "type": "invalid_request_error", "param": None, "code": "not_found"}
    }
    ours = httpx.post(f"{server.http}/tts", json={"text": ""})
    assert ours.status_code == 422
    assert set(ours.json()["error"]) >= {"code", "message"}
    assert "type" not in ours.json()["error"]


def test_middleware_refusals_take_openai_shape_too(engine: Engine) -> None:
    # GIVEN a server that requires API keys
    live = LiveServer(create_app(openai_compat.router, settings=Settings(api_keys="k-right")))
    live.start()
    try:
        wrong = openai.OpenAI(base_url=f"{live.http}/v1", api_key="k-wrong", max_retries=0)
        # WHEN the SDK presents a wrong key THEN it raises its authentication error, with our message
        with pytest.raises(openai.AuthenticationError) as raised:
            wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
        body = raised.value.body
        assert isinstance(body, dict)
        assert set(body) == {"message", "type", "param", "code"}
        assert body["type"] == "authentication_error"
        assert body["code"] == "unauthorized"
        assert body["param"] is None
        assert "API key" in body["message"]
        right = openai.OpenAI(base_url=f"{live.http}/v1", api_key="k-right", max_retries=0)
        assert decode("mp3", right.audio.speech.create(model="tts-1", voice="alloy", input="Hello.").read()).rms > 300
    finally:
        live.stop()
