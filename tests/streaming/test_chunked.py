"""Chunked decoding: the first audio comes from a small chunk, and the pieces equal one whole decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from piper.config import SynthesisConfig

from tts_service.engine import Engine, SpeechOptions
from tts_service.engine.audio import float_to_int16
from tts_service.engine.chunked import MARGIN_CANDIDATES, ChunkedVoices, Schedule

LONG = (
    "The committee met on Tuesday afternoon to discuss the proposed changes to the city budget, and after "
    "several hours of heated debate the members finally agreed to postpone the vote until next month."
)


def test_schedule_starts_small_then_covers_everything() -> None:
    schedule = Schedule(first_frames=24, chunk_frames=512, min_split_frames=160)
    assert schedule.cuts(100) == [(0, 100)]
    cuts = schedule.cuts(1300)
    assert cuts[0] == (0, 24)
    assert all(a == prev_b for (_, prev_b), (a, _) in zip(cuts, cuts[1:], strict=False))
    assert cuts[-1][1] == 1300 and max(b - a for a, b in cuts) <= 512


def test_chunked_audio_equals_whole_sentence_audio(engine: Engine) -> None:
    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    chunked = engine.chunked.get(voice)
    assert chunked is not None
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(LONG)[0])
    whole = voice.piper.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    pieces = [audio for audio, _ in chunked.iter_audio(ids, noise_scale=0.0, noise_w=0.0, schedule=engine.schedule)]
    assert len(pieces) >= 2 and pieces[0].size == engine.schedule.first_frames * chunked.hop
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    assert float(np.max(np.abs(streamed - whole))) < 2e-5  # float noise (7.5e-6 measured), not a seam
    assert chunked.margin in MARGIN_CANDIDATES


def test_engine_stream_chunks_equal_whole_sentence_pcm(engine: Engine) -> None:
    req = engine.request(LONG, SpeechOptions(noise_scale=0.0, noise_w=0.0))
    chunks = list(engine.iter_stream_chunks(req))
    assert len(chunks) >= 2
    assert [c.sentence_end for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[0].pcm.size < chunks[1].pcm.size  # the small first chunk: early audio
    voice = engine.load(req.voice)
    chunked = engine.chunked.get(voice)
    assert chunked is not None
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(LONG)[0])
    whole = voice.piper.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    expected = float_to_int16(whole * chunked.gain).astype(np.int32)
    streamed = np.concatenate([c.pcm for c in chunks]).astype(np.int32)
    assert streamed.shape == expected.shape
    assert int(np.max(np.abs(streamed - expected))) <= 2  # int16 rounding of float-identical audio


def test_streamed_duration_matches_tts(engine: Engine) -> None:
    req = engine.request(LONG + " Then everyone went home.", SpeechOptions(noise_w=0.0))
    streamed = sum(c.pcm.size for c in engine.iter_stream_chunks(req))
    whole = engine.synthesize_blocking(req).pcm.size
    assert abs(streamed - whole) / whole < 0.02


def test_split_failure_falls_back_to_whole_sentences(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streaming_vits import graph

    def refuse(*_: object, **__: object) -> None:
        raise ValueError("no RandomNormalLike node found -- is this a VITS export?")

    monkeypatch.setattr(graph, "split", refuse)
    broken = ChunkedVoices(tmp_path / "cache", engine.settings.ort_intra_op_threads)
    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    assert broken.get(voice) is None
    assert broken.get(voice) is None  # remembered: no second attempt per request
    monkeypatch.setattr(engine, "chunked", broken)
    chunks = list(engine.iter_stream_chunks(engine.request(LONG)))
    assert len(chunks) == 1 and chunks[0].sentence_end and chunks[0].pcm.size > 22050 * 5


def test_unwritable_cache_dir_falls_back_to_temp_dir(engine: Engine, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    voices = ChunkedVoices(not_a_dir / "cache", engine.settings.ort_intra_op_threads)
    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    chunked = voices.get(voice)
    assert chunked is not None and chunked.gain > 1.0
