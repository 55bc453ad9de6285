"""onnxruntime session settings for Piper: one stream's speed and two streams' throughput, per setting.

Each setting builds one session; one stream = a paragraph synthesized alone, two streams = two threads
synthesizing on that same session at once (how the server's worker pool drives it). Rounds are interleaved
across settings so background load affects them alike; medians are printed.

    python bench/bench_threads.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnxruntime as ort
from piper import PiperVoice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.raw_worker import plain_options as plain
from bench.raw_worker import voice_with
from tts_service.engine.voices import build_session_options

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank on a warm afternoon. "
    "Doctor Smith measured three and a half liters of water, which was enough for the whole test. "
    "Meanwhile the weather stayed calm and the birds kept singing in the tall old trees by the road. "
    "Everyone agreed that the afternoon had been a pleasant surprise for the whole small town."
)


SETTINGS: dict[str, Callable[[], ort.SessionOptions | None]] = {
    "stock PiperVoice.load": lambda: None,
    "service default (2 thr, spin, no arena)": lambda: build_session_options(2),
    "ORT_ALLOW_SPINNING=false": lambda: build_session_options(2, allow_spinning=False),
    "2 thr, no spin, arena": lambda: plain(2, False, True),
    "1 thr, no spin, no arena": lambda: plain(1, False, False),
}


def audio_seconds(voice: PiperVoice) -> float:
    return sum(c.audio_float_array.size for c in voice.synthesize(PARAGRAPH)) / voice.config.sample_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    voices = {name: voice_with(make()) for name, make in SETTINGS.items()}
    single: dict[str, list[float]] = {name: [] for name in voices}
    double: dict[str, list[float]] = {name: [] for name in voices}
    for voice in voices.values():
        audio_seconds(voice)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(args.rounds):
            for name, voice in voices.items():
                t0 = time.perf_counter()
                secs = audio_seconds(voice)
                single[name].append(secs / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                secs = sum(pool.map(lambda v: audio_seconds(v), [voice, voice]))
                double[name].append(secs / (time.perf_counter() - t0))
    base = statistics.median(single["stock PiperVoice.load"])
    print(f"{'setting':<38}{'1 stream audio-s/s':>20}{'2 streams audio-s/s':>21}{'1-stream vs stock':>19}")
    for name in voices:
        one, two = statistics.median(single[name]), statistics.median(double[name])
        print(f"{name:<38}{one:>20.1f}{two:>21.1f}{one / base:>19.2f}")


if __name__ == "__main__":
    main()
