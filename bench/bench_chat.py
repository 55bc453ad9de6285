"""Spoken chat latency: how soon the first sentence of an LLM reply is heard, with the LLM writing at ~30 tokens/s.

Runs the fake OpenAI server (tests/fakes) at a realistic pace and the real shim (`local/serve.py`, started here on
a loopback port, embedded memory in a temporary folder), and talks to `WS /ws/chat` with a `websockets` client.
Per round it records, on the client: the first token, the token that ends the first sentence, the first audio
frame. Next to it, in this process: the synthesis of the first sentence alone (whole, and first streamed chunk).

Goal: first audio <= (first-sentence synthesis) + 100 ms after that sentence's last token arrives, i.e. speaking
while the LLM writes adds almost nothing to the synthesis of what is already written.

    python bench/bench_chat.py [--rounds 5] [--tokens-per-second 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import httpx
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MODELS_DIR", str(REPO / "models"))

from tests.fakes.llm_server import FakeLlmServer  # noqa: E402
from tests.support.shim import free_port  # noqa: E402
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import Engine  # noqa: E402

FIRST_SENTENCE = "Sure, the weather in Lisbon should be sunny and mild for most of the afternoon."
REPLY = (
    f"{FIRST_SENTENCE} Temperatures will reach about twenty two degrees by three o'clock. "
    "A light breeze comes in from the ocean in the evening, so a thin jacket is a good idea. "
    "Rain is not expected before the weekend."
)


def start_shim(fake: FakeLlmServer, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "fake-model",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.openai_url,
        "LLM_MAX_RETRIES": "0",
        "DATA_DIR": data_dir,
        "LOG_LEVEL": "warning",
        "RATE_LIMIT_ENABLED": "false",
        "TTS_CACHE_MB": "0",  # every round must synthesize, not replay the previous round's audio
    }
    proc = subprocess.Popen([sys.executable, str(REPO / "local" / "serve.py")], env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=30).status_code == 200:
                return proc, f"ws://127.0.0.1:{port}/ws/chat"
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the shim did not become ready within 60 s")


async def one_turn(url: str, message: str) -> dict[str, float]:
    """Client-side times (seconds from sending) of the first token, first-sentence end, first audio, done."""
    marks: dict[str, float] = {}
    text = ""
    async with websockets.connect(url, max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "chat", "message": message}))
        async for frame in ws:
            now = time.perf_counter() - started
            if isinstance(frame, bytes):
                marks.setdefault("first_audio", now)
                continue
            event = json.loads(frame)
            if event["type"] == "token":
                marks.setdefault("first_token", now)
                text += event["token"]
                if "sentence_end" not in marks and FIRST_SENTENCE in text:
                    marks["sentence_end"] = now
            elif event["type"] == "done":
                marks["done"] = now
                break
            elif event["type"] == "error":
                raise SystemExit(f"turn failed: {event}")
    return marks


def synth_baseline(rounds: int) -> tuple[float, float]:
    """Median seconds to synthesize FIRST_SENTENCE whole, and to its first streamed chunk, in this process."""
    engine = Engine(Settings(tts_cache_mb=0))
    engine.warm_blocking()
    req = engine.request(FIRST_SENTENCE)
    whole, first = [], []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        engine.synthesize_blocking(req)
        whole.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        chunks = engine.iter_stream_chunks(req)
        assert isinstance(chunks, Generator)  # typed as an Iterator; closing it releases the worker
        next(chunks)
        first.append(time.perf_counter() - t0)
        chunks.close()
    return statistics.median(whole[1:]), statistics.median(first[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    args = parser.parse_args()

    whole, first_chunk = synth_baseline(args.rounds)
    with FakeLlmServer(token_delay=1.0 / args.tokens_per_second) as fake, tempfile.TemporaryDirectory() as data:
        proc, url = start_shim(fake, data)
        try:
            fake.script("Warming up the streaming path. Done.")
            asyncio.run(one_turn(url, "warm up"))
            rounds = []
            for _ in range(args.rounds):
                fake.script(REPLY)
                rounds.append(asyncio.run(one_turn(url, "What is the weather in Lisbon this afternoon?")))
        finally:
            proc.terminate()
            proc.wait(30)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    after_sentence = [r["first_audio"] - r["sentence_end"] for r in rounds]
    tokens_first = len(FIRST_SENTENCE.split())
    words = len(REPLY.split())
    print(f"LLM pace: {args.tokens_per_second:g} tokens/s; first sentence: {tokens_first} tokens, reply {words}")
    print(f"rounds: {args.rounds} (medians, seconds from sending the message, client side over WS /ws/chat)")
    print(f"  first token                     {med('first_token'):.3f}")
    print(f"  first sentence's last token     {med('sentence_end'):.3f}")
    print(f"  first audio frame               {med('first_audio'):.3f}")
    print(f"  done                            {med('done'):.3f}")
    print(f"  first token -> first audio      {med('first_audio') - med('first_token'):.3f}")
    print("first sentence synthesized alone (this process):")
    print(f"  whole sentence                  {whole:.3f}")
    print(f"  first streamed chunk            {first_chunk:.3f}")
    budget = whole + 0.100
    worst = max(after_sentence)
    median_after = statistics.median(after_sentence)
    print(f"first audio after the sentence's last token: median {median_after:.3f}, worst {worst:.3f}")
    print(f"goal: <= whole-sentence synthesis + 0.100 = {budget:.3f} -> {'MET' if worst <= budget else 'MISSED'}")
    print(
        f"ratio (median after-last-token / whole-sentence synthesis): {statistics.median(after_sentence) / whole:.2f}"
    )


if __name__ == "__main__":
    main()
