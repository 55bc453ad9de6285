"""What the engine takes and gives: an accepted request, the chunks it makes, a finished synthesis."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tts_service.engine.audio import Int16Array
from tts_service.engine.registry import VoiceEntry
from tts_service.engine.words import WordTiming


@dataclass(frozen=True)
class SpeechRequest:
    """A request the engine has accepted: trimmed text, a registered voice and resolved options."""

    text: str
    voice: VoiceEntry
    speaker_id: int | None
    length_scale: float | None
    noise_scale: float | None
    noise_w: float | None
    volume: float
    sentence_silence: float
    loudness: float | None = None
    """Target LUFS, or None (Piper's peak normalisation)."""


@dataclass
class SpeechChunk:
    """One piece of audio: a sentence, or part of an over-long one."""

    seq: int
    text: str
    pcm: Int16Array
    sample_rate: int
    sentence_end: bool = True
    """False for the leading pieces of a sentence decoded in chunks (`Engine.iter_stream_chunks`)."""
    words: list[WordTiming] = dataclasses.field(default_factory=list)
    """Words that start in this chunk, in samples from its start (voices whose graph gives durations)."""

    @property
    def duration_ms(self) -> int:
        return round(1000 * self.pcm.size / self.sample_rate)


@dataclass
class Speech:
    """A finished synthesis."""

    pcm: Int16Array
    sample_rate: int
    voice_id: str
    chunks: int
    synthesis_seconds: float
    words: list[WordTiming] = dataclasses.field(default_factory=list)
    """Word timings in samples from the start (voices whose graph gives durations)."""

    @classmethod
    def joined(cls, voice_id: str, chunks: list[SpeechChunk], synthesis_seconds: float) -> Speech:
        """The chunks (at least one) as one synthesis, owning their audio (one chunk's array is taken, not copied)."""
        return cls(
            pcm=chunks[0].pcm if len(chunks) == 1 else np.concatenate([c.pcm for c in chunks]),
            sample_rate=chunks[0].sample_rate,
            voice_id=voice_id,
            chunks=len(chunks),
            synthesis_seconds=synthesis_seconds,
            words=join_words(chunks),
        )

    @property
    def duration_ms(self) -> int:
        return round(1000 * self.pcm.size / self.sample_rate)


def join_words(chunks: list[SpeechChunk]) -> list[WordTiming]:
    """The chunks' word timings in samples from the start of their joined audio."""
    words: list[WordTiming] = []
    offset = 0
    for chunk in chunks:
        words.extend(w.shifted(offset) for w in chunk.words)
        offset += chunk.pcm.size
    return words
