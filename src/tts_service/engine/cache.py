"""The synthesized-audio cache: identical requests (text, voice and every option) replay stored audio.

One LRU bounded by bytes (`TTS_CACHE_MB`) serves `Engine.synthesize` (/tts) and `Engine.stream` (the
streaming paths), which look it up and store in it themselves: a finished synthesis of either kind stores its
chunks; a hit skips the worker pool and costs a lookup and a copy. Keys are digests, so the cache holds no
second copy of users' text as keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from tts_service.engine.speech import SpeechChunk, SpeechRequest
from tts_service.observability import Metrics

CACHE_NAME = "audio"


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

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def fits(self, nbytes: int) -> bool:
        """Whether audio of `nbytes` could be stored: callers check before copying what they would store."""
        return 0 < nbytes <= self.max_bytes

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
            self.metrics.cache_miss(self.name)
            return None
        self.metrics.cache_hit(self.name)
        return [dataclasses.replace(chunk, pcm=chunk.pcm.copy()) for chunk in entry[0]]

    def put(self, req: SpeechRequest, chunks: Sequence[SpeechChunk]) -> bool:
        """Store the chunks of a complete synthesis of `req`; False when they alone are over the budget."""
        size = sum(chunk.pcm.nbytes + len(chunk.text.encode()) for chunk in chunks)
        if not chunks or not self.fits(size):
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

    def recorder(self, req: SpeechRequest) -> Recorder:
        """Collects the chunks of a synthesis of `req` as they are made, to `store` once it is complete."""
        return Recorder(self, req)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
        self.metrics.cache_size(self.name, 0, 0)


class Recorder:
    """Copies of a synthesis's chunks while they fit the cache; `store` puts them in once the synthesis is whole."""

    def __init__(self, cache: AudioCache, req: SpeechRequest) -> None:
        self.cache = cache
        self.req = req
        self.chunks: list[SpeechChunk] | None = [] if cache.enabled else None
        """None once the synthesis cannot be stored (cache off, or over its budget): nothing more is copied."""
        self.nbytes = 0

    def add(self, chunk: SpeechChunk) -> None:
        """Keep a copy of `chunk` (its consumer may change the original) while the whole could still be stored."""
        if self.chunks is None:
            return
        self.nbytes += chunk.pcm.nbytes
        if not self.cache.fits(self.nbytes):
            self.chunks = None
            return
        self.chunks.append(dataclasses.replace(chunk, pcm=chunk.pcm.copy()))

    def store(self) -> None:
        if self.chunks is not None:
            self.cache.put(self.req, self.chunks)
