"""One request's synthesis: pieces made on the worker pool with a bounded look-ahead, delivered in order.

A conductor thread cuts the text into sentences, phonemizes them (espeak runs under piper's global lock, so
this overlaps with inference on the workers) and cuts over-long sentences into pieces. Each piece becomes a job
on the workers, ranked by its place in the request (`WorkerPool` runs a request's jobs in rank order and
requests in turn); at most `lookahead` pieces of a request wait to be taken, so one request alone keeps every
worker busy while several share the workers. Results come back in order through futures. Closing the
synthesis (client gone, timeout, cancel) stops it between pieces: queued jobs are dropped and the conductor
submits nothing more. A request of one piece on an idle machine runs its frontend on the all-core head
sessions; a lone request's largest remaining piece is decoded over the idle workers in windows, or on the head
sessions when it is too short to split (with the blocked decoder, two 1-thread windows beat one 2-thread run:
`engine/layout.py`).

A streamed request's first piece is decoded in two steps: a small first window, delivered as soon as it is
made, then the rest of the piece in windows (spread over the idle workers when no piece follows). The first
window is long enough to play while the next one decodes, so a long first sentence does not stall after its
first chunk (`Synthesis._first`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from piper.config import SynthesisConfig

from tts_service.engine.audio import FloatArray, Int16Array, float_to_int16, silence
from tts_service.engine.graphs import HEAD, cuts
from tts_service.engine.loudness import gain_for, limit
from tts_service.engine.pool import WorkerPool, current_worker
from tts_service.engine.speech import SpeechChunk, SpeechRequest
from tts_service.engine.text import cut_phonemes, split_sentences
from tts_service.engine.words import WordTiming, owners, sound_spans, sounds_of, text_words, timings, word_groups
from tts_service.errors import AudioTooLong, SynthesisFailed
from tts_service.observability import tracing

if TYPE_CHECKING:
    from tts_service.engine.voices import LoadedVoice


@dataclass(frozen=True)
class Plan:
    """How a request is cut and decoded."""

    max_phonemes: int
    """Longest piece handed to the frontend (bounds its memory and its latency)."""
    window: int
    """Most frames per decoder run (bounds decoder memory whatever the speed)."""
    lookahead: int
    """Jobs of one request queued or running at once."""
    first_frames: int | None = None
    """Streams: frames of the first window, delivered alone for early first audio; None: no early window."""
    max_seconds: float = float("inf")
    """Audio a request may produce; past it the synthesis stops with AudioTooLong."""


MIN_SPLIT_FRAMES = 160
"""Shortest part of a piece worth a worker of its own (its two margins cost 64 frames of decoding)."""
MIN_SPLIT_FRAMES_ALONE = 64
"""The same for the one piece of a request on an idle machine, whose margins only cost cores with nothing else to
do: split in two, an 8-word sentence (~250 frames) took 0.143-0.152 s against 0.159-0.194 s decoded on the
2-thread head (blocked decoder; in-process, 3 paired process runs, medians of 9 fresh sentences each), while
paragraphs, whose later pieces wait for those cores, were 4-6% slower with this bound for every piece."""


FIRST_HANDOVER_SECS = 0.02
"""Longest a stream's first piece waits, after its first chunk is made, for the consumer to have sent it."""
FIRST_COVER = 1.25
"""How much longer a stream's first chunk plays than the next window takes to decode (by the voice's recent pace):
room for the time between the two and for a slower run."""
FIRST_MAX_GROWTH = 4
"""A stream's first window grows to at most this many times `Plan.first_frames`, however slow the decoder is (and
to that while other requests share the workers)."""


@dataclass(frozen=True)
class _Piece:
    """Part of a sentence the frontend sees at once, with the input words its phoneme words belong to."""

    sentence: str
    phonemes: list[str]
    ids: list[int]
    words: list[str]
    """The sentence's input words."""
    owner: list[int]
    """For each sound phoneme of this piece, the index of its input word."""


@dataclass
class _Frontend:
    """A piece after the frontend: what its decoder windows need."""

    z_p: FloatArray
    mask: FloatArray
    g: FloatArray | None
    frames: int
    done: int = 0
    """Frames already decoded (a stream's first window)."""
    durations: npt.NDArray[np.int64] | None = None
    """Frames of each phoneme id, when the graph gives them."""


def _forward_failure(done: Future[Any], slot: Future[list[SpeechChunk]]) -> bool:
    """False (and the slot failed or cancelled like `done`) unless `done` has a result."""
    if done.cancelled():
        slot.cancel()
        return False
    exc = done.exception()
    if exc is not None:
        if not slot.done():
            slot.set_exception(exc)
        return False
    return True


def _gather(
    jobs: list[Future[FloatArray]],
    slot: Future[list[SpeechChunk]],
    combine: Callable[[list[FloatArray]], list[SpeechChunk]],
) -> None:
    """Resolve `slot` with `combine` of the jobs' results, in order, once all are done (or with the first failure)."""
    remaining = [len(jobs)]
    lock = threading.Lock()

    def one_done(done: Future[FloatArray]) -> None:
        if not _forward_failure(done, slot):
            return
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last and not slot.done():
            try:
                slot.set_result(combine([job.result() for job in jobs]))
            except Exception as exc:  # a failure while combining reaches the consumer, never a worker's log
                slot.set_exception(exc)

    for job in jobs:
        job.add_done_callback(one_done)


_END = None


class Synthesis:
    """The chunks of one request. Iterate it (blocking) or `async for` over it, once; close it to stop early."""

    def __init__(self, req: SpeechRequest, voice: LoadedVoice, pool: WorkerPool, plan: Plan) -> None:
        self.req = req
        self.voice = voice
        self.pool = pool
        self.plan = plan
        self._room = threading.Semaphore(plan.lookahead)
        self._closed = threading.Event()
        self._pending: list[Future[list[SpeechChunk]]] = []
        self._pending_lock = threading.Lock()
        self._deliver: Callable[[Future[list[SpeechChunk]] | None], None] | None = None
        self._gain = req.volume * (voice.graphs.gain if voice.graphs is not None else 1.0)
        self._head_state: _Frontend | None = None
        """Set by the early first window's job when its piece has more windows."""
        self._first_taken = threading.Event()
        """Set once the consumer has passed the first slot's chunks on (sent them) and asks for more."""
        self._samples = 0
        self._group = pool.group()
        """This request's jobs: run in rank order, sharing the workers with other requests in turn."""
        self._undone: dict[int, int] = {}
        """Phoneme ids of each piece whose audio is not made yet: how much work the request has left."""
        self._undone_lock = threading.Lock()
        self._all_queued = False
        """Set once the conductor has handed over the request's last piece."""

    # --- consumers ---

    def __iter__(self) -> Iterator[SpeechChunk]:
        slots: queue.SimpleQueue[Future[list[SpeechChunk]] | None] = queue.SimpleQueue()
        self._start(slots.put)
        try:
            while (slot := slots.get()) is not _END:
                yield from self._taken(slot.result())
                self._first_taken.set()
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[SpeechChunk]:
        loop = asyncio.get_running_loop()
        slots: asyncio.Queue[Future[list[SpeechChunk]] | None] = asyncio.Queue()

        def deliver(slot: Future[list[SpeechChunk]] | None) -> None:
            loop.call_soon_threadsafe(slots.put_nowait, slot)

        self._start(deliver)
        try:
            while (slot := await slots.get()) is not _END:
                for chunk in self._taken(await asyncio.wrap_future(slot)):
                    yield chunk
                self._first_taken.set()
        finally:
            self.close()

    def _taken(self, chunks: list[SpeechChunk]) -> list[SpeechChunk]:
        """A slot's chunks, handed over: room for the next job, and the audio budget checked."""
        self._room.release()
        for chunk in chunks:
            self._count(chunk)
        return chunks

    def _count(self, chunk: SpeechChunk) -> None:
        """Enforce the audio budget on what was made (the estimate before synthesis can be wrong)."""
        self._samples += chunk.pcm.size
        if self._samples > self.plan.max_seconds * chunk.sample_rate:
            self.close()
            raise AudioTooLong(
                f"the speech would last longer than {self.plan.max_seconds:g} s (MAX_AUDIO_SECONDS); "
                "send less text, or a faster speed or shorter silences",
                limit_seconds=self.plan.max_seconds,
            )

    def close(self) -> None:
        """Stop: nothing more is submitted, queued jobs are dropped, running ones finish their piece."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._room.release(self.plan.lookahead + 1)  # wake a conductor waiting for room
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for future in pending:
            self.pool.abandon(future)

    # --- conductor (its own thread) ---

    def _start(self, deliver: Callable[[Future[list[SpeechChunk]] | None], None]) -> None:
        self._deliver = deliver
        self.pool.conduct(self._conduct)

    def _conduct(self) -> None:
        assert self._deliver is not None
        try:
            graphs = self.voice.graphs
            if self.req.loudness is not None and graphs is not None and self.plan.first_frames is not None:
                # Here, on the conductor's thread: measuring the voice (once) takes a few decodes.
                self._gain *= gain_for(graphs.reference_lufs(), self.req.loudness)
            index = 0
            sentences = split_sentences(self.req.text)
            for number, sentence in enumerate(sentences):
                pieces = self._pieces(sentence)
                for n, piece in enumerate(pieces):
                    end = n == len(pieces) - 1
                    if not self._reserve():
                        return
                    # Said before the last piece is queued: its frontend may be done before this thread runs again.
                    self._all_queued = end and number == len(sentences) - 1
                    if self.voice.graphs is None:
                        self._slot(self._submit((index,), self._whole_piece, piece, index, end))
                    elif index == 0 and self.plan.first_frames is not None:
                        if not self._head_and_rest(piece, end):
                            return
                    else:
                        # One piece on an idle machine: its frontend on all cores (the head sessions), not one.
                        alone = len(sentences) == 1 and len(pieces) == 1 and self.pool.idle_workers == self.pool.workers
                        self._split_piece(piece, index, end, frontend_on_all_cores=alone)
                    index += 1
        except Exception as exc:
            failed: Future[list[SpeechChunk]] = Future()
            failed.set_exception(exc)
            with contextlib.suppress(RuntimeError):  # the consumer's event loop may be gone
                self._deliver(failed)
        finally:
            with contextlib.suppress(RuntimeError):
                self._deliver(_END)

    def _submit(self, rank: tuple[int, ...], fn: Callable[..., Any], *args: object) -> Future[Any]:
        """Queue a job of this request: lower ranks (earlier pieces, then their windows in order) run first."""
        return self.pool.submit(fn, *args, group=self._group, rank=rank)

    def _reserve(self) -> bool:
        self._room.acquire()
        return not self._closed.is_set()

    def _track(self, future: Future[Any]) -> Future[Any]:
        with self._pending_lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(future)
        if self._closed.is_set():
            self.pool.abandon(future)
        return future

    def _slot(self, future: Future[list[SpeechChunk]]) -> Future[list[SpeechChunk]]:
        """Hand the consumer the next result, in order."""
        assert self._deliver is not None
        self._track(future)
        self._deliver(future)
        return future

    def _windows(
        self, total: int, start: int = 0, workers: int | None = None, min_split: int = MIN_SPLIT_FRAMES
    ) -> list[tuple[int, int]]:
        """Decode windows for frames [start, total): bounded by the window, and spread over idle workers (or over
        `workers`, when they will be free before this is done) in parts of at least `min_split` frames."""
        ranges = [(a + start, b + start) for a, b in cuts(total - start, self.plan.window)]
        # Called once the job before it (a frontend, a stream's head) is off the pool's count: that worker is idle.
        idle = self.pool.idle_workers if workers is None else workers
        spread = min(idle, (total - start) // min_split)
        if spread > len(ranges):
            # A worker would sit idle while this piece decodes: cut it finer so every worker takes a part. The
            # extra margins cost some compute, paid only with cores that had nothing else to do.
            size = -(-(total - start) // spread)
            ranges = [(a + start, b + start) for a, b in cuts(total - start, size)]
        return ranges

    def _longest_left(self, index: int) -> bool:
        """Whether this piece is at least all the rest of the request's unmade work put together, with nothing
        else on the workers and no piece left to come.

        Then the other workers will be idle before it is done, so it should not keep one core busy while the
        others wait: it is split over the idle workers, or, too short to split, decoded on the all-core head
        sessions. Work is counted in phoneme ids (frames follow them at a given speed).
        """
        if not self._all_queued or not self.pool.alone(self._group):
            return False
        with self._undone_lock:
            mine = self._undone.get(index, 0)
            return mine >= sum(self._undone.values()) - mine

    def _made(self, index: int) -> None:
        with self._undone_lock:
            self._undone.pop(index, None)

    def _split_piece(self, piece: _Piece, index: int, end: bool, *, frontend_on_all_cores: bool = False) -> None:
        """Frontend on one worker (or the head sessions), then the decoder windows on as many workers as are free;
        one slot in order."""
        slot: Future[list[SpeechChunk]] = Future()
        with self._undone_lock:
            self._undone[index] = len(piece.ids)
        slot.add_done_callback(lambda _: self._made(index))
        self._slot(slot)
        run_frontend = self._frontend_on_all_cores if frontend_on_all_cores else self._frontend
        frontend = self._track(self._submit((index, 0), run_frontend, piece.ids))

        def decode(done: Future[_Frontend]) -> None:
            if not _forward_failure(done, slot):
                return
            try:
                state = done.result()
                # The largest piece left of a lone request: the other workers are free before it is done.
                longest = self._longest_left(index)
                windows = self._windows(
                    state.frames,
                    workers=self.pool.workers if longest else None,
                    min_split=MIN_SPLIT_FRAMES_ALONE if frontend_on_all_cores else MIN_SPLIT_FRAMES,
                )
                run: Callable[[_Frontend, int, int], FloatArray] = self._decode
                if len(windows) == 1 and (frontend_on_all_cores or longest):
                    # Too short to split over the idle workers: the head sessions' threads share it instead.
                    run = self._decode_on_all_cores
                jobs = [self._track(self._submit((index, 1, n), run, state, a, b)) for n, (a, b) in enumerate(windows)]
            except Exception as exc:  # e.g. the pool shut down: the consumer must hear of it, not wait forever
                if not slot.done():  # a request closed meanwhile has dropped its slot already
                    slot.set_exception(exc)
                return
            _gather(jobs, slot, lambda parts: self._piece_chunks(piece, state, windows, parts, index, end))

        frontend.add_done_callback(decode)

    def _head_and_rest(self, piece: _Piece, end: bool) -> bool:
        """A stream's first piece: frontend and a small first window on the head sessions, delivered alone."""
        self._slot(self._submit((0,), self._head, piece, end)).result()
        # The rest's windows (or, for a piece that fitted, the next pieces) take every core at once: queued before
        # the first chunk was sent, they held up its delivery and its send by 4-9 ms (the shim, WS, medians of 12
        # paragraphs in each of 3 runs), against 1.3-1.4 ms when queued once it was sent. The first chunk plays far
        # longer than this wait.
        self._first_taken.wait(FIRST_HANDOVER_SECS)
        state = self._head_state
        if state is None:
            return True  # the piece fitted in its first window
        windows = self._windows(state.frames, start=state.done, workers=self._rest_workers(self.pool.idle_workers))
        for i, window in enumerate(windows):
            if not self._reserve():
                return False
            last = end and i == len(windows) - 1
            decode = self._track(self._submit((0, 1, i), self._decode, state, *window))
            slot: Future[list[SpeechChunk]] = Future()
            self._slot(slot)
            _gather(
                [decode],
                slot,
                functools.partial(self._window_chunks, piece, state, [window], 0, last, False, piece_end=end),
            )
        return True

    def _pieces(self, sentence: str) -> list[_Piece]:
        """The sentence's pieces, each with its phoneme ids and the input words its phoneme words belong to."""
        piper = self.voice.piper
        try:
            with tracing.span("tts.phonemize", {"tts.chars": len(sentence)}):
                phonemes: list[list[str]] = piper.phonemize(sentence)
            cut = [p for sentence_phonemes in phonemes for p in cut_phonemes(sentence_phonemes, self.plan.max_phonemes)]
            id_map = piper.config.phoneme_id_map
            spoken = [sounds_of(p, id_map) for p in cut]
            names = text_words(sentence)
            owner = owners(names, [n for p in cut for n in word_groups(p, id_map)], self._solo)
        except Exception as exc:  # espeak-ng reports failures as plain exceptions
            raise SynthesisFailed(f"phonemization failed ({type(exc).__name__})") from exc
        pieces = []
        for p, n in zip(cut, spoken, strict=True):
            pieces.append(_Piece(sentence, p, piper.phonemes_to_ids(p), names, owner[:n]))
            owner = owner[n:]
        return pieces

    def _solo(self, word: str) -> int:
        """Sounds of a word spoken alone (only asked when espeak joined or split words)."""
        id_map = self.voice.piper.config.phoneme_id_map
        return sum(sounds_of(p, id_map) for p in self.voice.piper.phonemize(word))

    # --- jobs (worker threads) ---

    def _frontend(self, ids: list[int], worker: int | None = None) -> _Frontend:
        graphs = self.voice.graphs
        assert graphs is not None
        try:
            z_p, mask, g, durations = graphs.frontend(
                current_worker() if worker is None else worker, ids, self._scales(), self.req.speaker_id
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SynthesisFailed(f"the voice model failed ({type(exc).__name__})") from exc
        return _Frontend(z_p, mask, g, int(z_p.shape[2]), durations=durations)

    def _decode(self, state: _Frontend, a: int, b: int, worker: int | None = None) -> FloatArray:
        graphs = self.voice.graphs
        assert graphs is not None
        try:
            return graphs.decode(current_worker() if worker is None else worker, state.z_p, state.mask, state.g, a, b)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SynthesisFailed(f"the voice model failed ({type(exc).__name__})") from exc

    def _all_cores(self) -> int | None:
        """The head sessions if this job has the machine to itself, else (None) this worker's own sessions.

        The head's threads spin between operators, which makes its runs ~0.8x as long as without spinning when
        the other cores are free; with another worker busy, the spinning took that worker's core and made a head
        run 1.0-1.4x as long, while this worker's single-threaded sessions took 0.94x (in-process, paired, 48
        paragraph first sentences: frontend and a 56-frame first window).
        """
        return HEAD if self.pool.sole_job else None

    def _frontend_on_all_cores(self, ids: list[int]) -> _Frontend:
        return self._frontend(ids, worker=self._all_cores())

    def _decode_on_all_cores(self, state: _Frontend, a: int, b: int) -> FloatArray:
        return self._decode(state, a, b, worker=self._all_cores())

    def _head(self, piece: _Piece, end: bool) -> list[SpeechChunk]:
        assert self.plan.first_frames is not None
        state = self._frontend(piece.ids, worker=self._all_cores())
        first = self._first(state.frames)
        audio = self._decode(state, 0, first, worker=self._all_cores())
        if first < state.frames:
            state.done = first
            self._head_state = state
        return self._window_chunks(
            piece, state, [(0, first)], 0, end and first == state.frames, True, [audio], piece_end=end
        )

    def _first(self, frames: int) -> int:
        """Frames of a stream's first window: `Plan.first_frames`, or more when the next window would take longer
        to decode than that plays, which would leave the listener in silence between the first two chunks; the
        most it may grow to while other requests share the workers.

        With 24 frames (0.28 s) the first chunk of a 40-word sentence (~1,000 frames) finished playing 41-80 ms
        before the second arrived (medians of three in-process runs of 12 streams); a paragraph's first sentence
        (~400 frames), its rest on one worker (`_rest_workers`), did not stall. Moving the boundary
        costs no decoding: the windows and their margins stay as many.

        While other requests have jobs on the workers, the rest also waits its turn behind them, which the pace
        does not foresee, so the first window takes its largest size. Streams started at once (the shim, WS, 10
        rounds), sized by the pace alone: 4 paragraphs, 24 of 40 stalled, up to 0.26 s; 2 and 4 40-word
        sentences, 9 of 20 and 37 of 40, up to 0.27 and 0.31 s; 2 paragraphs did not stall either way. At the
        largest size none stalled, for first audio (medians) 0.15 / 0.22 / 0.24 / 0.33 s against 0.11 / 0.14 /
        0.21 / 0.30 s (2 and 4 paragraphs, 2 and 4 sentences); counting the rest's decode twice instead still let
        2 of 20 streams of 2 sentences stall.
        """
        assert self.plan.first_frames is not None
        graphs = self.voice.graphs
        assert graphs is not None  # only split graphs stream in windows
        first = min(self.plan.first_frames, frames, self.plan.window)
        largest = min(frames, self.plan.window, FIRST_MAX_GROWTH * self.plan.first_frames)
        if first == frames:
            return first
        if not self.pool.sole_job:  # asked from this stream's head job: another job shares the workers
            return largest
        pace = graphs.seconds_per_frame
        if pace is None:
            return first
        # The rest is decoded once this job ends, on the workers then free (this one among them). Both margins are
        # counted even where the sentence's end clips one: an upper bound, so the first chunk errs long.
        a, b = self._windows(frames, start=first, workers=self._rest_workers(self.pool.idle_workers + 1))[0]
        decoding = (b - a + 2 * graphs.margin) * pace
        needed = math.ceil(decoding * FIRST_COVER * graphs.sample_rate / graphs.hop)
        # Never past the decode window: it bounds what any decoder run takes from the arena.
        return max(first, min(needed, largest))

    def _rest_workers(self, free: int) -> int:
        """How many workers the rest of a stream's first piece is spread over, `free` being those then idle.

        All of them only when no piece follows. Otherwise one: spread, the rest kept the next piece off the other
        workers, which that piece keeps busy anyway, and paid two more margins for it. A paragraph's stream then
        cost 1.054x the CPU of its whole synthesis against 1.086x, with the same first audio (52.7 against
        53.5 ms) and no stall (in-process, paired, 16 paragraphs).
        """
        return free if self._all_queued else 1

    def _whole_piece(self, piece: _Piece, index: int, end: bool) -> list[SpeechChunk]:
        """The fallback for voices that cannot be split: Piper's whole graph, one run per piece (no word timings)."""
        try:
            audio = np.asarray(self.voice.piper.phoneme_ids_to_audio(piece.ids, self._config()), dtype=np.float32)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SynthesisFailed(f"the voice model failed ({type(exc).__name__})") from exc
        return self._normalised(piece, audio, [], index, end)

    # --- results ---

    def _words(self, piece: _Piece, state: _Frontend, end: bool) -> list[WordTiming]:
        """The piece's word timings in samples from its start, when the graph gave durations."""
        graphs = self.voice.graphs
        if state.durations is None or graphs is None:
            return []
        spans = sound_spans(piece.phonemes, state.durations, self.voice.piper.config.phoneme_id_map, graphs.hop)
        return timings(piece.words, piece.owner, spans, ends_sentence=end)

    def _piece_chunks(
        self,
        piece: _Piece,
        state: _Frontend,
        windows: list[tuple[int, int]],
        parts: list[FloatArray],
        index: int,
        end: bool,
    ) -> list[SpeechChunk]:
        """A whole piece: peak-normalised like Piper's own output, or (streams) at the voice's fixed gain."""
        if self.plan.first_frames is not None:
            return self._window_chunks(piece, state, windows, index, end, True, parts)
        audio = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._normalised(piece, audio, self._words(piece, state, end), index, end)

    def _normalised(
        self, piece: _Piece, audio: FloatArray, words: list[WordTiming], index: int, end: bool
    ) -> list[SpeechChunk]:
        if audio.size == 0:
            return []
        peak = float(np.max(np.abs(audio)))
        audio = audio / peak if peak > 1e-8 else np.zeros_like(audio)
        pcm = float_to_int16(audio * self.req.volume)
        return [self._chunk(piece.sentence, pcm, words, first_of_piece=True, index=index, end=end)]

    def _window_chunks(
        self,
        piece: _Piece,
        state: _Frontend,
        windows: list[tuple[int, int]],
        index: int,
        end: bool,
        first_of_piece: bool,
        parts: list[FloatArray],
        piece_end: bool | None = None,
    ) -> list[SpeechChunk]:
        """Streamed windows at one gain for the whole request (so they join without a step), each with the
        words that start in it. `piece_end`: whether the piece ends its sentence (default: `end`)."""
        piece_end = end if piece_end is None else piece_end
        hop = self.voice.graphs.hop if self.voice.graphs is not None else 1
        words = self._words(piece, state, piece_end)
        out = []
        for i, ((a, b), part) in enumerate(zip(windows, parts, strict=True)):
            mine = [w.shifted(-a * hop) for w in words if a * hop <= w.start < b * hop]
            out.append(
                self._chunk(
                    piece.sentence,
                    # A fixed gain can push a loud sentence past full scale: its true peaks are limited instead.
                    float_to_int16(limit(part * self._gain, self.voice.sample_rate)),
                    mine,
                    first_of_piece=first_of_piece and i == 0,
                    index=index,
                    end=end and i == len(parts) - 1,
                )
            )
        return out

    def _chunk(
        self, sentence: str, pcm: Int16Array, words: list[WordTiming], *, first_of_piece: bool, index: int, end: bool
    ) -> SpeechChunk:
        if first_of_piece and index > 0 and self.req.sentence_silence > 0:
            gap = silence(self.req.sentence_silence, self.voice.sample_rate)
            pcm = np.concatenate([gap, pcm])
            words = [w.shifted(gap.size) for w in words]
        return SpeechChunk(-1, sentence, pcm, self.voice.sample_rate, sentence_end=end, words=words)

    def _scales(self) -> FloatArray:
        assert self.voice.graphs is not None
        return self.voice.graphs.scales(self.req.noise_scale, self.req.length_scale, self.req.noise_w)

    def _config(self) -> SynthesisConfig:
        return SynthesisConfig(
            speaker_id=self.req.speaker_id,
            length_scale=self.req.length_scale,
            noise_scale=self.req.noise_scale,
            noise_w_scale=self.req.noise_w,
            normalize_audio=False,
            volume=1.0,
        )
