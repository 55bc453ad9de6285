"""Soak: 8 loopback clients for 120 s mixing /tts, both streams and chat against the fake LLM.

Only intended refusals (429, 503) may interrupt them; after a 30 s warm-up the shim's resident memory may not grow
by 10% or more, and its file descriptors and threads stay flat. The clients pause at the end of the warm-up and at
the end, so memory and descriptors are measured with the shim idle: what it holds then is what it keeps. Threads
are compared under load (the peak of the last 30 s against the peak of the warm-up): the request thread pools
grow with concurrency and let idle threads go after a while, so an idle count depends on the moment.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.fakes.llm_server import FakeLlmServer
from tests.support.process import Usage, idle, usage
from tests.support.shim import Shim, running_shim
from tests.support.wait import settle

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

CLIENTS = 8
DURATION_SECS = 120.0
WARM_UP_SECS = 30.0
MAX_GROWTH = 0.10
FD_SLACK = 4
THREAD_SLACK = 2
INTENDED = {429, 503}
WORDS = "river morning station garden letter window summer market evening bridge lantern harbour".split()


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, status: int | str) -> None:
        with self.lock:
            if status in (200, 101):
                self.ok[op] += 1
            elif status in INTENDED:
                self.refused[f"{op}:{status}"] += 1
            else:
                self.unexpected.append(f"{op}: {status}")


class Pause:
    """Lets the test park every client between two operations, then let them go on."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.go = threading.Event()
        self.go.set()
        self.parked = 0
        self.changed = threading.Condition()
        self.stop = threading.Event()

    def checkpoint(self) -> None:
        if self.go.is_set():
            return
        with self.changed:
            self.parked += 1
            self.changed.notify_all()
        self.go.wait()
        with self.changed:
            self.parked -= 1

    def hold(self) -> None:
        self.go.clear()
        with self.changed:
            assert self.changed.wait_for(lambda: self.parked == self.clients or self.stop.is_set(), timeout=120)

    def release(self) -> None:
        self.go.set()


def sentence(rng: random.Random) -> str:
    return f"The {rng.choice(WORDS)} near the {rng.choice(WORDS)} was {rng.randint(2, 999)} steps away."


class Client:
    def __init__(self, n: int, shim: Shim, key: str, tally: Tally) -> None:
        self.n = n
        self.base = shim.base
        self.ws = shim.base.replace("http://", "ws://")
        self.headers = {"X-API-Key": key}
        self.tally = tally
        self.rng = random.Random(n)
        self.http = httpx.Client(base_url=shim.base, headers=self.headers, timeout=60)
        self.ops: list[tuple[str, Callable[[], int | str]]] = [
            ("tts", self.tts),
            ("tts_stream", self.tts_stream),
            ("ws_tts", self.ws_tts),
            ("ws_chat", self.ws_chat),
            ("chat", self.chat),
        ]

    def run(self, pause: Pause) -> None:
        turn = self.n
        try:
            while not pause.stop.is_set():
                pause.checkpoint()
                op, call = self.ops[turn % len(self.ops)]
                turn += 1
                try:
                    status = call()
                except Exception as exc:  # a transport failure is an unexpected outcome, not a crash of the soak
                    status = type(exc).__name__
                self.tally.record(op, status)
        finally:
            self.http.close()

    def tts(self) -> int:
        answer = self.http.post("/tts", json={"text": sentence(self.rng)})
        if answer.status_code == 200:
            assert answer.json()["duration_ms"] > 200
        return answer.status_code

    def tts_stream(self) -> int:
        body = {"text": f"{sentence(self.rng)} {sentence(self.rng)}", "format": "mp3"}
        with self.http.stream("POST", "/tts/stream", json=body) as answer:
            size = sum(len(piece) for piece in answer.iter_bytes())
            if answer.status_code == 200:
                assert size > 1000
            return answer.status_code

    def ws_tts(self) -> int | str:
        with connect(f"{self.ws}/ws/tts", additional_headers=self.headers, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "speak", "text": sentence(self.rng)}))
            return self._until(ws, "end")

    def ws_chat(self) -> int | str:
        with connect(f"{self.ws}/ws/chat", additional_headers=self.headers, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "chat", "message": sentence(self.rng), "conversation_id": f"soak-{self.n}"}))
            return self._until(ws, "done")

    def chat(self) -> int:
        body = {"message": sentence(self.rng), "conversation_id": f"soak-{self.n}"}
        return self.http.post("/chat", json=body).status_code

    @staticmethod
    def _until(ws: Any, last: str) -> int | str:
        audio = 0
        while True:
            frame = ws.recv(timeout=60)
            if isinstance(frame, bytes):
                audio += len(frame)
                continue
            event = json.loads(frame)
            if event["type"] == "error":
                return 429 if event["code"] == "rate_limited" else 503 if event["code"] == "busy" else event["code"]
            if event["type"] == last:
                return 101 if audio else "no audio"


@pytest.fixture(scope="module")
def shim(logs_dir: Path) -> Iterator[tuple[Shim, list[str]]]:
    keys = [f"sk-soak-{n}-{'x' * 12}" for n in range(CLIENTS)]
    with FakeLlmServer(default_reply="Sure. Here is a short answer, spoken as it is written.") as llm:
        llm.token_delay = 0.01
        env = {
            "API_KEYS": ",".join(keys),
            "DATA_DIR": str(logs_dir / "soak-data"),
            "TTS_CACHE_MB": "4",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "LLM_PROVIDER": "openai",
            "LLM_MODEL": "fake-model",
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_BASE_URL": llm.openai_url,
            "LLM_TIMEOUT_SECS": "20",
            "LOG_LEVEL": "warning",
        }
        with running_shim(env, logs_dir / "soak-shim.log") as running:
            yield running, keys


def quiet_usage(shim: Shim, key: str) -> Usage:
    assert settle(lambda: idle(shim.base, {"X-API-Key": key}), 60)
    return usage(shim.proc.pid)


def test_soak_mixed_clients_hold_steady(shim: tuple[Shim, list[str]], figures: dict[str, Any]) -> None:
    running, keys = shim
    tally = Tally()
    pause = Pause(CLIENTS)
    samples: list[tuple[float, Usage]] = []
    clients = [Client(n, running, keys[n], tally) for n in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, args=(pause,), name=f"soak-{c.n}") for c in clients]
    started = time.monotonic()

    def sample_until(end: float) -> None:
        while time.monotonic() < end:
            samples.append((time.monotonic() - started, usage(running.proc.pid)))
            time.sleep(1.0)  # a sampling period, not a synchronisation

    for thread in threads:
        thread.start()
    try:
        sample_until(started + WARM_UP_SECS)
        pause.hold()
        warm = quiet_usage(running, keys[0])
        pause.release()
        resumed = time.monotonic()
        sample_until(resumed + DURATION_SECS - WARM_UP_SECS)
        pause.hold()
        final = quiet_usage(running, keys[0])
    finally:
        pause.stop.set()
        pause.release()
        for thread in threads:
            thread.join(120)
    loaded_rss = [u.rss_mb for t, u in samples]
    warm_threads = max(u.threads for t, u in samples if t <= WARM_UP_SECS)
    last_threads = max(u.threads for t, u in samples if t >= samples[-1][0] - 30)
    growth = final.rss_mb / warm.rss_mb - 1
    figures["soak"] = {
        "clients": CLIENTS,
        "seconds": DURATION_SECS,
        "requests": dict(tally.ok),
        "refused": dict(tally.refused),
        "unexpected": len(tally.unexpected),
        "rss_mb_after_warm_up": round(warm.rss_mb, 1),
        "rss_mb_at_end": round(final.rss_mb, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "rss_mb_loaded_median": round(statistics.median(loaded_rss), 1),
        "rss_mb_loaded_max": round(max(loaded_rss), 1),
        "fds": [warm.fds, final.fds],
        "threads_loaded_peak": [warm_threads, last_threads],
        "threads_idle": [warm.threads, final.threads],
    }
    assert not tally.unexpected, tally.unexpected[:20]
    assert sum(tally.ok.values()) > 100
    assert set(tally.ok) == {"tts", "tts_stream", "ws_tts", "ws_chat", "chat"}
    assert growth < MAX_GROWTH
    assert final.fds <= warm.fds + FD_SLACK
    assert last_threads <= warm_threads + THREAD_SLACK
    assert running.proc.poll() is None
