"""A voice split into a frontend graph and a window-decodable decoder: the path every synthesis takes.

Piper's VITS graph runs text encoder, durations and prior sampling (the frontend) over a whole piece of text,
then flow + HiFi-GAN (the decoder), a convolutional net with a finite receptive field. `streaming-vits` cuts the
ONNX graph at that seam. We run the frontend once per piece (prosody intact) and the decoder over windows of at
most `window` frames with overlapping margins that are thrown away, which gives the same samples as one full
decode (the margin is measured per voice; en_US-joe-medium: 32 frames, max abs difference below 1e-6).

Why every request goes this way, not only streams (bench/run.py, docs/performance.md): onnxruntime's CPU arena
makes a run ~30% faster but keeps the largest run's peak resident for the life of the session. Decoder memory
grows with the frames of a run, and frames grow as speed drops, so a bound on phonemes alone bounds nothing;
a bound on frames per decoder run does. With windows of 512 frames (~6 s of audio) a decoder run needs near
190 MB whatever the text and speed, and sentences shorter than a window (almost all) pay no margin at all. All
sessions share one arena (`engine/voices.py`), so what it keeps is what the runs that were in progress at once
needed, not the sum of every session's largest run.

Each synthesis worker thread has its own pair of single-threaded sessions (`VoiceGraphs.sessions[worker]`):
a request's pieces run on several workers at once, and under load every core runs one piece with no
intra-op synchronisation. See `engine/pool.py` for the measured trade-off.

On x86-64 the decoder is also rewritten for onnxruntime's blocked convolution kernels when it is split
(`engine/layout.py`: 0.77-0.81x the time per decoder run), kept only when it gives the exported graph's samples.

The split graphs are made once per voice file and kept in `STREAM_CACHE_DIR` in a folder only this user can
write; each graph is loaded from bytes whose sha256 matches the manifest written when it was split, like the
voices themselves. Where that folder cannot be used, a fresh private temporary folder is (never a fixed path
under /tmp that another user could prepare). When a voice cannot be split, whole-graph synthesis is used.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tts_service.engine import layout
from tts_service.engine.loudness import integrated_lufs
from tts_service.engine.registry import sha256_bytes

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

# Frames of context each side of a window. The difference to a full decode shrinks steadily with the margin and
# depends on the content (joe-medium, noise 0: 16 frames 1e-5..1e-2, 24 frames 1e-7..2e-5, 32 frames <= 7.5e-7),
# so the smallest candidate that matches a reference to 1e-6 is measured once per voice, starting at 32.
MARGIN_CANDIDATES = (32, 48, 64, 96)
MARGIN_FRAMES = 96
"""The fallback when no candidate matches."""
_MATCH_TOLERANCE = 1e-6
# Decoder runs shorter than this are mostly fixed cost and would overstate the time per frame.
_PACE_FRAMES = 128
_PACE_WEIGHT = 0.2
# Reference sentences whose loudest peak sets the fixed gain of streamed audio (see `VoiceGraphs.gain`).
GAIN_TEXTS = (
    "This is a short sentence that sets the loudness of streamed speech.",
    "Wait, what did you say?",
    "Hello there! The weather today is wonderful, isn't it?",
)
# Peaks vary by ~25% between sentences; leave that much headroom so loud sentences rarely clip.
_GAIN_HEADROOM = 0.85
_MANIFEST = "graphs.json"
_MANIFEST_VERSION = 3


class GraphCacheError(OSError):
    """The split-graph folder cannot be trusted or used."""


def cuts(total: int, window: int, first: int | None = None) -> list[tuple[int, int]]:
    """[a, b) frame ranges covering `total` frames: an optional small first range, then even ranges <= `window`."""
    out: list[tuple[int, int]] = []
    a = 0
    if first is not None and total > first:
        out.append((0, first))
        a = first
    remaining = total - a
    if remaining <= 0:
        return out or [(0, total)]
    # Split the rest evenly so no tail window is tiny (a tiny window pays full margins for little audio).
    pieces = -(-remaining // window)
    size = -(-remaining // pieces)
    while a < total:
        out.append((a, min(a + size, total)))
        a += size
    return out


def _span(total: int, a: int, b: int, margin: int) -> tuple[int, int]:
    """The frames a decoder run takes in to make output frames [a, b) of `total`: the margins, clipped at the ends."""
    return max(0, a - margin), min(total, b + margin)


def private_dir(path: Path) -> Path:
    """`path`, created if needed, refused unless it is a real folder of ours that nobody else can write."""
    with contextlib.suppress(OSError):  # a read-only folder baked into an image exists already
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise GraphCacheError(f"{path} is not a folder")
    # Root's folders are trusted too: an image bakes the graphs at build time, read-only at run time.
    if hasattr(os, "getuid") and info.st_uid not in (os.getuid(), 0):
        raise GraphCacheError(f"{path} belongs to another user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise GraphCacheError(f"{path} is writable by others")
    return path


@dataclass(frozen=True)
class SplitFiles:
    """A voice's verified split graphs, as bytes, and what the decoder needs to know about them."""

    frontend: bytes
    decoder: bytes
    z_p: str
    mask: str
    g: str | None
    hop: int
    frontend_inputs: tuple[str, ...]
    durations: str | None = None
    """The frontend output with frames per phoneme id, when the graph has it."""
    folder: Path | None = None
    """Where they were read from: calibration is kept beside them."""
    layout: str = "exported"
    """"blocked" when the decoder was rewritten for onnxruntime's blocked kernels (`engine/layout.py`)."""


def _split_into(model_bytes: bytes, outdir: Path, name: str, sample_rate: int) -> None:
    """Split the (already verified) model bytes into `outdir` with a manifest of the graphs' hashes."""
    from streaming_vits import graph  # noqa: PLC0415 only when a voice is first split (onnx behind it)

    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    started = time.perf_counter()
    try:
        # Split what was hashed, not the path: the file could change between the check and the split.
        model = tmp / f"{name}.onnx"
        model.write_bytes(model_bytes)
        # streaming-vits prints progress; it belongs in our logs, not on stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            meta = graph.split(model, tmp, sample_rate=sample_rate, verbose=False)
        model.unlink()
        durations = _expose_durations(tmp / meta.frontend)
        layout = rewrite_decoder(tmp / meta.decoder, meta.seam.z_p, meta.seam.mask, meta.seam.g)
        manifest = {
            "version": _MANIFEST_VERSION,
            "model_sha256": sha256_bytes(model_bytes),
            "frontend": {"file": meta.frontend, "sha256": sha256_bytes((tmp / meta.frontend).read_bytes())},
            "decoder": {"file": meta.decoder, "sha256": sha256_bytes((tmp / meta.decoder).read_bytes())},
            "seam": {"z_p": meta.seam.z_p, "mask": meta.seam.mask, "g": meta.seam.g},
            "hop": int(meta.hop),
            "frontend_inputs": list(meta.frontend_inputs),
            "durations": durations,
            "decoder_layout": layout,
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            tmp.rename(outdir)
        except OSError:
            if not (outdir / _MANIFEST).is_file():  # another process won the race: its graphs are as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("voice split into graphs", extra={"split_seconds": round(time.perf_counter() - started, 2)})


def _expose_durations(frontend: Path) -> str | None:
    """Make the frontend also output its per-phoneme-id frame counts (word timings come from them).

    Piper's durations are the graph's one `Ceil` (what piper's own alignment patch exposes); a graph without
    exactly one is left as it is, and that voice gives no word timings.
    """
    import onnx  # noqa: PLC0415 only when a voice is first split

    model = onnx.load(str(frontend))
    ceils: list[str] = [str(out) for node in model.graph.node if node.op_type == "Ceil" for out in node.output]
    if len(ceils) != 1 or any(o.name == ceils[0] for o in model.graph.output):
        return None
    info = onnx.ValueInfoProto()
    info.name = ceils[0]
    model.graph.output.append(info)
    onnx.save(model, str(frontend))
    return ceils[0]


def rewrite_decoder(decoder: Path, z_p: str, mask: str, g: str | None) -> str:
    """Rewrite the decoder for onnxruntime's blocked convolution kernels (`engine/layout.py`) where it can be.

    Returns which decoder was kept: "blocked", or "exported" when the rewrite does not apply or does not match.
    """
    import onnx  # noqa: PLC0415 only when a voice is first split

    data = decoder.read_bytes()
    declared = onnx.load_from_string(data).graph.input
    dims = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in declared}
    rng = np.random.default_rng(0)

    def feed(frames: int) -> layout.Feed:
        inputs: layout.Feed = {
            z_p: rng.standard_normal((1, dims[z_p][1], frames)).astype(np.float32),
            mask: np.ones((1, 1, frames), dtype=np.float32),
        }
        if g is not None:
            inputs[g] = rng.standard_normal((1, dims[g][1], 1)).astype(np.float32)
        return inputs

    started = time.perf_counter()
    try:
        rewritten = layout.rewrite(data, feed)
    except Exception as exc:  # onnx and onnxruntime raise many types; the exported graph is sound, so keep it
        logger.warning("decoder rewrite failed; the exported graph is kept", extra={"error_type": type(exc).__name__})
        rewritten = None
    if rewritten is None:
        return "exported"
    decoder.write_bytes(rewritten)
    seconds = round(time.perf_counter() - started, 2)
    logger.info("decoder rewritten for blocked kernels", extra={"rewrite_seconds": seconds})
    return "blocked"


def _read_verified(outdir: Path, model_sha256: str) -> SplitFiles:
    """The graphs of `outdir` if its manifest names this model and every graph matches its hash."""
    manifest = json.loads((outdir / _MANIFEST).read_text())
    if manifest.get("version") != _MANIFEST_VERSION or manifest.get("model_sha256") != model_sha256:
        raise GraphCacheError("split graphs were made from another model")
    blobs = {}
    for part in ("frontend", "decoder"):
        file = outdir / Path(manifest[part]["file"]).name
        data = file.read_bytes()
        if sha256_bytes(data) != manifest[part]["sha256"]:
            raise GraphCacheError(f"split {part} graph does not match its sha256")
        blobs[part] = data
    seam = manifest["seam"]
    return SplitFiles(
        frontend=blobs["frontend"],
        decoder=blobs["decoder"],
        z_p=seam["z_p"],
        mask=seam["mask"],
        g=seam.get("g"),
        hop=int(manifest["hop"]),
        frontend_inputs=tuple(manifest["frontend_inputs"]),
        durations=manifest.get("durations"),
        layout=str(manifest.get("decoder_layout", "exported")),
        folder=outdir,
    )


def split_files(model_bytes: bytes, voice_id: str, sample_rate: int, cache_root: Path) -> SplitFiles:
    """The voice's split graphs from the cache (made now if missing or not matching), verified by sha256."""
    model_sha = sha256_bytes(model_bytes)
    outdir = private_dir(cache_root) / f"{voice_id}-{model_sha[:16]}-v{_MANIFEST_VERSION}"
    if (outdir / _MANIFEST).is_file():
        try:
            return _read_verified(outdir, model_sha)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A damaged or tampered cache entry is rebuilt, never used.
            logger.warning("split graphs rejected; splitting again", extra={"error_type": type(exc).__name__})
            shutil.rmtree(outdir, ignore_errors=True)
    _split_into(model_bytes, outdir, voice_id, sample_rate)
    return _read_verified(outdir, model_sha)


_fallback_root: Path | None = None
_fallback_lock = threading.Lock()


def fallback_root() -> Path:
    """One private temporary folder per process, for when the configured cache cannot be used."""
    global _fallback_root
    with _fallback_lock:
        if _fallback_root is None:
            _fallback_root = Path(tempfile.mkdtemp(prefix="tts-service-graphs-"))
        return _fallback_root


HEAD = -1
"""The session index of the head pair: all cores for one short run (a stream's frontend and first window)."""


class VoiceGraphs:
    """One voice's split graphs with a (frontend, decoder) session pair per synthesis worker, and a head pair."""

    def __init__(
        self,
        files: SplitFiles,
        options: ort.SessionOptions,
        workers: int,
        *,
        head_options: ort.SessionOptions | None = None,
        sample_rate: int = 22050,
        phoneme_ids: Sequence[list[int]],
        defaults: tuple[float, float, float],
        default_speaker: int | None,
    ) -> None:
        self.files = files
        self.hop = files.hop
        self.sample_rate = sample_rate
        self.defaults = defaults
        """The voice's (noise_scale, length_scale, noise_w)."""
        self.default_speaker = default_speaker
        self.sessions = [
            (
                ort.InferenceSession(files.frontend, sess_options=options, providers=["CPUExecutionProvider"]),
                ort.InferenceSession(files.decoder, sess_options=options, providers=["CPUExecutionProvider"]),
            )
            for _ in range(workers)
        ]
        self.head = (
            (
                ort.InferenceSession(files.frontend, sess_options=head_options, providers=["CPUExecutionProvider"]),
                ort.InferenceSession(files.decoder, sess_options=head_options, providers=["CPUExecutionProvider"]),
            )
            if head_options is not None
            else self.sessions[0]
        )
        """Multi-threaded sessions for the one run a listener waits on: a stream's first audio. With single-
        threaded workers that run took ~135 ms of a paragraph's first audio, ~90 ms on two threads (engine/pool.py)."""
        # Every frontend session runs the same graph: where its durations output sits is known once, not per run.
        names = [o.name for o in self.sessions[0][0].get_outputs()]
        self._durations_at = names.index(files.durations) if files.durations in names else None
        self.margin = MARGIN_FRAMES
        self.seconds_per_frame: float | None = None
        """How long a worker's decoder run takes per frame it runs (margins included), averaged over recent runs of
        at least `_PACE_FRAMES`; None until one ran. A stream sizes its first window with it."""
        self.gain = 1.0
        """Fixed gain for streamed audio: per-piece peak normalisation would need the whole piece first."""
        self._calibration_ids = list(phoneme_ids)
        self._reference: float | None = None
        self._reference_lock = threading.Lock()
        if not self._load_calibration():
            self._calibrate(phoneme_ids)
            self._save_calibration()

    def reference_lufs(self) -> float:
        """Loudness (LUFS) of the calibration texts decoded at the stream gain: how loud this voice streams.

        Measured on first use (a loudness target on a stream), then kept beside the graphs.
        """
        with self._reference_lock:
            if self._reference is None:
                saved = self._read_calibration().get("reference_lufs")
                if isinstance(saved, float) and -70.0 < saved < 0.0:
                    self._reference = saved
                else:
                    parts = []
                    for ids in self._calibration_ids:
                        z_p, mask, g, _ = self.frontend(0, ids, self.scales(0.0, None, 0.0), None)
                        parts.append(self._decode(0, z_p, mask, g, 0, z_p.shape[2], margin=0) * self.gain)
                    self._reference = integrated_lufs(np.concatenate(parts), self.sample_rate)
                    self._save_calibration()
            return self._reference

    def _read_calibration(self) -> dict[str, object]:
        path = self._calibration_path()
        with contextlib.suppress(OSError, ValueError):
            if path is not None:
                saved = json.loads(path.read_text())
                if isinstance(saved, dict):
                    return saved
        return {}

    def _calibration_path(self) -> Path | None:
        return None if self.files.folder is None else self.files.folder / "calibration.json"

    def _load_calibration(self) -> bool:
        """The gain and margin measured before (seconds of decodes saved at every start), if they are sane."""
        path = self._calibration_path()
        if path is None:
            return False
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(path.read_text())
            gain, margin = float(saved["gain"]), int(saved["margin"])
            if 0.0 < gain < 1e3 and margin in (*MARGIN_CANDIDATES, MARGIN_FRAMES):
                self.gain, self.margin = gain, margin
                return True
        return False

    def _save_calibration(self) -> None:
        path = self._calibration_path()
        if path is not None:
            saved = {"gain": self.gain, "margin": self.margin}
            if self._reference is not None:
                saved["reference_lufs"] = self._reference
            with contextlib.suppress(OSError):  # a read-only folder: calibrate again next time
                path.write_text(json.dumps(saved))

    def _calibrate(self, phoneme_ids: Sequence[list[int]]) -> None:
        """Measure the voice's gain and decode margin with a few short decodes (worker 0's sessions).

        Every reference decode is shorter than a decode window, so calibration grows no arena beyond what
        synthesis itself would.
        """
        peak = 0.0
        references = []
        for ids in phoneme_ids:
            z_p, mask, g, _ = self.frontend(0, ids, self.scales(0.0, None, 0.0), None)
            whole = self._decode(0, z_p, mask, g, 0, z_p.shape[2], margin=0)
            references.append((z_p, mask, g, whole))
            peak = max(peak, float(np.max(np.abs(whole))))
        self.gain = _GAIN_HEADROOM / peak if peak > 1e-4 else 1.0
        z_p, mask, g, whole = max(references, key=lambda ref: int(ref[0].shape[2]))
        total = int(z_p.shape[2])
        parts = [(0, 24), (24, total // 2), (total // 2, total)]
        for margin in MARGIN_CANDIDATES:
            pieces = np.concatenate([self._decode(0, z_p, mask, g, a, b, margin=margin) for a, b in parts])
            if pieces.shape == whole.shape and float(np.max(np.abs(pieces - whole))) < _MATCH_TOLERANCE:
                self.margin = margin
                return
        self.margin = MARGIN_FRAMES

    def _pair(self, worker: int) -> tuple[ort.InferenceSession, ort.InferenceSession]:
        return self.head if worker == HEAD else self.sessions[worker]

    def trim(self) -> None:
        """Give back what the arena holds beyond its first region (a tiny run with shrinkage on).

        Called when synthesis goes idle: the arena's speed matters within a request, and what it keeps between
        requests is the peak of the runs that were in progress at once, which an idle server has no use for.
        onnxruntime gives a region back only if nothing in it is in use, so nothing outlives a run in the arena:
        `frontend` and `decode` hand back copies, and this run's own input and output are bound to numpy buffers.
        Before, held views kept whole regions (318 and 620 MB still allocated after a trim, in the shim's log):
        3 s after 2,000 unpunctuated characters at speed 0.5 the shim held 546-837 MB (8 texts), now 594-605 MB.
        """
        z_p, mask, g, _ = self.frontend(0, [0, 1, 0], self.scales(0.0, None, 0.0), None)
        session = self.sessions[0][1]
        feed = self._decoder_feed(z_p, mask, g)
        out = np.empty(session.run(None, feed)[0].shape, dtype=np.float32)
        binding = session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(session.get_outputs()[0].name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        # Every session shares one arena (engine/voices.py): one shrinking run gives back what all of them used
        # (in-process: 536 MB after three 512-frame decodes, 420 MB after one pair's run, the same after all pairs').
        session.run_with_iobinding(binding, options)

    def scales(self, noise_scale: float | None, length_scale: float | None, noise_w: float | None) -> FloatArray:
        noise, length, width = self.defaults
        return np.array(
            [
                noise if noise_scale is None else noise_scale,
                length if length_scale is None else length_scale,
                width if noise_w is None else noise_w,
            ],
            dtype=np.float32,
        )

    def frontend(
        self,
        worker: int,
        ids: list[int],
        scales: FloatArray,
        speaker_id: int | None,
    ) -> tuple[FloatArray, FloatArray, FloatArray | None, npt.NDArray[np.int64] | None]:
        """The frontend's outputs, and the frames of each phoneme id when the graph gives them."""
        # Own copies: onnxruntime's outputs are views of its arena, and a view still held keeps the whole region it
        # sits in from the idle trim (`trim`). The copies cost 12 us for a 512-frame window's audio and 43 us for
        # a 1,200-frame z_p (timeit), against ~0.3 s for that window's run.
        out = [np.array(o) for o in self._pair(worker)[0].run(None, self._frontend_feed(ids, scales, speaker_id))]
        durations = None
        if self._durations_at is not None:
            durations = np.asarray(out.pop(self._durations_at)).reshape(-1).astype(np.int64)
        return out[0], out[1], (out[2] if len(out) > 2 else None), durations

    def _frontend_feed(
        self, ids: list[int], scales: FloatArray, speaker_id: int | None
    ) -> dict[str, npt.NDArray[np.generic]]:
        feed: dict[str, npt.NDArray[np.generic]] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        if "sid" in self.files.frontend_inputs:
            # As piper does: no speaker named means the voice's default speaker.
            sid = self.default_speaker if speaker_id is None else speaker_id
            feed["sid"] = np.array([sid or 0], dtype=np.int64)
        return feed

    def _decoder_feed(self, z_p: FloatArray, mask: FloatArray, g: FloatArray | None) -> dict[str, FloatArray]:
        feed = {self.files.z_p: z_p, self.files.mask: mask}
        if self.files.g is not None and g is not None:
            feed[self.files.g] = g
        return feed

    def decode(
        self, worker: int, z_p: FloatArray, mask: FloatArray, g: FloatArray | None, a: int, b: int
    ) -> FloatArray:
        """Samples of output frames [a, b), computed with this voice's margins, which are discarded."""
        started = time.perf_counter()
        audio = self._decode(worker, z_p, mask, g, a, b, margin=self.margin)
        lo, hi = _span(int(z_p.shape[2]), a, b, self.margin)
        run = hi - lo
        if worker != HEAD and run >= _PACE_FRAMES:
            pace = (time.perf_counter() - started) / run
            last = self.seconds_per_frame
            # A plain float swapped under the GIL: a lost update between two workers only drops one sample.
            self.seconds_per_frame = pace if last is None else last + _PACE_WEIGHT * (pace - last)
        return audio

    def _decode(
        self,
        worker: int,
        z_p: FloatArray,
        mask: FloatArray,
        g: FloatArray | None,
        a: int,
        b: int,
        *,
        margin: int,
    ) -> FloatArray:
        total = z_p.shape[2]
        lo, hi = _span(total, a, b, margin)
        feed = self._decoder_feed(z_p[:, :, lo:hi], mask[:, :, lo:hi], g)
        audio = np.asarray(self._pair(worker)[1].run(None, feed)[0], dtype=np.float32).reshape(-1)
        start = (a - lo) * self.hop
        return audio[start : start + (b - a) * self.hop].copy()  # off the arena, as the frontend's outputs
