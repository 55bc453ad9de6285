"""The audio cache: identical requests replay stored audio without synthesizing, bounded by bytes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from tests.support.apps import AppFactory
from tests.support.audio import assert_speech, parse_wav
from tts_service.config import Settings
from tts_service.engine import Engine
from tts_service.engine.cache import AudioCache
from tts_service.engine.speech import SpeechChunk
from tts_service.observability import Metrics


def counters(engine: Engine) -> tuple[float, float, float]:
    m, voice = engine.metrics, engine.registry.default_voice
    return (
        m.value("tts_cache_hits_total", cache="audio"),
        m.value("tts_cache_misses_total", cache="audio"),
        m.value("tts_synthesis_duration_seconds_count", voice=voice),
    )


def test_identical_tts_request_is_a_hit_without_synthesis(make_client: AppFactory, engine: Engine) -> None:
    client, _ = make_client()
    body: dict[str, Any] = {"text": "The cache keeps this sentence about purple lighthouses.", "speed": 1.1}
    hits0, misses0, synth0 = counters(engine)
    first = client.post("/tts", json=body)
    assert first.status_code == 200
    assert counters(engine) == (hits0, misses0 + 1, synth0 + 1)
    second = client.post("/tts", json=body)
    assert second.status_code == 200
    assert counters(engine) == (hits0 + 1, misses0 + 1, synth0 + 1), "a hit synthesizes nothing"
    assert second.json()["audio_base64"] == first.json()["audio_base64"]
    wav = parse_wav(base64.b64decode(second.json()["audio_base64"]))
    assert_speech(wav, body["text"], speed=1.1)
    # The WAV form of the same request is the same entry.
    raw = client.post("/tts?format=wav", json=body)
    assert raw.content == base64.b64decode(first.json()["audio_base64"])
    assert counters(engine)[2] == synth0 + 1


def test_every_option_is_part_of_the_key(make_client: AppFactory, engine: Engine) -> None:
    client, _ = make_client()
    text = "Options change the audio, so they change the key."
    variants = [{}, {"speed": 1.3}, {"noise_scale": 0.3}, {"noise_w": 0.5}, {"volume": 0.5}, {"sentence_silence": 0.2}]
    _, misses0, synth0 = counters(engine)
    for options in variants:
        assert client.post("/tts", json={"text": text, **options}).status_code == 200
    _, misses1, synth1 = counters(engine)
    assert misses1 - misses0 == len(variants)
    assert synth1 - synth0 == len(variants)
    # Surrounding whitespace is trimmed before the key is made: same speech, same entry.
    hits = counters(engine)[0]
    assert client.post("/tts", json={"text": f"  {text}\n"}).status_code == 200
    assert counters(engine)[0] == hits + 1


def test_stream_and_tts_share_entries(engine: Engine) -> None:
    async def collect(text: str) -> list[SpeechChunk]:
        return [chunk async for chunk in engine.stream(engine.request(text))]

    text = "First the stream makes it. Then the whole request replays it."
    _, _, synth0 = counters(engine)
    streamed = asyncio.run(collect(text))
    assert len(streamed) >= 2
    assert counters(engine)[2] == synth0 + 1, "a whole stream is one synthesis"
    hits0 = counters(engine)[0]
    speech = asyncio.run(engine.synthesize(engine.request(text)))
    assert counters(engine)[0] == hits0 + 1
    assert np.array_equal(speech.pcm, np.concatenate([c.pcm for c in streamed]))
    replayed = asyncio.run(collect(text))
    assert counters(engine)[0] == hits0 + 2
    assert counters(engine)[2] == synth0 + 1
    assert [c.seq for c in replayed] == [c.seq for c in streamed]


def test_an_abandoned_stream_is_not_stored(engine: Engine) -> None:
    text = "This stream stops early. Nobody hears the second sentence. Nor the third."

    async def first_only() -> None:
        stream = engine.stream(engine.request(text))
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(first_only())
    misses = counters(engine)[1]
    assert engine.audio_cache.get(engine.request(text)) is None
    assert counters(engine)[1] == misses + 1


def test_hits_are_copies(engine: Engine) -> None:
    text = "Callers may scribble on what they get back."
    speech = asyncio.run(engine.synthesize(engine.request(text)))
    speech.pcm[:] = 0
    again = asyncio.run(engine.synthesize(engine.request(text)))
    assert np.abs(again.pcm).max() > 0


def chunk(samples: int) -> SpeechChunk:
    return SpeechChunk(seq=0, text="x", pcm=np.ones(samples, dtype=np.int16), sample_rate=22050)


def test_lru_bounded_by_bytes(engine: Engine) -> None:
    metrics = Metrics(process=False)
    cache = AudioCache(max_bytes=10_000, metrics=metrics)
    requests = [engine.request(f"Entry number {i}.") for i in range(4)]
    for req in requests[:3]:
        assert cache.put(req, [chunk(2000)])  # 4001 bytes each with its text
    assert len(cache) == 2
    assert cache.size_bytes <= 10_000
    assert cache.get(requests[0]) is None, "the least recently used entry went first"
    assert cache.get(requests[1]) is not None
    assert cache.put(requests[3], [chunk(2000)])
    assert cache.get(requests[1]) is not None, "a hit refreshes an entry"
    assert cache.get(requests[2]) is None
    assert not cache.put(requests[0], [chunk(6000)]), "one entry over the budget is not stored"
    assert metrics.value("tts_cache_size_bytes", cache="audio") == cache.size_bytes
    assert metrics.value("tts_cache_entries", cache="audio") == 2


def test_cache_can_be_disabled(engine: Engine) -> None:
    off = Engine(Settings(tts_cache_mb=0), registry=engine.registry, metrics=Metrics(process=False))
    req = off.request("Nothing is kept.")
    assert not off.audio_cache.put(req, [chunk(10)])
    assert off.audio_cache.get(req) is None
    assert off.metrics.value("tts_cache_misses_total", cache="audio") == 0


def test_a_recording_over_the_budget_stops_copying_and_is_not_stored(engine: Engine) -> None:
    cache = AudioCache(max_bytes=10_000, metrics=Metrics(process=False))
    req = engine.request("A stream too long to keep.")
    recorder = cache.recorder(req)
    recorder.add(chunk(2000))
    assert recorder.chunks is not None
    assert len(recorder.chunks) == 1
    recorder.add(chunk(4000))  # 12,000 bytes in all: the whole can no longer be stored
    assert recorder.chunks is None, "nothing more is copied once the whole cannot fit"
    recorder.add(chunk(10))
    recorder.store()
    assert cache.get(req) is None
    assert len(cache) == 0


def test_a_cache_that_is_off_records_nothing(engine: Engine) -> None:
    recorder = AudioCache(max_bytes=0, metrics=Metrics(process=False)).recorder(engine.request("Not kept."))
    recorder.add(chunk(10))
    assert recorder.chunks is None
