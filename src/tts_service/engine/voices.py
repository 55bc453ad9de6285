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

from tts_service.engine.registry import VoiceEntry, sha256_bytes
from tts_service.errors import VoiceUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionSettings:
    """How each voice's ONNX session is built."""

    intra_op_threads: int
    allow_spinning: bool = True
    verify_hashes: bool = True
    espeak_data_dir: Path | None = None


def build_session_options(intra_op_threads: int, allow_spinning: bool = True) -> ort.SessionOptions:
    """onnxruntime options for one shared session driven by a few worker threads.

    Measured on 2 cores with bench/bench_threads.py (README, 'How synthesis runs'): intra-op threads = cores
    gives the fastest single stream; spinning on keeps it ~20% faster than spinning off, which in turn gains
    ~10% throughput when two streams share the session. Spinning is a setting for that trade-off. The CPU
    memory arena is off because it would keep the peak of the longest sentence ever synthesized for the life
    of the process; on normal text its cost is within noise.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.enable_cpu_mem_arena = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


@dataclass
class LoadedVoice:
    """A voice ready to synthesize."""

    entry: VoiceEntry
    piper: PiperVoice
    load_seconds: float

    @property
    def sample_rate(self) -> int:
        return int(self.piper.config.sample_rate)


def load_voice(entry: VoiceEntry, settings: SessionSettings) -> LoadedVoice:
    """Read, verify and load one voice; VoiceUnavailable if its files are missing or corrupt."""
    started = time.perf_counter()
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
    config = PiperConfig.from_dict(entry.config_dict)
    try:
        session = ort.InferenceSession(
            model_bytes,
            sess_options=build_session_options(settings.intra_op_threads, settings.allow_spinning),
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own exception types for any malformed model
        raise VoiceUnavailable(
            f"voice {entry.id!r}: model cannot be loaded ({type(exc).__name__})", voice=entry.id
        ) from None
    piper = PiperVoice(session=session, config=config, espeak_data_dir=settings.espeak_data_dir or ESPEAK_DATA_DIR)
    elapsed = time.perf_counter() - started
    logger.info("voice loaded", extra={"voice": entry.id, "load_seconds": round(elapsed, 3)})
    return LoadedVoice(entry=entry, piper=piper, load_seconds=elapsed)


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
