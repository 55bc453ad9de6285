"""Chunked decoding for time to first audio: a voice split into a frontend and a frame-chunkable decoder.

Piper's VITS graph runs text encoder, durations and prior sampling (the frontend) over the whole sentence, then
flow + HiFi-GAN (the decoder), a convolutional net with a finite receptive field. `streaming-vits` cuts the ONNX
graph at that seam; we run the frontend once per sentence (prosody intact) and decode the frames in chunks with
overlapping margins that are thrown away, which gives the same samples as one full decode (the margin is
measured per voice; en_US-joe-medium: 32 frames, max abs difference 7.5e-6 to Piper's own graph). The first chunk is
small so audio starts early; the rest is decoded in one or few large chunks, and only a request's first
sentence is split at all (later ones are made while earlier ones play), so the extra work is about one margin
pair per request.

The split graphs are made once per voice file and cached in `STREAM_CACHE_DIR` (default
`~/.cache/tts-service/streaming`), never per request. When a voice cannot be split, callers fall back to
whole-sentence synthesis.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tts_service.engine.voices import LoadedVoice, build_session_options

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

# Frames of context each side of a chunk. The difference to a full decode shrinks steadily with the margin and
# depends on the content (joe-medium, noise 0: 16 frames 1e-5..1e-2, 24 frames 1e-7..2e-5, 32 frames <= 7.5e-7),
# so the smallest candidate that matches a reference to 1e-6 is measured once per voice, starting at 32.
MARGIN_CANDIDATES = (32, 48, 64, 96)
MARGIN_FRAMES = 96
"""The fallback when no candidate matches."""
_MATCH_TOLERANCE = 1e-6
# Reference sentences whose loudest peak sets the fixed gain of chunked audio (see `ChunkedVoice.gain`).
_GAIN_TEXTS = (
    "This is a short sentence that sets the loudness of streamed speech.",
    "Wait, what did you say?",
    "Hello there! The weather today is wonderful, isn't it?",
)
# Peaks vary by ~25% between sentences; leave that much headroom so loud sentences rarely clip.
_GAIN_HEADROOM = 0.85


@dataclass(frozen=True)
class Schedule:
    """How a sentence's frames are cut: a small first chunk, then chunks of up to `chunk_frames`."""

    first_frames: int = 24
    chunk_frames: int = 2048
    min_split_frames: int = 160
    """Sentences shorter than this are decoded whole: splitting them would cost more than it saves."""

    def cuts(self, total: int) -> list[tuple[int, int]]:
        """[a, b) frame ranges covering `total` frames."""
        if total <= self.min_split_frames:
            return [(0, total)]
        out = [(0, self.first_frames)]
        a = self.first_frames
        while a < total:
            # Split the rest evenly so no tail chunk is tiny (a tiny chunk pays full margins for little audio).
            remaining = total - a
            pieces = -(-remaining // self.chunk_frames)
            b = a + -(-remaining // pieces)
            out.append((a, min(b, total)))
            a = b
        return out


WHOLE = Schedule(min_split_frames=1 << 30)
"""Decode in one piece."""


class ChunkedVoice:
    """One voice's frontend and decoder sessions, and the chunked synthesis over them."""

    def __init__(
        self, voice: LoadedVoice, cache_root: Path, intra_op_threads: int, allow_spinning: bool = True
    ) -> None:
        from streaming_vits import graph

        self.voice = voice
        model_path = voice.entry.model.path
        key = (voice.entry.model.sha256 or f"{model_path.stat().st_size}-{int(model_path.stat().st_mtime)}")[:16]
        outdir = cache_root / f"{voice.entry.id}-{key}"
        meta_path = outdir / f"{model_path.stem}.split.json"
        if not meta_path.is_file():
            self._split(model_path, outdir, voice.sample_rate)
        self.meta = graph.SplitModel.load(meta_path)
        opts = build_session_options(intra_op_threads, allow_spinning)
        self.frontend = ort.InferenceSession(
            str(outdir / self.meta.frontend), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.decoder = ort.InferenceSession(
            str(outdir / self.meta.decoder), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.hop = int(self.meta.hop)
        self.margin = MARGIN_FRAMES
        self.gain = 1.0
        self._calibrate(outdir / "calibration.json")

    def _calibrate(self, path: Path) -> None:
        """Measure the voice's gain and decode margin once (a few short decodes); keep them beside the graphs."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(path.read_text())
            self.gain, self.margin = float(saved["gain"]), int(saved["margin"])
            return
        peak = 0.0
        for text in _GAIN_TEXTS:
            ids = self.voice.piper.phonemes_to_ids(self._phonemes(text))
            peak = max(peak, float(np.max(np.abs(self.audio_whole(ids)))))
        self.gain = _GAIN_HEADROOM / peak if peak > 1e-4 else 1.0
        """Fixed gain for chunked audio: per-sentence peak normalisation would need the whole sentence first."""
        self.margin = self._measure_margin(self.voice.piper.phonemes_to_ids(self._phonemes(" ".join(_GAIN_TEXTS))))
        with contextlib.suppress(OSError):
            path.write_text(json.dumps({"gain": self.gain, "reference_peak": peak, "margin": self.margin}))

    def _measure_margin(self, ids: list[int]) -> int:
        z_p, mask, g = self.run_frontend(ids, self.scales(0.0, None, 0.0), None)
        total = int(z_p.shape[2])
        self.margin = total  # a margin this wide makes every chunk a full decode: the reference
        whole = self.decode(z_p, mask, g, 0, total)
        cuts = [(0, 24), (24, total // 2), (total // 2, total)]
        for margin in MARGIN_CANDIDATES:
            self.margin = margin
            pieces = np.concatenate([self.decode(z_p, mask, g, a, b) for a, b in cuts])
            if pieces.shape == whole.shape and float(np.max(np.abs(pieces - whole))) < _MATCH_TOLERANCE:
                return margin
        return MARGIN_FRAMES

    def _phonemes(self, text: str) -> list[str]:
        return [p for sentence in self.voice.piper.phonemize(text) for p in sentence]

    @staticmethod
    def _split(model_path: Path, outdir: Path, sample_rate: int) -> None:
        """Split into a temporary folder, then rename: concurrent processes never see half-written graphs."""
        from streaming_vits import graph

        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = outdir.with_name(f"{outdir.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        started = time.perf_counter()
        try:
            # streaming-vits prints progress; it belongs in our logs, not on stdout.
            with contextlib.redirect_stdout(io.StringIO()):
                graph.split(model_path, tmp, sample_rate=sample_rate, verbose=False)
            try:
                tmp.rename(outdir)
            except OSError:
                if not outdir.is_dir():  # another process won the race: its graphs are as good as ours
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info(
            "voice split for streaming",
            extra={"cache_dir": str(outdir), "split_seconds": round(time.perf_counter() - started, 2)},
        )

    def run_frontend(
        self, ids: list[int], scales: FloatArray, speaker_id: int | None
    ) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        feed: dict[str, npt.NDArray[np.generic]] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        if "sid" in self.meta.frontend_inputs:
            # As piper does: no speaker named means the voice's default speaker.
            sid = self.voice.piper.config.default_speaker_id if speaker_id is None else speaker_id
            feed["sid"] = np.array([sid], dtype=np.int64)
        out = self.frontend.run(None, feed)
        return out[0], out[1], (out[2] if len(out) > 2 else None)

    def decode(self, z_p: FloatArray, mask: FloatArray, g: FloatArray | None, a: int, b: int) -> FloatArray:
        """Samples of output frames [a, b), computed with margins that are discarded."""
        total = z_p.shape[2]
        lo, hi = max(0, a - self.margin), min(total, b + self.margin)
        seam = self.meta.seam
        feed = {seam.z_p: z_p[:, :, lo:hi], seam.mask: mask[:, :, lo:hi]}
        if seam.g is not None and g is not None:
            feed[seam.g] = g
        audio = np.asarray(self.decoder.run(None, feed)[0], dtype=np.float32).reshape(-1)
        start = (a - lo) * self.hop
        return audio[start : start + (b - a) * self.hop]

    def scales(self, noise_scale: float | None, length_scale: float | None, noise_w: float | None) -> FloatArray:
        cfg = self.voice.piper.config
        return np.array(
            [
                cfg.noise_scale if noise_scale is None else noise_scale,
                cfg.length_scale if length_scale is None else length_scale,
                cfg.noise_w_scale if noise_w is None else noise_w,
            ],
            dtype=np.float32,
        )

    def iter_audio(
        self,
        ids: list[int],
        *,
        noise_scale: float | None = 0.0,
        length_scale: float | None = None,
        noise_w: float | None = 0.0,
        speaker_id: int | None = None,
        schedule: Schedule | None = None,
    ) -> Iterator[tuple[FloatArray, bool]]:
        """Raw float audio of one sentence, chunk by chunk (unnormalised), each with "is the last chunk"."""
        z_p, mask, g = self.run_frontend(ids, self.scales(noise_scale, length_scale, noise_w), speaker_id)
        cuts = (schedule or Schedule()).cuts(int(z_p.shape[2]))
        for i, (a, b) in enumerate(cuts):
            yield self.decode(z_p, mask, g, a, b), i == len(cuts) - 1

    def audio_whole(self, ids: list[int]) -> FloatArray:
        parts = [audio for audio, _ in self.iter_audio(ids, schedule=WHOLE)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


class ChunkedVoices:
    """Split voices by id (at most `capacity`, least recently used dropped), built on first use.

    A voice that cannot be split is remembered as such (None), so requests fall back to whole sentences
    without retrying the split each time.
    """

    def __init__(
        self,
        cache_root: Path,
        intra_op_threads: int,
        enabled: bool = True,
        capacity: int = 4,
        allow_spinning: bool = True,
    ) -> None:
        self.cache_root = cache_root
        self.intra_op_threads = intra_op_threads
        self.allow_spinning = allow_spinning
        self.enabled = enabled
        self.capacity = capacity
        self._voices: OrderedDict[str, ChunkedVoice | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, voice: LoadedVoice) -> ChunkedVoice | None:
        """The chunked form of a loaded voice, or None (disabled, or the split failed: use whole sentences)."""
        if not self.enabled:
            return None
        key = voice.entry.id
        with self._lock:
            if key in self._voices:
                cached = self._voices[key]
                self._voices.move_to_end(key)
                if cached is None or cached.voice is voice:
                    return cached
            # One lock for the build too: splitting takes seconds and must happen once, not once per worker.
            chunked = self._build(voice)
            self._voices[key] = chunked
            self._voices.move_to_end(key)
            while len(self._voices) > self.capacity:
                self._voices.popitem(last=False)
            return chunked

    def _build(self, voice: LoadedVoice) -> ChunkedVoice | None:
        # A read-only home (Lambda, locked-down containers) still gets chunked decoding through the temp dir.
        roots = [self.cache_root, Path(tempfile.gettempdir()) / "tts-service-streaming"]
        for root in roots:
            try:
                return ChunkedVoice(voice, root, self.intra_op_threads, self.allow_spinning)
            except OSError as exc:
                error: Exception = exc
                continue
            except Exception as exc:  # onnx / onnxruntime: the graph itself cannot be split or loaded
                error = exc
                break
        logger.warning(
            "streaming split failed; whole-sentence synthesis for this voice",
            extra={"voice": voice.entry.id, "error_type": type(error).__name__},
        )
        return None
