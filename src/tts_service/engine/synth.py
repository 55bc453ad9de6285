"""The Piper engine: validated speech requests in, 16-bit PCM out, whole or one chunk at a time."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Iterator
from functools import lru_cache

import numpy as np

from tts_service.config import Settings, get_settings
from tts_service.engine.audio import float_to_int16
from tts_service.engine.cache import AudioCache
from tts_service.engine.estimate import min_audio_seconds
from tts_service.engine.loudness import to_loudness
from tts_service.engine.options import SpeechOptions
from tts_service.engine.pipeline import Plan, Synthesis
from tts_service.engine.pool import WorkerPool
from tts_service.engine.registry import VoiceEntry, VoiceRegistry
from tts_service.engine.speech import Speech, SpeechChunk, SpeechRequest
from tts_service.engine.voices import LoadedVoice, SessionSettings, VoiceCache
from tts_service.errors import AudioTooLong, ValidationFailed
from tts_service.observability import Metrics, get_metrics

logger = logging.getLogger(__name__)

_WARMUP_TEXT = "Ready."
_CONTROL = frozenset(chr(c) for c in [*range(0, 32), 127])
_CONTROL_TO_SPACE = {ord(c): " " for c in _CONTROL}


class Engine:
    """Voice selection, option validation and synthesis on a bounded worker pool."""

    def __init__(
        self, settings: Settings, registry: VoiceRegistry | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or get_metrics()
        self.registry = registry or VoiceRegistry.from_file(settings.voice_map_path)
        self.voice_cache = VoiceCache(
            settings.voice_cache_size,
            SessionSettings(
                intra_op_threads=settings.ort_intra_op_threads,
                workers=settings.synth_workers,
                cores=settings.synth_workers * settings.ort_intra_op_threads,
                allow_spinning=settings.ort_allow_spinning,
                verify_hashes=settings.verify_voice_hashes,
                espeak_data_dir=settings.espeak_data_dir,
                graphs_dir=settings.stream_cache_dir if settings.stream_chunked_decode else None,
            ),
            pinned=frozenset({self.registry.default_voice}),
        )
        """Loaded voices (LRU), each split into graphs with a session pair per worker."""
        self.pool = WorkerPool(settings.synth_workers, settings.synth_queue_size, self.metrics)
        self.pool.idle_delay = settings.arena_trim_idle_secs
        self._on_idle = self._trim if settings.arena_trim_idle_secs > 0 else None
        self.audio_cache = AudioCache(int(settings.tts_cache_mb * 2**20), self.metrics)
        """Finished audio by request (text, voice, options), shared by `synthesize` and `stream`."""
        self.metrics.watch_engine(
            lambda: len(self.voice_cache.loaded_ids()), lambda: self.pool.admitted, self.pool.capacity
        )
        # Two pieces per worker in flight: a piece that finishes early never leaves its worker idle while an
        # earlier one is still decoding; what waits is small (a piece's frontend output and audio).
        lookahead = 2 * settings.synth_workers
        self.plan = Plan(
            settings.max_sentence_phonemes,
            settings.decode_window_frames,
            lookahead,
            max_seconds=settings.max_audio_seconds,
        )
        """Whole syntheses: pieces spread over the workers, each decoded in bounded windows."""
        self.stream_plan = dataclasses.replace(self.plan, first_frames=settings.stream_first_chunk_frames)
        """Streams: the same, with a small first window delivered alone."""
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
        if any(ch in _CONTROL for ch in clean):
            # Control characters speak as nothing and have crashed espeak-ng; tabs and newlines are spacing.
            clean = clean.translate(_CONTROL_TO_SPACE).strip()
            if not clean:
                raise ValidationFailed("text is empty")
        voice = self.registry.select(options.voice, options.language)
        speaker_id = voice.resolve_speaker(options.speaker)
        length_scale = None
        if options.speed is not None:
            base = float(voice.config_dict.get("inference", {}).get("length_scale", 1.0))
            length_scale = base / options.speed
        return self._check_budget(
            SpeechRequest(
                text=clean,
                voice=voice,
                speaker_id=speaker_id,
                length_scale=length_scale,
                noise_scale=options.noise_scale,
                noise_w=options.noise_w,
                volume=options.volume,
                sentence_silence=options.sentence_silence,
                loudness=options.loudness,
            )
        )

    def _check_budget(self, req: SpeechRequest) -> SpeechRequest:
        """Refuse up front what will surely speak longer than MAX_AUDIO_SECONDS, before any work is paid for.

        The estimate is a floor (`engine/estimate.py`), so nothing that could fit is refused; synthesis enforces
        the budget exactly as audio is made.
        """
        least = min_audio_seconds(req)
        limit = self.settings.max_audio_seconds
        if least > limit:
            raise AudioTooLong(
                f"this text would speak for at least {least:.0f} s; the limit is {limit:g} s "
                "(MAX_AUDIO_SECONDS): send less text, or a faster speed or shorter silences",
                limit_seconds=limit,
            )
        return req

    # --- blocking API (Lambda handlers, tools; never from a worker thread) ---

    def load(self, voice: VoiceEntry) -> LoadedVoice:
        return self.voice_cache.get(voice)

    def synthesis(self, req: SpeechRequest, *, streamed: bool = False) -> Synthesis:
        """The request's chunks, to iterate (blocking) or `async for`, once. Loads the voice if needed."""
        return Synthesis(req, self.load(req.voice), self.pool, self.stream_plan if streamed else self.plan)

    def iter_chunks(self, req: SpeechRequest) -> Iterator[SpeechChunk]:
        """Whole pieces (peak-normalised each), numbered in order."""
        for seq, chunk in enumerate(self.synthesis(req)):
            chunk.seq = seq
            yield chunk

    def iter_stream_chunks(self, req: SpeechRequest) -> Iterator[SpeechChunk]:
        """Chunks for streaming: the first one small, all at the voice's fixed gain, numbered in order.

        They concatenate to the whole-piece decode at that gain; per-piece peak normalisation would need the
        whole piece first.
        """
        for seq, chunk in enumerate(self.synthesis(req, streamed=True)):
            chunk.seq = seq
            yield chunk

    def synthesize_blocking(self, req: SpeechRequest) -> Speech:
        started = time.perf_counter()
        return self._loud(req, self._speech(req, list(self.iter_chunks(req)), started))

    @staticmethod
    def _loud(req: SpeechRequest, speech: Speech) -> Speech:
        """The whole answer at the request's loudness target, if it has one (blocking: a worker's job)."""
        if req.loudness is not None:
            audio = speech.pcm.astype(np.float32) / 32767.0
            speech.pcm = float_to_int16(to_loudness(audio, speech.sample_rate, req.loudness))
        return speech

    def _speech(self, req: SpeechRequest, chunks: list[SpeechChunk], started: float) -> Speech:
        if not chunks:
            raise ValidationFailed("text contains nothing to speak")
        return Speech.joined(req.voice.id, chunks, time.perf_counter() - started)

    # --- async API (event loop) ---

    async def synthesize(self, req: SpeechRequest) -> Speech:
        """The whole text as one PCM array: from the audio cache without the worker pool, else made and stored."""
        cached = self.audio_cache.get(req)
        if cached is not None:
            return Speech.joined(req.voice.id, cached, 0.0)
        speech = await self._synthesize(req)
        self.metrics.observe_synthesis(speech.voice_id, speech.synthesis_seconds, speech.duration_ms / 1000)
        if self.audio_cache.fits(speech.pcm.nbytes):
            # A copy: the caller owns the returned array and may change it.
            chunk = SpeechChunk(0, req.text, speech.pcm.copy(), speech.sample_rate, words=speech.words)
            self.audio_cache.put(req, [chunk])
        return speech

    async def _synthesize(self, req: SpeechRequest) -> Speech:
        with self.pool.admit(on_idle=self._on_idle):
            started = time.perf_counter()
            voice = await self.loaded_voice(req.voice)
            chunks = [chunk async for chunk in Synthesis(req, voice, self.pool, self.plan)]
            speech = self._speech(req, chunks, started)
            return speech if req.loudness is None else await self.pool.run(self._loud, req, speech)

    def _trim(self) -> None:
        """Synthesis went idle: release the arena's peak, on a worker.

        Every voice's split sessions take from one process-wide arena (`engine/voices.py`), so one voice's
        shrinking run gives back what all of them used: the first voice with split graphs does it.
        """
        for voice_id in self.voice_cache.loaded_ids():
            voice = self.voice_cache.peek(voice_id)
            if voice is not None and voice.graphs is not None:
                voice.graphs.trim()
                return

    async def stream(self, req: SpeechRequest) -> AsyncGenerator[SpeechChunk, None]:
        """Chunks as they are made, or replayed at once from the audio cache; a complete stream is stored.

        Times the first audio and the synthesis (the time spent waiting for the engine, not for the consumer).
        Stopping iteration stops synthesis after the pieces in progress.
        """
        started = time.perf_counter()
        cached = self.audio_cache.get(req)
        if cached is not None:
            self.metrics.observe_ttfa(req.voice.id, time.perf_counter() - started)
            for chunk in cached:
                yield chunk
            return
        source = self._stream(req)
        recorder = self.audio_cache.recorder(req)
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
                recorder.add(chunk)
                yield chunk
        finally:
            await source.aclose()
            if audio_seconds:
                self.metrics.observe_synthesis(req.voice.id, busy, audio_seconds)
            if complete:
                recorder.store()

    async def _stream(self, req: SpeechRequest) -> AsyncGenerator[SpeechChunk, None]:
        with self.pool.admit(on_idle=self._on_idle):
            voice = await self.loaded_voice(req.voice)
            synthesis = Synthesis(req, voice, self.pool, self.stream_plan)
            try:
                seq = 0
                async for chunk in synthesis:
                    chunk.seq = seq
                    seq += 1
                    yield chunk
            finally:
                synthesis.close()

    async def loaded_voice(self, voice: VoiceEntry) -> LoadedVoice:
        loaded = self.voice_cache.peek(voice.id)
        return loaded if loaded is not None else await self.pool.run(self.load, voice)

    async def warm(self) -> None:
        """Load the default voice and synthesize once, so the first real request is not a cold one."""
        await self.synthesize(self.request(_WARMUP_TEXT))
        self.warmed = True

    def warm_blocking(self) -> None:
        """`warm` for callers without an event loop (Lambda init, image builds)."""
        self.synthesize_blocking(self.request(_WARMUP_TEXT))
        self.warmed = True

    def bake(self) -> None:
        """Split every registered voice into the graph cache at image build time, readable by any user.

        Images are built as root and run as another user (Lambda's, or a non-root container), which must read
        the graphs but never needs to write them; a cold start then loads graphs instead of splitting for seconds.
        """
        for entry in self.registry.voices.values():
            self.load(entry)
        self.warm_blocking()
        root = self.settings.stream_cache_dir
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)

    def ready(self) -> bool:
        return self.warmed and self.voice_cache.peek(self.registry.default_voice) is not None


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (created on first use; in Lambda, during init)."""
    return Engine(get_settings())
