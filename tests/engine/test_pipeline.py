"""Where a request's pieces are decoded: a piece that would otherwise keep one core busy while the others wait
is split over the idle workers, or, too short to split, decoded on the all-core head sessions."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import pytest

from tts_service.engine import Engine, pipeline
from tts_service.engine.graphs import HEAD
from tts_service.engine.pipeline import Synthesis
from tts_service.engine.pool import WorkerPool, current_worker

LONG = "The committee reviewed every proposal carefully, weighing the costs, the risks and the benefits of each"
SHORT = "Then it voted."
FORTY = (
    "When the morning train finally pulled into the quiet little station beside the river, the travellers who had "
    "waited through the long cold night gathered their bags and walked slowly towards the old wooden platform"
)


def decodes(
    engine: Engine, text: str, monkeypatch: pytest.MonkeyPatch, *, stream: bool = False, hold: bool = False
) -> tuple[list[list[int]], list[int], int]:
    """Synthesize (or `stream`) `text` alone, or with one worker held busy by another job (`hold`): per piece,
    longest first, the session index of each decode window (HEAD for the head sessions); where each frontend
    ran; and the samples made."""
    windows: dict[int, list[int]] = {}
    frames: dict[int, int] = {}
    frontends: list[int] = []
    decode, frontend = Synthesis._decode, Synthesis._frontend

    def recorded_decode(self: Synthesis, state: Any, a: int, b: int, worker: int | None = None) -> Any:
        windows.setdefault(id(state), []).append(current_worker() if worker is None else worker)
        frames[id(state)] = state.frames
        return decode(self, state, a, b, worker)

    def recorded_frontend(self: Synthesis, ids: list[int], worker: int | None = None) -> Any:
        frontends.append(current_worker() if worker is None else worker)
        return frontend(self, ids, worker)

    monkeypatch.setattr(engine.audio_cache, "get", lambda _req: None)  # synthesized every time, never replayed
    monkeypatch.setattr(Synthesis, "_decode", recorded_decode)
    monkeypatch.setattr(Synthesis, "_frontend", recorded_frontend)
    # "Alone" means every worker idle: let the previous test's last jobs finish, and its idle trim, which a timer
    # queues `idle_delay` after it ended and which would take a worker from under this request, come and go.
    time.sleep(engine.pool.idle_delay + 0.2)
    deadline = time.monotonic() + 10
    while engine.pool.idle_workers < engine.pool.workers and time.monotonic() < deadline:
        time.sleep(0.01)
    release = threading.Event()
    held = engine.pool.submit(release.wait, 30) if hold else None
    try:
        if stream:
            samples = sum(chunk.pcm.size for chunk in engine.iter_stream_chunks(engine.request(text)))
        else:
            samples = int(engine.synthesize_blocking(engine.request(text)).pcm.size)
    finally:
        release.set()
    if held is not None:
        assert held.result(10)  # the other worker really was busy all along
    longest_first = sorted(windows, key=lambda key: -frames[key])
    return [windows[key] for key in longest_first], frontends, samples


def test_a_long_sentence_before_a_short_one_is_not_left_on_one_core(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:4]
    pieces, _, samples = decodes(engine, f"{LONG} {tag}. {SHORT}", monkeypatch)
    assert len(pieces) == 2
    long_piece = pieces[0]
    # The long first sentence is the most work left once both are handed over: the head or both workers take it.
    assert long_piece == [HEAD] or len(set(long_piece)) == 2
    assert samples > 5 * 22050


def test_one_long_sentence_alone_is_decoded_over_every_worker(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:4]
    pieces, frontends, samples = decodes(engine, f"{FORTY} {tag}.", monkeypatch)
    assert frontends == [HEAD]  # the one frontend on all cores
    assert len(pieces) == 1
    # Split over every worker (two 1-thread runs at once beat one 2-thread run), in windows of at most 512 frames.
    assert set(pieces[0]) == set(range(engine.settings.synth_workers))
    assert samples > 8 * 22050


def test_one_short_sentence_alone_is_split_and_a_word_alone_runs_on_the_head(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:4]
    pieces, frontends, _ = decodes(engine, f"A short sentence to say {tag}.", monkeypatch)
    assert frontends == [HEAD]
    assert set(pieces[0]) == set(range(engine.settings.synth_workers))  # ~2 s of audio: worth both workers
    pieces, frontends, _ = decodes(engine, "Yes!", monkeypatch)
    assert frontends == [HEAD]
    assert pieces == [[HEAD]]  # too short to split: the head sessions' threads share it


def test_a_streams_first_window_takes_every_core_only_when_the_others_are_idle(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head sessions' threads spin within a run: beside a busy worker they would take its core."""
    tag = uuid.uuid4().hex[:4]
    pieces, frontends, samples = decodes(engine, f"{LONG} {tag}.", monkeypatch, stream=True)
    assert frontends[0] == HEAD
    assert pieces[0][0] == HEAD  # the first window
    assert samples > 4 * 22050
    pieces, frontends, samples = decodes(engine, f"{LONG} {tag}, again.", monkeypatch, stream=True, hold=True)
    assert frontends[0] in range(engine.settings.synth_workers)
    assert pieces[0][0] == frontends[0]  # the first window on the same worker's own sessions
    assert HEAD not in pieces[0]
    assert samples > 4 * 22050


def test_the_rest_of_a_streams_first_piece_is_spread_only_when_no_piece_follows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every window beyond one pays two margins of decoding; a piece that follows keeps the other workers busy."""
    tag = uuid.uuid4().hex[:4]
    medium = f"The committee reviewed every proposal carefully, weighing the costs and the risks {tag}"  # ~400 frames
    pieces, _, samples = decodes(engine, f"{medium}. {SHORT}", monkeypatch, stream=True)
    assert len(pieces) == 2
    assert pieces[0][0] == HEAD  # the first window
    assert len(pieces[0]) == 2  # then the rest in one window
    assert samples > 4 * 22050
    pieces, _, samples = decodes(engine, f"{medium}, again.", monkeypatch, stream=True)
    assert len(pieces) == 1
    assert pieces[0][0] == HEAD
    assert sorted(pieces[0][1:]) == list(range(engine.settings.synth_workers))  # the rest over every idle worker
    assert samples > 4 * 22050


def test_a_streams_first_window_takes_its_largest_size_while_other_requests_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind other requests' jobs the rest waits its turn, which the decoder's pace does not foresee."""
    sized: list[tuple[int, int]] = []
    first = Synthesis._first

    def recorded_first(self: Synthesis, frames: int) -> int:
        sized.append((frames, first(self, frames)))
        return sized[-1][1]

    monkeypatch.setattr(Synthesis, "_first", recorded_first)
    tag = uuid.uuid4().hex[:4]
    decodes(engine, f"{LONG} {tag}. {SHORT}", monkeypatch, stream=True)
    decodes(engine, f"{LONG} {tag}, again. {SHORT}", monkeypatch, stream=True, hold=True)
    assert engine.stream_plan.first_frames is not None
    largest = pipeline.FIRST_MAX_GROWTH * engine.stream_plan.first_frames
    (alone_frames, alone), (busy_frames, busy) = sized
    assert min(alone_frames, busy_frames) > largest  # both sentences could take the largest first window
    assert alone < largest  # alone, the pace says a smaller one is enough
    assert busy == largest


def test_equal_sentences_keep_single_threaded_workers_until_the_last(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:4]
    sentences = [f"Sentence number {n} of this test {tag} has about the same length as the others." for n in range(6)]
    pieces, _, samples = decodes(engine, " ".join(sentences), monkeypatch)
    assert len(pieces) == 6
    # Six similar pieces keep both workers busy; at most the last two (the work left at the end) use the head.
    assert len([p for p in pieces if HEAD in p]) <= 2
    assert samples > 6 * 22050  # all six were made


def test_a_closed_request_whose_frontend_ends_after_shutdown_fails_quietly(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its decode windows cannot be queued any more, and its slot is gone: nothing is left to tell, nor to log."""
    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    pool = WorkerPool(1, 4)
    running, release = threading.Event(), threading.Event()
    frontend = Synthesis._frontend

    def held_frontend(self: Synthesis, ids: list[int], worker: int | None = None) -> Any:
        running.set()
        release.wait(10)
        return frontend(self, ids, worker)

    monkeypatch.setattr(Synthesis, "_frontend", held_frontend)
    synthesis = Synthesis(engine.request(f"{LONG}. {SHORT}"), voice, pool, engine.plan)
    slots: list[Future[Any]] = []
    synthesis._start(lambda slot: slots.append(slot) if slot is not None else None)
    assert running.wait(10)
    synthesis.close()
    pool.shutdown()
    with caplog.at_level(logging.ERROR):
        release.set()
        deadline = time.monotonic() + 10
        while pool.idle_workers < pool.workers and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the frontend's callbacks run as its future completes
    assert slots
    assert slots[0].cancelled()
    assert not [r for r in caplog.records if r.name == "concurrent.futures"]


def test_the_rest_of_a_streams_first_piece_waits_until_its_first_chunk_is_passed_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued at once, the rest's windows took both cores while the first chunk was still on its way out."""
    marks: dict[str, float] = {}
    head, decode = Synthesis._head, Synthesis._decode

    def timed_head(self: Synthesis, *args: Any) -> Any:
        out = head(self, *args)
        marks.setdefault("head done", time.monotonic())
        return out

    def timed_decode(self: Synthesis, state: Any, a: int, b: int, worker: int | None = None) -> Any:
        if a > 0:
            marks.setdefault("rest starts", time.monotonic())
        return decode(self, state, a, b, worker)

    monkeypatch.setattr(engine.audio_cache, "get", lambda _req: None)
    monkeypatch.setattr(Synthesis, "_head", timed_head)
    monkeypatch.setattr(Synthesis, "_decode", timed_decode)
    # A consumer that takes 5 ms to send a chunk on: the rest starts once it asks for the next one, not before
    chunks = engine.iter_stream_chunks(engine.request(f"{LONG} {uuid.uuid4().hex[:4]}."))
    next(chunks)
    time.sleep(0.005)
    marks["asked again"] = time.monotonic()
    rest = list(chunks)
    assert rest
    assert marks["rest starts"] >= marks["asked again"]
    # A consumer that keeps the first chunk: the rest waits a bounded moment, then starts anyway
    marks.clear()
    chunks = engine.iter_stream_chunks(engine.request(f"{LONG} {uuid.uuid4().hex[:4]}, once more."))
    next(chunks)
    time.sleep(0.5)
    assert "rest starts" in marks
    assert pipeline.FIRST_HANDOVER_SECS * 0.9 <= marks["rest starts"] - marks["head done"] < 0.4
    assert list(chunks)
