"""What a few seconds of idleness cost the next request on this machine: memory reads and a stream's first audio.

Two measurements, each after the process slept `gap` seconds (rounds interleaved, medians printed):
  read        summing a 50 MB array the process touched before: memory bandwidth as seen after an idle spell;
  first audio `Engine.iter_stream_chunks` in this process (arena trim off, so only the idle time differs): the
              seconds until the first chunk of a fresh 64-word paragraph.
On a virtual machine whose host reclaims or demotes idle guest memory, both grow with the gap although the
process does the same work; this is what the first-audio rows of docs/performance.md include, since the systems
there take turns and ours sits idle while the others run.

    python bench/bench_idle.py [--rounds 5] [--gaps 0.2 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.texts import TextGen
from tts_service.config import Settings
from tts_service.engine.synth import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gaps", type=float, nargs="+", default=[0.2, 3.0])
    args = parser.parse_args()
    data = np.ones(50 * 2**20 // 8)
    data.sum()
    engine = Engine(Settings(arena_trim_idle_secs=0, tts_cache_mb=0))
    engine.warm_blocking()
    gen = TextGen(41)
    reads: dict[float, list[float]] = {gap: [] for gap in args.gaps}
    firsts: dict[float, list[float]] = {gap: [] for gap in args.gaps}
    for _ in range(args.rounds):
        for gap in args.gaps:
            time.sleep(gap)
            t0 = time.perf_counter()
            data.sum()
            reads[gap].append(time.perf_counter() - t0)
            req = engine.request(gen.make("paragraph", 64))
            time.sleep(gap)
            t0 = time.perf_counter()
            chunks = engine.iter_stream_chunks(req)
            next(chunks)
            firsts[gap].append(time.perf_counter() - t0)
            for _chunk in chunks:
                pass
    print(f"{'idle before (s)':>16}{'50 MB read (ms)':>18}{'first audio (s)':>18}")
    for gap in args.gaps:
        print(f"{gap:>16.1f}{statistics.median(reads[gap]) * 1000:>18.1f}{statistics.median(firsts[gap]):>18.3f}")


if __name__ == "__main__":
    main()
