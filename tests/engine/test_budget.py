"""The audio budget (MAX_AUDIO_SECONDS): refused up front when surely over, stopped when synthesis gets there."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pytest
from fastapi.testclient import TestClient

from tts_service.config import Settings
from tts_service.engine import Engine, SpeechChunk, SpeechOptions
from tts_service.errors import AudioTooLong
from tts_service.observability import Metrics

LONGER = (
    "The quick brown fox jumps over the lazy dog, and then it runs far, far away into the dark green forest, "
    "where it hides until the evening comes."
)


def drain_sizes(chunks: Iterable[SpeechChunk], sizes: list[int]) -> None:
    """Record each chunk's sample count in `sizes` until the stream ends or raises."""
    for chunk in chunks:
        sizes.append(chunk.pcm.size)


@pytest.fixture
def small_budget(engine: Engine) -> Iterator[Engine]:
    """A 6-second budget, sharing the warm voices."""
    small = Engine(Settings(max_audio_seconds=6.0), registry=engine.registry, metrics=Metrics(process=False))
    small.voice_cache = engine.voice_cache
    yield small
    small.pool.shutdown()


def test_slow_long_text_is_refused_before_any_work(client: TestClient, engine: Engine) -> None:
    text = ("Internationalization " * 238).strip()  # ~5,000 characters, long words
    response = client.post("/tts", json={"text": text, "speed": 0.25})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "audio_too_long"
    assert "MAX_AUDIO_SECONDS" in error["message"]
    # The same text at normal speed is within the budget: the refusal is about the speech, not the text.
    engine.request(text, SpeechOptions(speed=1.0))


def test_silences_count_against_the_budget(engine: Engine) -> None:
    text = " ".join(["Yes."] * 200)
    engine.request(text)  # 200 short sentences fit
    with pytest.raises(AudioTooLong):
        engine.request(text, SpeechOptions(sentence_silence=5.0))  # 995 s of silence alone


def test_synthesis_stops_at_the_budget_when_the_estimate_was_low(small_budget: Engine) -> None:
    req = small_budget.request(LONGER)  # at least ~4 s by the estimate's floor, really ~9 s
    with pytest.raises(AudioTooLong):
        small_budget.synthesize_blocking(req)
    sizes: list[int] = []
    with pytest.raises(AudioTooLong):
        drain_sizes(small_budget.iter_stream_chunks(req), sizes)
    produced = sum(sizes)
    assert 0 < produced <= 6.0 * 22050  # what was delivered before the stop stays within the budget


@pytest.mark.parametrize("text", ["Hello\x00 world.", "Bell\x07 and escape\x1b[31m red.", "\x7fDelete me."])
def test_control_characters_are_a_clear_422_never_a_500(client: TestClient, text: str) -> None:
    response = client.post("/tts", json={"text": text})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "cannot be spoken" in json.dumps(error)


def test_the_engine_speaks_around_control_characters(engine: Engine) -> None:
    # Callers inside the service (chat replies from an LLM) reach the engine without the API's check.
    speech = engine.synthesize_blocking(engine.request("Tab\tand\x07bell\x00 here."))
    assert speech.pcm.size > 22050 // 2


def test_only_control_characters_is_empty_text(client: TestClient) -> None:
    response = client.post("/tts", json={"text": "\x00\x01\x02"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
