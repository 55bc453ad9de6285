"""What the operational layer costs and saves, measured in one run with interleaved rounds.

  middleware  GET /health on the full app (request id, access log, metrics, CORS, auth, rate limit, body
              limit, timeout) against the same route on a bare FastAPI app: the per-request overhead.
  cache       POST /tts of one paragraph: a miss (cache cleared) against a hit, and the metrics' own count.
Printed: medians, the overhead in microseconds, and the miss/hit ratio.

    python bench/bench_ops.py [--rounds 200] [--tts-rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MODELS_DIR", str(REPO / "models"))

from tts_service.api import health, tts  # noqa: E402
from tts_service.app import create_app  # noqa: E402
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import get_engine  # noqa: E402
from tts_service.observability import Metrics  # noqa: E402

PARAGRAPH = (
    "Operators like numbers. This paragraph is synthesized once and then served from the cache, "
    "so the second request costs a lookup and a copy instead of a few hundred milliseconds of compute."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--tts-rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the access log would measure the terminal, not the service

    settings = Settings(api_keys="bench-key", cors_allowed_origins="https://app.example", rate_limit_per_minute=10**9)
    full = TestClient(create_app(health.router, tts.router, settings=settings, metrics=Metrics(process=False)))
    bare_app = FastAPI()
    bare_app.include_router(health.router)
    bare = TestClient(bare_app)
    headers = {"X-API-Key": "bench-key", "Origin": "https://app.example"}

    full_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(args.rounds):
        for client, sink in ((full, full_times), (bare, bare_times)):
            started = time.perf_counter()
            assert client.get("/health", headers=headers).status_code == 200
            sink.append(time.perf_counter() - started)
    full_med, bare_med = statistics.median(full_times), statistics.median(bare_times)
    print(f"GET /health median: full stack {full_med * 1e6:.0f} us, bare {bare_med * 1e6:.0f} us")
    print(f"middleware overhead: {(full_med - bare_med) * 1e6:.0f} us per request ({full_med / bare_med:.2f}x)")

    engine = get_engine()
    engine.warm_blocking()
    misses: list[float] = []
    hits: list[float] = []
    for _ in range(args.tts_rounds):
        engine.audio_cache.clear()
        for sink in (misses, hits):
            started = time.perf_counter()
            assert full.post("/tts", json={"text": PARAGRAPH}, headers=headers).status_code == 200
            sink.append(time.perf_counter() - started)
    miss_med, hit_med = statistics.median(misses), statistics.median(hits)
    print(f"POST /tts paragraph median: miss {miss_med * 1000:.1f} ms, hit {hit_med * 1000:.1f} ms")
    print(f"cache hit is {miss_med / hit_med:.0f}x faster than a miss")
    value = engine.metrics.value
    print(
        f"counters: hits {value('tts_cache_hits_total', cache='audio'):.0f}, "
        f"misses {value('tts_cache_misses_total', cache='audio'):.0f}"
    )


if __name__ == "__main__":
    main()
