"""The synthesized-audio cache: identical requests (text, voice and every option) replay stored audio.

One LRU bounded by bytes (`TTS_CACHE_MB`) serves `Engine.synthesize` (/tts) and `Engine.stream` (the
streaming paths): a finished synthesis of either kind stores its chunks; a hit skips the worker pool and
costs a lookup and a copy. Keys are digests, so the cache holds no second copy of users' text as keys.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tts_service.observability import Metrics

if TYPE_CHECKING:
    from tts_service.engine.synth import Engine, Speech, SpeechChunk, SpeechRequest

CACHE_NAME = "audio"

E = TypeVar("E", bound="Engine")


def request_key(req: SpeechRequest) -> bytes:
    """A digest of everything that shapes the audio: the text, the voice and every resolved option."""
    parts: dict[str, Any] = {}
    for f in dataclasses.fields(req):
        value = getattr(req, f.name)
        # The voice by id and model file, so a replaced model never replays old audio.
        parts[f.name] = [value.id, str(value.model.path), value.model.sha256] if f.name == "voice" else value
    blob = json.dumps(parts, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).digest()


class AudioCache:
    """Chunks of finished syntheses by request key, least recently used evicted first, at most `max_bytes`."""

    def __init__(self, max_bytes: int, metrics: Metrics, name: str = CACHE_NAME) -> None:
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.name = name
        self._entries: OrderedDict[bytes, tuple[tuple[SpeechChunk, ...], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, req: SpeechRequest) -> list[SpeechChunk] | None:
        """Copies of the stored chunks for `req` (callers may modify them), or None; counts the hit or miss."""
        if not self.enabled:
            return None
        key = request_key(req)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is None:
            self.misses += 1
            self.metrics.cache_miss(self.name)
            return None
        self.hits += 1
        self.metrics.cache_hit(self.name)
        return [dataclasses.replace(chunk, pcm=chunk.pcm.copy()) for chunk in entry[0]]

    def put(self, req: SpeechRequest, chunks: Sequence[SpeechChunk]) -> bool:
        """Store the chunks of a complete synthesis of `req`; False when they alone are over the budget."""
        size = sum(chunk.pcm.nbytes + len(chunk.text.encode()) for chunk in chunks)
        if not self.enabled or not chunks or size > self.max_bytes:
            return False
        key = request_key(req)
        stored = tuple(chunks)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (stored, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
            entries, total = len(self._entries), self._bytes
        self.metrics.cache_size(self.name, entries, total)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
        self.metrics.cache_size(self.name, 0, 0)


def _speech_from_chunks(req: SpeechRequest, chunks: list[SpeechChunk]) -> Speech:
    from tts_service.engine.synth import Speech, join_words  # synth imports this module

    return Speech(
        pcm=np.concatenate([c.pcm for c in chunks]),
        sample_rate=chunks[0].sample_rate,
        voice_id=req.voice.id,
        chunks=len(chunks),
        synthesis_seconds=0.0,
        words=join_words(chunks),
    )


def cached_speech(
    fn: Callable[[E, SpeechRequest], Awaitable[Speech]],
) -> Callable[[E, SpeechRequest], Awaitable[Speech]]:
    """Decorate `Engine.synthesize`: serve hits without the worker pool, record and store misses."""

    @functools.wraps(fn)
    async def synthesize(self: E, req: SpeechRequest) -> Speech:
        cached = self.audio_cache.get(req)
        if cached is not None:
            return _speech_from_chunks(req, cached)
        speech = await fn(self, req)
        self.metrics.observe_synthesis(speech.voice_id, speech.synthesis_seconds, speech.duration_ms / 1000)
        from tts_service.engine.synth import SpeechChunk

        # A copy: the caller owns the returned array and may change it.
        self.audio_cache.put(req, [SpeechChunk(0, req.text, speech.pcm.copy(), speech.sample_rate, words=speech.words)])
        return speech

    return synthesize


def cached_stream(
    fn: Callable[..., AsyncGenerator[SpeechChunk, None]],
) -> Callable[..., AsyncGenerator[SpeechChunk, None]]:
    """Decorate `Engine.stream`: replay hits at once; time first audio and synthesis; store complete streams.

    Calls with arguments beyond the request pass straight through: they may shape the audio.
    """

    @functools.wraps(fn)
    async def stream(self: Engine, req: SpeechRequest, *args: Any, **kwargs: Any) -> AsyncGenerator[SpeechChunk, None]:
        if args or kwargs:
            async for chunk in fn(self, req, *args, **kwargs):
                yield chunk
            return
        started = time.perf_counter()
        cached = self.audio_cache.get(req)
        if cached is not None:
            self.metrics.observe_ttfa(req.voice.id, time.perf_counter() - started)
            for chunk in cached:
                yield chunk
            return
        source = fn(self, req)
        collected: list[SpeechChunk] = []
        collected_bytes = 0
        audio_seconds = 0.0
        busy = 0.0  # time spent waiting for the engine, not for our consumer
        complete = False
        try:
            while True:
                asked = time.perf_counter()
                try:
                    chunk = await source.__anext__()
                except StopAsyncIteration:
                    complete = True
                    break
                now = time.perf_counter()
                busy += now - asked
                if not audio_seconds:
                    self.metrics.observe_ttfa(req.voice.id, now - started)
                audio_seconds += chunk.pcm.size / chunk.sample_rate
                if collected_bytes <= self.audio_cache.max_bytes:
                    collected.append(dataclasses.replace(chunk, pcm=chunk.pcm.copy()))
                    collected_bytes += chunk.pcm.nbytes
                yield chunk
        finally:
            await source.aclose()
            if audio_seconds:
                self.metrics.observe_synthesis(req.voice.id, busy, audio_seconds)
            if complete and collected_bytes <= self.audio_cache.max_bytes:
                self.audio_cache.put(req, collected)

    return stream
