"""Encode time of every audio format against the synthesis time of the same speech, in one run.

For a 60-word, 4-sentence paragraph, each round synthesizes it with chunked decoding (`Engine.stream`, the audio
cache off, so every round really synthesizes), then encodes those very chunks in each format, chunk by chunk as a
stream does (`tts_service.audio.new_encoder`), and whole as a buffered answer does (`encode_whole`). Printed per
format: the median encode time of the whole stream, its share of the synthesis time, the encode time of the first
chunk (what it adds to the first bytes), the whole-file encode time, and the size and bit rate.

    python bench/bench_encode.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MODELS_DIR", str(REPO / "models"))

from tts_service.audio import (  # noqa: E402
    FORMATS,
    AudioFormat,
    encode_whole,
    new_encoder,
)
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import Engine, SpeechChunk  # noqa: E402

TEXT = (
    "The small boat left the harbor just before sunrise, carrying three fishermen and their heavy nets. "
    "A cold wind pushed against the sails as they moved past the rocky point near the old lighthouse. "
    "By noon the sky had cleared and the water turned a deep shade of blue. "
    "They returned that evening with a full catch and tired smiles."
)


async def synthesize(engine: Engine) -> tuple[list[SpeechChunk], float]:
    started = time.perf_counter()
    chunks = [chunk async for chunk in engine.stream(engine.request(TEXT))]
    return chunks, time.perf_counter() - started


def encode_stream(fmt: AudioFormat, chunks: list[SpeechChunk]) -> tuple[float, float, int, int]:
    """(total encode seconds, first-chunk encode seconds, bytes, output rate) of one chunk-by-chunk encode."""
    encoder = new_encoder(fmt, chunks[0].sample_rate, whole=fmt == "flac")
    size = 0
    first = 0.0
    for i, chunk in enumerate(chunks):
        size += len(encoder.encode(chunk.pcm))
        if i == 0:
            first = encoder.encode_seconds
    size += len(encoder.finish())
    return encoder.encode_seconds, first, size, encoder.sample_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = Engine(Settings(tts_cache_mb=0))
    engine.warm_blocking()
    synth: list[float] = []
    stream: dict[str, list[float]] = {f: [] for f in FORMATS}
    first: dict[str, list[float]] = {f: [] for f in FORMATS}
    whole: dict[str, list[float]] = {f: [] for f in FORMATS}
    sizes: dict[str, int] = {}
    rates: dict[str, int] = {}
    audio_seconds = 0.0
    for _ in range(args.rounds):
        chunks, seconds = asyncio.run(synthesize(engine))
        synth.append(seconds)
        pcm = np.concatenate([c.pcm for c in chunks])
        audio_seconds = pcm.size / chunks[0].sample_rate
        for fmt in FORMATS:
            total, first_chunk, size, rate = encode_stream(fmt, chunks)
            stream[fmt].append(total)
            first[fmt].append(first_chunk)
            sizes[fmt], rates[fmt] = size, rate
            started = time.perf_counter()
            encode_whole(pcm, chunks[0].sample_rate, fmt)
            whole[fmt].append(time.perf_counter() - started)
    synthesis = statistics.median(synth)
    print(
        f"{len(chunks)} chunks, {audio_seconds:.1f} s of audio; synthesis (chunked, median of {args.rounds}): "
        f"{synthesis * 1000:.0f} ms"
    )
    columns = ["format", "rate (Hz)", "stream encode (ms)", "of synthesis", "first chunk (ms)", "whole encode (ms)"]
    print("| " + " | ".join([*columns, "KiB", "kbit/s"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for fmt in FORMATS:
        streamed = statistics.median(stream[fmt])
        print(
            f"| {fmt} | {rates[fmt]} | {streamed * 1000:.1f} | {streamed / synthesis:.1%} "
            f"| {statistics.median(first[fmt]) * 1000:.1f} | {statistics.median(whole[fmt]) * 1000:.1f} "
            f"| {sizes[fmt] / 1024:.0f} | {sizes[fmt] * 8 / audio_seconds / 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
