"""The Piper engine: validated speech requests in, 16-bit PCM out, whole or one chunk at a time."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from piper.config import SynthesisConfig

from tts_service.config import Settings, get_settings
from tts_service.engine.audio import Int16Array, float_to_int16, silence
from tts_service.engine.cache import AudioCache, cached_speech, cached_stream
from tts_service.engine.chunked import WHOLE, ChunkedVoices, Schedule
from tts_service.engine.options import SpeechOptions
from tts_service.engine.pool import WorkerPool
from tts_service.engine.registry import VoiceEntry, VoiceRegistry
from tts_service.engine.text import cut_phonemes, split_sentences
from tts_service.engine.voices import LoadedVoice, SessionSettings, VoiceCache
from tts_service.errors import SynthesisFailed, ValidationFailed
from tts_service.observability import Metrics, get_metrics

logger = logging.getLogger(__name__)

_WARMUP_TEXT = "Ready."


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

    def synthesis_config(self, voice: LoadedVoice) -> SynthesisConfig:
        return SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=self.length_scale,
            noise_scale=self.noise_scale,
            noise_w_scale=self.noise_w,
            normalize_audio=True,
            volume=self.volume,
        )


@dataclass
class SpeechChunk:
    """One piece of audio: a sentence, or part of an over-long one."""

    seq: int
    text: str
    pcm: Int16Array
    sample_rate: int
    sentence_end: bool = True
    """False for the leading pieces of a sentence decoded in chunks (`Engine.iter_stream_chunks`)."""

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

    @property
    def duration_ms(self) -> int:
        return round(1000 * self.pcm.size / self.sample_rate)


class Engine:
    """Voice selection, option validation and synthesis on a bounded worker pool."""

    def __init__(
        self, settings: Settings, registry: VoiceRegistry | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or get_metrics()
        self.registry = registry or VoiceRegistry.from_file(settings.voice_map_path)
        self.cache = VoiceCache(
            settings.voice_cache_size,
            SessionSettings(
                intra_op_threads=settings.ort_intra_op_threads,
                allow_spinning=settings.ort_allow_spinning,
                verify_hashes=settings.verify_voice_hashes,
                espeak_data_dir=settings.espeak_data_dir,
            ),
            pinned=frozenset({self.registry.default_voice}),
        )
        self.pool = WorkerPool(settings.synth_workers, settings.synth_queue_size, self.metrics)
        self.audio_cache = AudioCache(int(settings.tts_cache_mb * 2**20), self.metrics)
        """Finished audio by request (text, voice, options), shared by `synthesize` and `stream`."""
        self.metrics.watch_engine(lambda: len(self.cache.loaded_ids()), lambda: self.pool.admitted, self.pool.capacity)
        self.chunked = ChunkedVoices(
            settings.stream_cache_dir,
            settings.ort_intra_op_threads,
            enabled=settings.stream_chunked_decode,
            capacity=settings.voice_cache_size,
            allow_spinning=settings.ort_allow_spinning,
        )
        """Voices split for chunked decoding (streaming's early first audio)."""
        self.schedule = Schedule(
            first_frames=settings.stream_first_chunk_frames, chunk_frames=settings.stream_chunk_frames
        )
        self.warmed = False
        """True once the default voice has loaded and synthesized."""

    # --- requests ---

    def request(self, text: str, options: SpeechOptions | None = None) -> SpeechRequest:
        """Validate text and options into a SpeechRequest (ValidationFailed / VoiceNotFound otherwise)."""
        options = options or SpeechOptions()
        clean = text.strip()
        if not clean:
            raise ValidationFailed("text is empty")
        if len(clean) > self.settings.max_text_chars:
            raise ValidationFailed(
                f"text is {len(clean)} characters; the limit is {self.settings.max_text_chars}",
                limit=self.settings.max_text_chars,
            )
        voice = self.registry.select(options.voice, options.language)
        speaker_id = voice.resolve_speaker(options.speaker)
        length_scale = None
        if options.speed is not None:
            base = float(voice.config_dict.get("inference", {}).get("length_scale", 1.0))
            length_scale = base / options.speed
        return SpeechRequest(
            text=clean,
            voice=voice,
            speaker_id=speaker_id,
            length_scale=length_scale,
            noise_scale=options.noise_scale,
            noise_w=options.noise_w,
            volume=options.volume,
            sentence_silence=options.sentence_silence,
        )

    # --- blocking core (worker threads) ---

    def load(self, voice: VoiceEntry) -> LoadedVoice:
        return self.cache.get(voice)

    def iter_chunks(self, req: SpeechRequest) -> Generator[SpeechChunk, None, None]:
        """Synthesize sentence by sentence; blocking, so drive it from a worker thread."""
        voice = self.load(req.voice)
        syn_config = req.synthesis_config(voice)
        limit = self.settings.max_sentence_phonemes
        seq = 0
        for sentence in split_sentences(req.text):
            sentence_phonemes = self._phonemize(voice, sentence)
            for phonemes in sentence_phonemes:
                for piece in cut_phonemes(phonemes, limit):
                    pcm = self._synthesize_phonemes(voice, piece, syn_config)
                    if pcm.size == 0:
                        continue
                    if seq > 0 and req.sentence_silence > 0:
                        pcm = np.concatenate([silence(req.sentence_silence, voice.sample_rate), pcm])
                    yield SpeechChunk(seq=seq, text=sentence, pcm=pcm, sample_rate=voice.sample_rate)
                    seq += 1

    def iter_stream_chunks(self, req: SpeechRequest) -> Generator[SpeechChunk, None, None]:
        """Like `iter_chunks`, but long sentences come in pieces, the first one small, for early first audio.

        The pieces concatenate to the whole-sentence decode. They carry the voice's fixed gain rather than
        per-sentence peak normalisation, which would need the whole sentence first. Voices that cannot be
        split fall back to `iter_chunks`.
        """
        voice = self.load(req.voice)
        chunked = self.chunked.get(voice)
        if chunked is None:
            yield from self.iter_chunks(req)
            return
        seq = 0
        for sentence in split_sentences(req.text):
            sentence_phonemes = self._phonemize(voice, sentence)
            pieces = [p for ph in sentence_phonemes for p in cut_phonemes(ph, self.settings.max_sentence_phonemes)]
            for n, piece in enumerate(pieces):
                parts = chunked.iter_audio(
                    voice.piper.phonemes_to_ids(piece),
                    noise_scale=req.noise_scale,
                    length_scale=req.length_scale,
                    noise_w=req.noise_w,
                    speaker_id=req.speaker_id,
                    # Only the first audio waits on the listener; later sentences are made while earlier ones
                    # play, so they decode whole and cost no more than non-streamed synthesis.
                    schedule=self.schedule if seq == 0 else WHOLE,
                )
                first = True
                while True:
                    try:
                        item = next(parts, None)
                    except Exception as exc:  # onnxruntime raises its own exception types
                        raise SynthesisFailed(f"the voice model failed ({type(exc).__name__})") from exc
                    if item is None:
                        break
                    audio, last = item
                    pcm = float_to_int16(audio * (chunked.gain * req.volume))
                    if pcm.size == 0:
                        continue
                    if first and seq > 0 and req.sentence_silence > 0:
                        pcm = np.concatenate([silence(req.sentence_silence, voice.sample_rate), pcm])
                    first = False
                    end = last and n == len(pieces) - 1
                    yield SpeechChunk(seq, sentence, pcm, voice.sample_rate, sentence_end=end)
                    seq += 1

    @staticmethod
    def _phonemize(voice: LoadedVoice, sentence: str) -> list[list[str]]:
        try:
            phonemes: list[list[str]] = voice.piper.phonemize(sentence)
        except Exception as exc:  # espeak-ng reports failures as plain exceptions
            raise SynthesisFailed(f"phonemization failed ({type(exc).__name__})") from exc
        return phonemes

    @staticmethod
    def _synthesize_phonemes(voice: LoadedVoice, phonemes: list[str], syn_config: SynthesisConfig) -> Int16Array:
        ids = voice.piper.phonemes_to_ids(phonemes)
        try:
            audio = voice.piper.phoneme_ids_to_audio(ids, syn_config)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SynthesisFailed(f"the voice model failed ({type(exc).__name__})") from exc
        assert isinstance(audio, np.ndarray)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        audio = audio / peak if peak > 1e-8 else np.zeros_like(audio)
        if syn_config.volume != 1.0:
            audio = audio * syn_config.volume
        return float_to_int16(audio.astype(np.float32))

    def synthesize_blocking(self, req: SpeechRequest) -> Speech:
        started = time.perf_counter()
        chunks = list(self.iter_chunks(req))
        if not chunks:
            raise ValidationFailed("text contains nothing to speak")
        pcm = np.concatenate([c.pcm for c in chunks])
        return Speech(
            pcm=pcm,
            sample_rate=chunks[0].sample_rate,
            voice_id=req.voice.id,
            chunks=len(chunks),
            synthesis_seconds=time.perf_counter() - started,
        )

    # --- async API (event loop) ---

    @cached_speech
    async def synthesize(self, req: SpeechRequest) -> Speech:
        """The whole text as one PCM array."""
        with self.pool.admit():
            return await self.pool.run(self.synthesize_blocking, req)

    @cached_stream
    async def stream(self, req: SpeechRequest) -> AsyncGenerator[SpeechChunk, None]:
        """Chunks as they are made. Stopping iteration stops synthesis after the chunk in progress."""
        with self.pool.admit():
            chunks = self.iter_stream_chunks(req)
            try:
                while True:
                    chunk = await self.pool.run(next, chunks, None)
                    if chunk is None:
                        return
                    yield chunk
            finally:
                # A cancelled await leaves the generator running on its worker for the current chunk; it is
                # then closed when collected, so "already executing" here is expected and harmless.
                with contextlib.suppress(ValueError):
                    chunks.close()

    async def loaded_voice(self, voice: VoiceEntry) -> LoadedVoice:
        return await self.pool.run(self.load, voice)

    async def warm(self) -> None:
        """Load the default voice and synthesize once, so the first real request is not a cold one."""
        req = self.request(_WARMUP_TEXT)
        await self.synthesize(req)
        await self.pool.run(self.prepare_streaming)
        self.warmed = True

    def prepare_streaming(self) -> None:
        """Split the default voice for chunked decoding now (once; cached on disk), not on the first stream."""
        self.chunked.get(self.load(self.registry.voices[self.registry.default_voice]))

    def warm_blocking(self) -> None:
        """`warm` for callers without an event loop (Lambda init)."""
        self.synthesize_blocking(self.request(_WARMUP_TEXT))
        self.warmed = True

    def ready(self) -> bool:
        return self.warmed and self.cache.peek(self.registry.default_voice) is not None


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (created on first use; in Lambda, during init)."""
    return Engine(get_settings())
