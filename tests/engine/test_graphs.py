"""Split graphs: windowed decoding equals Piper's own graph, and the graph cache is verified and private."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from piper import PiperVoice
from piper.config import SynthesisConfig
from streaming_vits import graph

from tts_service.engine import Engine, SpeechOptions
from tts_service.engine.audio import FloatArray, float_to_int16
from tts_service.engine.graphs import (
    HEAD,
    MARGIN_CANDIDATES,
    GraphCacheError,
    cuts,
    fallback_root,
    private_dir,
    split_files,
)
from tts_service.engine.pipeline import FIRST_COVER, FIRST_MAX_GROWTH
from tts_service.engine.voices import HEAD_SPIN_US, LoadedVoice, SessionSettings, load_voice

LONG = (
    "The committee met on Tuesday afternoon to discuss the proposed changes to the city budget, and after "
    "several hours of heated debate the members finally agreed to postpone the vote until next month."
)


@pytest.fixture(scope="module")
def stock(engine: Engine) -> PiperVoice:
    """Piper's own whole graph, loaded the stock way: the reference every decode must match."""
    entry = engine.registry.voices[engine.registry.default_voice]
    return PiperVoice.load(entry.model.path, config_path=entry.config.path)


@pytest.fixture(scope="module")
def voice(engine: Engine) -> LoadedVoice:
    return engine.load(engine.registry.voices[engine.registry.default_voice])


def test_cuts_start_small_then_cover_everything_in_bounded_windows() -> None:
    assert cuts(100, 512) == [(0, 100)]
    assert cuts(100, 512, first=24) == [(0, 24), (24, 100)]
    assert cuts(20, 512, first=24) == [(0, 20)]
    ranges = cuts(1300, 512, first=24)
    assert ranges[0] == (0, 24)
    assert all(a == prev_b for (_, prev_b), (a, _) in zip(ranges, ranges[1:], strict=False))
    assert ranges[-1][1] == 1300
    assert max(b - a for a, b in ranges) <= 512
    sizes = [b - a for a, b in cuts(1100, 512)]
    assert len(sizes) == 3
    assert max(sizes) - min(sizes) <= 1  # even windows, no tiny tail


def test_windowed_decode_equals_piper_whole_graph(voice: LoadedVoice, stock: PiperVoice) -> None:
    graphs = voice.graphs
    assert graphs is not None
    assert voice.piper.session is None  # no second copy of the whole model
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(LONG)[0])
    whole = stock.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    assert isinstance(whole, np.ndarray)  # (audio, alignments) only when alignments are asked for
    z_p, mask, g, _ = graphs.frontend(0, ids, graphs.scales(0.0, None, 0.0), None)
    ranges = cuts(int(z_p.shape[2]), 128, first=24)
    assert len(ranges) >= 4
    decoded = np.concatenate([graphs.decode(0, z_p, mask, g, a, b) for a, b in ranges])
    assert decoded.shape == whole.shape
    assert float(np.max(np.abs(decoded - whole))) < 2e-5  # float noise (7.5e-7 measured), not a seam
    assert graphs.margin in MARGIN_CANDIDATES


def memory_owner(array: np.ndarray) -> object:
    """What finally holds an array's memory: None when numpy does, onnxruntime's value when it is a view of it."""
    base = array.base
    while isinstance(base, np.ndarray):
        if base.base is None:
            return None
        base = base.base
    return base


def test_outputs_are_copied_off_the_arena_so_held_audio_never_pins_it(voice: LoadedVoice) -> None:
    # GIVEN onnxruntime, whose outputs are views of its arena: one still held keeps its whole region from the trim
    graphs = voice.graphs
    assert graphs is not None
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(LONG)[0])
    raw = graphs.sessions[0][0].run(None, graphs._frontend_feed(ids, graphs.scales(None, None, None), None))
    assert memory_owner(raw[0]) is not None  # the premise: a view of onnxruntime's memory
    # WHEN a sentence goes through the frontend and a window of it is decoded, and the arena is then trimmed
    z_p, mask, g, durations = graphs.frontend(0, ids, graphs.scales(None, None, None), None)
    audio = graphs.decode(0, z_p, mask, g, 24, 80)
    held = audio.copy()
    graphs.trim()
    # THEN everything handed back is numpy's own memory, and the audio still held is intact after the trim
    for array in (z_p, mask, g, durations, audio):
        assert array is None or memory_owner(array) is None
    assert audio.shape == (56 * graphs.hop,)
    assert np.array_equal(audio, held)
    assert float(np.sqrt(np.mean(audio**2))) > 1e-3


def test_every_worker_has_its_own_sessions(engine: Engine, voice: LoadedVoice) -> None:
    assert voice.graphs is not None
    sessions = voice.graphs.sessions
    assert len(sessions) == engine.settings.synth_workers
    assert len({id(decoder) for _, decoder in sessions}) == len(sessions)


def test_the_head_sessions_spin_within_a_run_and_stop_after_it(engine: Engine, voice: LoadedVoice) -> None:
    """Spinning between operators makes the head's runs shorter; left spinning after a run, its threads would take
    the core of whatever job starts next."""
    assert voice.graphs is not None
    cores = engine.settings.synth_workers * engine.settings.ort_intra_op_threads
    assert cores > 1, "this machine's settings give the head no threads of its own"
    for session in voice.graphs.head:
        options = session.get_session_options()
        assert options.intra_op_num_threads == cores
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
        assert options.get_session_config_entry("session.intra_op.spin_duration_us") == str(HEAD_SPIN_US)


def test_tts_audio_is_piper_audio_per_piece(engine: Engine, stock: PiperVoice) -> None:
    """/tts pieces are peak-normalised as Piper normalises its own output."""
    req = engine.request(LONG, SpeechOptions(noise_scale=0.0, noise_w=0.0))
    speech = engine.synthesize_blocking(req)
    ids = stock.phonemes_to_ids(stock.phonemize(LONG)[0])
    audio = stock.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    assert isinstance(audio, np.ndarray)  # (audio, alignments) only when alignments are asked for
    expected = float_to_int16(cast(FloatArray, audio / np.max(np.abs(audio)))).astype(np.int32)
    assert speech.pcm.shape == expected.shape
    assert int(np.max(np.abs(speech.pcm.astype(np.int32) - expected))) <= 2


def test_stream_chunks_equal_whole_decode_at_fixed_gain(engine: Engine, stock: PiperVoice) -> None:
    # At half volume no peak reaches the limiter's ceiling, so the chunks must be the whole decode exactly.
    req = engine.request(LONG, SpeechOptions(noise_scale=0.0, noise_w=0.0, volume=0.5))
    chunks = list(engine.iter_stream_chunks(req))
    assert len(chunks) >= 2
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.sentence_end for c in chunks] == [False] * (len(chunks) - 1) + [True]
    first = engine.settings.stream_first_chunk_frames
    assert first * 256 <= chunks[0].pcm.size <= FIRST_MAX_GROWTH * first * 256  # a small first window
    voice = engine.load(req.voice)
    assert voice.graphs is not None
    ids = stock.phonemes_to_ids(stock.phonemize(LONG)[0])
    whole = stock.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    assert isinstance(whole, np.ndarray)  # (audio, alignments) only when alignments are asked for
    expected = float_to_int16(cast(FloatArray, whole * voice.graphs.gain * 0.5)).astype(np.int32)
    streamed = np.concatenate([c.pcm for c in chunks]).astype(np.int32)
    assert streamed.shape == expected.shape
    assert int(np.max(np.abs(streamed - expected))) <= 2  # int16 rounding of float-identical audio


def _first_two_chunks(engine: Engine, text: str) -> tuple[int, int]:
    """Frames of a stream's first two chunks."""
    req = engine.request(text, SpeechOptions(noise_w=0.0))
    sizes = [c.pcm.size // 256 for c in engine.iter_stream_chunks(req)]
    return sizes[0], sizes[1]


@pytest.mark.parametrize("pace", [0.8e-3, 1.2e-3])
def test_a_long_first_sentence_plays_its_first_chunk_while_the_next_window_decodes(
    engine: Engine, voice: LoadedVoice, monkeypatch: pytest.MonkeyPatch, pace: float
) -> None:
    """With 24 frames the first chunk of a long sentence ended before the second was decoded: a stall."""
    graphs = voice.graphs
    assert graphs is not None
    # The pace a worker's decode takes per frame, held (a decode would update it as it goes).
    monkeypatch.setattr(type(graphs), "seconds_per_frame", property(lambda _: pace, lambda *_: None), raising=False)
    first, second = _first_two_chunks(engine, LONG)
    base = engine.settings.stream_first_chunk_frames
    plays = first * graphs.hop / graphs.sample_rate
    decoding = (second + 2 * graphs.margin) * pace
    assert plays >= FIRST_COVER * decoding * 0.99  # rounding to whole frames
    assert base < first <= FIRST_MAX_GROWTH * base


def test_the_first_window_stays_small_when_the_next_one_decodes_in_time(
    engine: Engine, voice: LoadedVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs = voice.graphs
    assert graphs is not None
    base = engine.settings.stream_first_chunk_frames
    short = "The bells rang twice before noon."
    monkeypatch.setattr(type(graphs), "seconds_per_frame", property(lambda _: 0.4e-3, lambda *_: None), raising=False)
    assert _first_two_chunks(engine, short)[0] == base
    # No pace known yet (a fresh process): the configured size.
    monkeypatch.setattr(type(graphs), "seconds_per_frame", property(lambda _: None, lambda *_: None), raising=False)
    assert _first_two_chunks(engine, LONG)[0] == base
    # A decoder far too slow to keep up: the first window grows only so far, first audio stays early.
    monkeypatch.setattr(type(graphs), "seconds_per_frame", property(lambda _: 1.0, lambda *_: None), raising=False)
    assert _first_two_chunks(engine, LONG)[0] == FIRST_MAX_GROWTH * base
    # Nor past the decode window, which bounds every decoder run's memory.
    monkeypatch.setattr(engine, "stream_plan", dataclasses.replace(engine.stream_plan, window=64))
    assert _first_two_chunks(engine, LONG)[0] == 64


def test_worker_decodes_teach_the_pace_and_head_decodes_do_not(voice: LoadedVoice) -> None:
    graphs = voice.graphs
    assert graphs is not None
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(LONG)[0])
    z_p, mask, g, _ = graphs.frontend(0, ids, graphs.scales(None, None, None), None)
    graphs.seconds_per_frame = None
    graphs.decode(HEAD, z_p, mask, g, 0, 300)
    assert graphs.seconds_per_frame is None  # all cores: not the pace of a worker's window
    graphs.decode(0, z_p, mask, g, 0, 300)
    learned = graphs.seconds_per_frame
    assert learned is not None
    assert 1e-5 < learned < 0.05  # 0.6 ms per frame on a 2-core VM; anything in range is a sane measure
    graphs.decode(0, z_p, mask, g, 0, 40)  # mostly fixed cost: not a measure of the pace
    assert graphs.seconds_per_frame == learned


def test_streamed_duration_matches_tts(engine: Engine) -> None:
    req = engine.request(LONG + " Then everyone went home.", SpeechOptions(noise_w=0.0))
    streamed = sum(c.pcm.size for c in engine.iter_stream_chunks(req))
    whole = engine.synthesize_blocking(req).pcm.size
    assert abs(streamed - whole) / whole < 0.02


def test_slow_speech_is_decoded_in_bounded_windows(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames per decoder run never exceed the window, however slow the speech (the arena's bound)."""
    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    assert voice.graphs is not None
    runs: list[int] = []
    original = type(voice.graphs)._decode

    def spy(self, worker, z_p, mask, g, a, b, *, margin):  # type: ignore[no-untyped-def]
        runs.append(min(z_p.shape[2], b + margin) - max(0, a - margin))
        return original(self, worker, z_p, mask, g, a, b, margin=margin)

    monkeypatch.setattr(type(voice.graphs), "_decode", spy)
    speech = engine.synthesize_blocking(engine.request(LONG, SpeechOptions(speed=0.25)))
    assert speech.pcm.size / 22050 > 30
    assert len(runs) > 2
    assert max(runs) <= engine.settings.decode_window_frames + 2 * voice.graphs.margin


def _settings(engine: Engine, root: Path | None) -> SessionSettings:
    return SessionSettings(intra_op_threads=1, workers=1, graphs_dir=root)


def test_split_failure_falls_back_to_whole_graph(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise ValueError("no RandomNormalLike node found -- is this a VITS export?")

    monkeypatch.setattr(graph, "split", refuse)
    entry = engine.registry.voices[engine.registry.default_voice]
    fallback = load_voice(entry, _settings(engine, tmp_path / "cache"))
    assert fallback.graphs is None
    assert fallback.piper.session is not None
    small = Engine(engine.settings, registry=engine.registry)
    small.voice_cache._voices[entry.id] = fallback
    chunks = list(small.iter_stream_chunks(small.request(LONG)))
    assert len(chunks) == 1
    assert chunks[0].sentence_end
    assert chunks[0].pcm.size > 22050 * 5
    small.pool.shutdown()


def test_tampered_graph_is_rebuilt_not_loaded(engine: Engine, tmp_path: Path) -> None:
    entry = engine.registry.voices[engine.registry.default_voice]
    model = entry.model.path.read_bytes()
    first = split_files(model, entry.id, 22050, tmp_path / "cache")
    folder = next((tmp_path / "cache").iterdir())
    decoder = next(folder.glob("*decoder*.onnx"))
    decoder.write_bytes(decoder.read_bytes()[:1000])  # truncated, or swapped by someone
    again = split_files(model, entry.id, 22050, tmp_path / "cache")
    assert again.decoder == first.decoder  # split anew from the verified model, not read from the bad file


def test_graph_cache_must_be_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(GraphCacheError):
        private_dir(shared)
    mine = private_dir(tmp_path / "mine")
    assert stat.S_IMODE(mine.stat().st_mode) & 0o077 == 0


def test_unusable_cache_dir_falls_back_to_a_fresh_private_temp_dir(engine: Engine, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    entry = engine.registry.voices[engine.registry.default_voice]
    loaded = load_voice(entry, _settings(engine, not_a_dir / "cache"))
    assert loaded.graphs is not None
    assert loaded.graphs.gain > 1.0

    root = fallback_root()
    assert root.name.startswith("tts-service-graphs-")
    assert root.name != "tts-service-graphs-"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
