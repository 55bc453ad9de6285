"""Time to first audio and total time of the streaming transports against raw whole-sentence synthesis, in one run.

For (a) a 60-word, 4-sentence paragraph and (b) one 40-word sentence, alternated round by round:
  raw        `Engine.synthesize_blocking` in this process: whole sentences, the audio of a non-streaming server;
  sentences  `Engine.iter_chunks` in this process: first audio when the first whole sentence is done (what
             sentence-by-sentence streaming without chunked decoding gives);
  chunked    `Engine.iter_stream_chunks` in this process: chunked decoding, no transport;
  ws         WS /ws/tts on a shim started here (loopback): first binary audio frame, then `end`;
  http       POST /tts/stream on the same shim: first PCM bytes after the WAV header, then the last byte.
The shim runs with TTS_CACHE_MB=0 so every request is synthesized. Printed: medians, and the ratios against the
streaming goals (first audio < 30% of the paragraph's raw time and < 50% of the long sentence's, so streaming is
heard well before a whole answer would be; total within 1.15x of raw, so streaming costs little throughput).

    python bench/bench_stream.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MODELS_DIR", str(REPO / "models"))
sys.path.insert(0, str(REPO))

from bench.common import SHIM_ENV, Stream, http_stream, ws_stream  # noqa: E402
from tests.support.shim import running_shim  # noqa: E402
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import Engine  # noqa: E402

TEXTS = {
    # 60 words, 4 sentences.
    "paragraph": (
        "The small boat left the harbor just before sunrise, carrying three fishermen and their heavy nets. "
        "A cold wind pushed against the sails as they moved past the rocky point near the old lighthouse. "
        "By noon the sky had cleared and the water turned a deep shade of blue. "
        "They returned that evening with a full catch and tired smiles."
    ),
    # 40 words, one sentence.
    "long_sentence": (
        "When the old librarian opened the wooden doors that morning she found a crowd of curious "
        "students waiting on the stone steps because someone had announced that the rare maps would be "
        "shown to the public for one day only"
    ),
}
GOALS = {"paragraph": 0.30, "long_sentence": 0.50}
TOTAL_GOAL = 1.15

Result = tuple[float, float, float]  # (first audio seconds, total seconds, CPU seconds)


def timed_iter(chunks: object) -> Result:
    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    for _ in chunks:  # type: ignore[attr-defined]
        if first is None:
            first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0, time.process_time() - c0


def as_result(stream: Stream) -> Result:
    return stream.first, stream.total, stream.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    for name, text in TEXTS.items():
        print(f"{name}: {len(text.split())} words")
    engine = Engine(Settings())
    engine.warm_blocking()
    stack = contextlib.ExitStack()
    shim = stack.enter_context(running_shim(SHIM_ENV, ready_secs=120))
    proc, port = shim.proc, int(shim.base.rsplit(":", 1)[1])
    client = stack.enter_context(httpx.Client(base_url=shim.base, timeout=300))
    ws_url = f"ws://127.0.0.1:{port}/ws/tts"

    def raw(text: str) -> Result:
        t0, c0 = time.perf_counter(), time.process_time()
        engine.synthesize_blocking(engine.request(text))
        total = time.perf_counter() - t0
        return total, total, time.process_time() - c0

    runners: dict[str, Callable[[str], Result]] = {
        "raw": raw,
        "sentences": lambda text: timed_iter(engine.iter_chunks(engine.request(text))),
        "chunked": lambda text: timed_iter(engine.iter_stream_chunks(engine.request(text))),
        "ws": lambda text: as_result(asyncio.run(ws_stream(ws_url, text, proc.pid))),
        "http": lambda text: as_result(http_stream(client, text, proc.pid)),
    }
    results: dict[tuple[str, str], list[Result]] = {}
    try:
        for runner in runners.values():
            runner("Warm up, please.")
        for _ in range(args.rounds):
            for name, text in TEXTS.items():
                for kind, runner in runners.items():
                    results.setdefault((kind, name), []).append(runner(text))
    finally:
        client.close()
        stack.close()

    print(f"\nmedians of {args.rounds} rounds on {os.cpu_count()} cores; seconds; cpu = CPU seconds of the process")
    print("that synthesized (this one for raw/sentences/chunked, the shim for ws/http)")
    header = f"{'text':<14} {'path':<10} {'first':>7} {'total':>7} {'cpu':>7} {'first/raw':>10} {'total/raw':>10}"
    print(header + f" {'cpu/raw':>8}")
    verdicts = []
    for name in TEXTS:
        raw_total = statistics.median(r[1] for r in results[("raw", name)])
        raw_cpu = statistics.median(r[2] for r in results[("raw", name)])
        for kind in runners:
            first, total, cpu = (statistics.median(r[i] for r in results[(kind, name)]) for i in range(3))
            print(
                f"{name:<14} {kind:<10} {first:7.3f} {total:7.3f} {cpu:7.3f} {first / raw_total:10.2f} "
                f"{total / raw_total:10.2f} {cpu / raw_cpu:8.2f}"
            )
            if kind in ("ws", "http"):
                ok_first = first / raw_total < GOALS[name]
                ok_total = cpu / raw_cpu <= TOTAL_GOAL
                verdicts.append(
                    f"{name:<14} {kind:<5} first audio {first / raw_total:.2f} of raw (goal < {GOALS[name]:.2f}: "
                    f"{'met' if ok_first else 'MISSED'}); compute {cpu / raw_cpu:.2f}x raw, "
                    f"wall {total / raw_total:.2f}x "
                    f"(goal <= {TOTAL_GOAL}: {'met' if ok_total else 'MISSED'})"
                )
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
