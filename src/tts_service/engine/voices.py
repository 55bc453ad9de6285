"""Loading Piper voices with deliberate onnxruntime settings, and a bounded LRU of loaded voices."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from piper import PiperVoice
from piper.config import PiperConfig
from piper.phonemize_espeak import ESPEAK_DATA_DIR

from tts_service.engine.graphs import GAIN_TEXTS, VoiceGraphs, fallback_root, split_files
from tts_service.engine.registry import VoiceEntry, sha256_bytes
from tts_service.errors import VoiceUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionSettings:
    """How each voice's ONNX sessions are built."""

    intra_op_threads: int = 1
    """Threads of each worker's session (workers x threads should not exceed the cores)."""
    workers: int = 1
    """Synthesis worker threads, each with its own session pair."""
    cores: int = 1
    """Threads of the head sessions (a stream's first audio)."""
    allow_spinning: bool = True
    verify_hashes: bool = True
    espeak_data_dir: Path | None = None
    graphs_dir: Path | None = None
    """Cache of split graphs; None: whole-graph synthesis only (no windowed decoding, arena off)."""


_arena_lock = threading.Lock()
_arena_shared = False


def _share_one_arena() -> None:
    """Register one CPU arena for the whole process, which sessions built with `session.use_env_allocators` use.

    Each session's own arena keeps the peak of its largest run, so the workers' and head sessions' peaks add up
    even when they never run at once: 2 workers and the head decoding a 512-frame window one after another held
    820 MB resident, one shared arena 527 MB, and two at once 964 against 751 MB (in-process, en_US-joe-medium,
    speed 0.5). Paragraph speed was the same within the noise of 4 paired process runs.
    """
    global _arena_shared
    with _arena_lock:
        if not _arena_shared:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
            _arena_shared = True


HEAD_SPIN_US = 100


def build_session_options(
    intra_op_threads: int, allow_spinning: bool = True, arena: bool = True, *, stop_spinning_after_runs: bool = False
) -> ort.SessionOptions:
    """onnxruntime options for one worker's session.

    `stop_spinning_after_runs`: spinning intra-op threads stop when a run returns (`session.force_spinning_stop`),
    so they spin only between a run's operators and never hold a core while the session waits for its next run.

    The CPU arena is on for split graphs: it makes a run ~30% faster (bench/run.py), and the frames of every
    decoder run are bounded by the decode window, so what the arena keeps is bounded too; all of them share one
    arena (`_share_one_arena`). It is off for the whole-graph fallback, whose runs grow with the text and whose
    peak the arena would keep forever.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if allow_spinning and stop_spinning_after_runs:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        # A thread waiting for work spins this long before it sleeps. onnxruntime's default spins longer: the
        # head's frontend and a 56-frame first window took the same time with 100 us (0.82-0.84x of not spinning
        # against 0.82-0.83x) for +12 ms of CPU per stream instead of +21 ms (in-process, paired, 48 runs, twice).
        opts.add_session_config_entry("session.intra_op.spin_duration_us", str(HEAD_SPIN_US))
    opts.enable_cpu_mem_arena = arena
    if arena:
        _share_one_arena()
        opts.add_session_config_entry("session.use_env_allocators", "1")
        # No memory pattern: with one, a run takes all its intermediates from the arena as one block (~137 MB for
        # a 512-frame decoder window), which fits in fewer of the arena's regions than the same bytes as separate
        # tensors. Whole shim, 2,000 unpunctuated characters at speed 0.5, three texts in turn: peak 899-941 MB
        # without, 1,021-1,055 MB with (two process runs each); run times equal within noise (paired, in-process).
        opts.enable_mem_pattern = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


@dataclass
class LoadedVoice:
    """A voice ready to synthesize: split graphs per worker, or (fallback) one whole-graph session."""

    entry: VoiceEntry
    piper: PiperVoice
    """Phonemizer and config; its session is the whole-graph fallback, None when `graphs` is set."""
    graphs: VoiceGraphs | None
    load_seconds: float

    @property
    def sample_rate(self) -> int:
        return int(self.piper.config.sample_rate)


def _read_checked(entry: VoiceEntry, settings: SessionSettings) -> bytes:
    try:
        model_bytes = entry.model.path.read_bytes()
    except FileNotFoundError:
        raise VoiceUnavailable(f"voice {entry.id!r}: model file is missing", voice=entry.id) from None
    except OSError:
        raise VoiceUnavailable(f"voice {entry.id!r}: model file cannot be read", voice=entry.id) from None
    # Hash the very bytes handed to onnxruntime, so a file swapped after the check cannot slip through.
    if settings.verify_hashes and entry.model.sha256 is not None and sha256_bytes(model_bytes) != entry.model.sha256:
        raise VoiceUnavailable(f"voice {entry.id!r}: model file does not match its sha256", voice=entry.id)
    if settings.verify_hashes and entry.config.sha256 is not None:
        try:
            config_bytes = entry.config.path.read_bytes()
        except OSError:
            raise VoiceUnavailable(f"voice {entry.id!r}: config file is missing", voice=entry.id) from None
        if sha256_bytes(config_bytes) != entry.config.sha256:
            raise VoiceUnavailable(f"voice {entry.id!r}: config file does not match its sha256", voice=entry.id)
    return model_bytes


def _load_graphs(
    entry: VoiceEntry, model_bytes: bytes, piper: PiperVoice, settings: SessionSettings
) -> VoiceGraphs | None:
    """Split graphs with one session pair per worker, or None (the voice cannot be split: whole graph)."""
    if settings.graphs_dir is None:
        return None
    config = piper.config
    calibration = [piper.phonemes_to_ids([p for s in piper.phonemize(t) for p in s]) for t in GAIN_TEXTS]
    error: Exception | None = None
    # A read-only or foreign cache folder still gets split graphs, in a private temporary folder.
    for root in (settings.graphs_dir, None):
        try:
            files = split_files(model_bytes, entry.id, int(config.sample_rate), root or fallback_root())
            return VoiceGraphs(
                files,
                build_session_options(settings.intra_op_threads, settings.allow_spinning, arena=True),
                settings.workers,
                # Only while its run lasts: the head runs only when every other worker is idle (`engine/pipeline.py`),
                # and a thread spinning after that would take the core of the next job to start.
                head_options=(
                    build_session_options(
                        settings.cores, allow_spinning=True, arena=True, stop_spinning_after_runs=True
                    )
                    if settings.cores > settings.intra_op_threads
                    else None
                ),
                phoneme_ids=calibration,
                defaults=(config.noise_scale, config.length_scale, config.noise_w_scale),
                default_speaker=getattr(config, "default_speaker_id", None),
                sample_rate=int(config.sample_rate),
            )
        except OSError as exc:
            error = exc
            continue
        except Exception as exc:  # onnx / onnxruntime: the graph itself cannot be split or loaded
            error = exc
            break
    logger.warning(
        "voice cannot be split; whole-graph synthesis",
        extra={"voice": entry.id, "error_type": type(error).__name__},
    )
    return None


def load_voice(entry: VoiceEntry, settings: SessionSettings) -> LoadedVoice:
    """Read, verify and load one voice; VoiceUnavailable if its files are missing or corrupt."""
    started = time.perf_counter()
    model_bytes = _read_checked(entry, settings)
    config = PiperConfig.from_dict(entry.config_dict)
    espeak = settings.espeak_data_dir or ESPEAK_DATA_DIR
    piper = PiperVoice(session=None, config=config, espeak_data_dir=espeak)
    graphs = _load_graphs(entry, model_bytes, piper, settings)
    if graphs is None:
        try:
            # One whole-graph session shared by the workers, with every core: its runs are not windowed.
            piper.session = ort.InferenceSession(
                model_bytes,
                sess_options=build_session_options(
                    settings.intra_op_threads * settings.workers, settings.allow_spinning, arena=False
                ),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own exception types for any malformed model
            raise VoiceUnavailable(
                f"voice {entry.id!r}: model cannot be loaded ({type(exc).__name__})", voice=entry.id
            ) from None
    elapsed = time.perf_counter() - started
    logger.info("voice loaded", extra={"voice": entry.id, "load_seconds": round(elapsed, 3), "split": bool(graphs)})
    return LoadedVoice(entry=entry, piper=piper, graphs=graphs, load_seconds=elapsed)


class VoiceCache:
    """Loaded voices, at most `capacity`, least recently used evicted first.

    Concurrent first requests for one voice share a single load: the first caller loads, the others wait on
    its future. A failed load is not cached, so a voice whose file is fixed on disk works on the next request.
    """

    def __init__(self, capacity: int, settings: SessionSettings, pinned: frozenset[str] = frozenset()) -> None:
        self.capacity = capacity
        self.settings = settings
        self.pinned = pinned
        """Voices never evicted (the default voice, which readiness depends on)."""
        self._voices: OrderedDict[str, LoadedVoice] = OrderedDict()
        self._loading: dict[str, Future[LoadedVoice]] = {}
        self._lock = threading.Lock()
        self.loads = 0
        """Completed loads since start: a counter for tests and metrics."""

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return list(self._voices)

    def peek(self, voice_id: str) -> LoadedVoice | None:
        with self._lock:
            return self._voices.get(voice_id)

    def get(self, entry: VoiceEntry) -> LoadedVoice:
        """The loaded voice for an entry, loading it (once) if needed. Blocking: call from a worker thread."""
        with self._lock:
            voice = self._voices.get(entry.id)
            if voice is not None:
                self._voices.move_to_end(entry.id)
                return voice
            pending = self._loading.get(entry.id)
            owner = pending is None
            if pending is None:
                pending = Future()
                self._loading[entry.id] = pending
        if not owner:
            return pending.result()
        try:
            voice = load_voice(entry, self.settings)
        except BaseException as exc:
            with self._lock:
                del self._loading[entry.id]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._loading[entry.id]
            self._voices[entry.id] = voice
            self.loads += 1
            evictable = [vid for vid in self._voices if vid not in self.pinned and vid != entry.id]
            while len(self._voices) > self.capacity and evictable:
                evicted = evictable.pop(0)
                del self._voices[evicted]
                logger.info("voice evicted", extra={"voice": evicted})
        pending.set_result(voice)
        return voice
