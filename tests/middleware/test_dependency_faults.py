"""A hung dependency hangs no one: Redis and Qdrant that stop answering, and requests whose client goes away or
whose time runs out stop their synthesis between pieces. Every fake dependency listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.tcp import TcpFault
from tests.support import raw
from tests.support.apps import AppFactory
from tests.support.live import LiveServer
from tests.support.logs import LogCapture
from tests.support.wait import wait_until
from tts_service.api import tts, voices
from tts_service.app import create_app
from tts_service.chat.memory import ConversationMemory
from tts_service.config import Settings
from tts_service.engine import Engine
from tts_service.engine.pipeline import Synthesis
from tts_service.errors import MemoryUnavailable
from tts_service.observability import Metrics


@pytest.fixture
def hanging() -> Iterator[TcpFault]:
    with TcpFault("hang") as fault:
        yield fault


def live_app(settings: Settings, *routers: Any) -> tuple[LiveServer, Metrics]:
    metrics = Metrics(process=False)
    server = LiveServer(create_app(*routers, settings=settings, metrics=metrics), settings=settings)
    server.start()
    return server, metrics


@pytest.mark.parametrize("mode", ["hang", "refuse"])
def test_a_redis_that_hangs_or_is_down_costs_one_short_wait_then_none(mode: str, logs: LogCapture) -> None:
    # GIVEN shared rate limits in a Redis that accepts connections and never answers (or is not there at all)
    with TcpFault("hang") as redis:
        redis.set(mode)  # type: ignore[arg-type]
        settings = Settings(
            rate_limit_per_minute=60,
            rate_limit_storage_uri=f"redis://127.0.0.1:{redis.port}/0",
            rate_limit_storage_timeout_secs=0.3,
        )
        server, metrics = live_app(settings, voices.router)
        try:
            # WHEN requests come in
            started = time.monotonic()
            first = httpx.get(f"{server.http}/voices", timeout=5)
            first_secs = time.monotonic() - started
            started = time.monotonic()
            rest = [httpx.get(f"{server.http}/voices", timeout=5).status_code for _ in range(5)]
            rest_secs = time.monotonic() - started
        finally:
            server.stop()
    # THEN the first waits the storage's budget at most and goes through unlimited; the next ones do not wait
    assert first.status_code == 200
    assert "ratelimit-limit" not in first.headers
    assert first_secs < 1.5
    assert rest == [200] * 5
    assert rest_secs < 1.0
    # AND the failure is counted and logged, once
    outcome = "timeout" if mode == "hang" else "error"
    assert metrics.value("tts_dependency_failures_total", dependency="rate_limit_storage", outcome=outcome) == 1
    assert [r["message"] for r in logs.server_records].count("rate limit storage failed; not limiting") == 1


def test_a_hanging_qdrant_holds_no_lock_and_starves_no_shared_thread(hanging: TcpFault) -> None:
    # GIVEN conversation memory on a Qdrant server that accepts connections and never answers
    memory = ConversationMemory(
        Settings(qdrant_url=f"http://127.0.0.1:{hanging.port}", memory_timeout_secs=0.5, qdrant_allow_http=True)
    )

    async def scenario() -> tuple[list[BaseException | Any], float, float, float]:
        started = time.monotonic()
        # WHEN many calls are made at once
        calls = asyncio.gather(*(memory.history("owner", f"c{i}") for i in range(8)), return_exceptions=True)
        await asyncio.sleep(0)
        # THEN the event loop's shared threads (audio encoding uses them) stay free meanwhile
        probe = time.monotonic()
        await asyncio.to_thread(time.monotonic)
        shared_wait = time.monotonic() - probe
        results = await calls
        all_failed = time.monotonic() - started
        # AND once the store is known to hang, the next call fails at once instead of queueing
        again = time.monotonic()
        with pytest.raises(MemoryUnavailable):
            await memory.history("owner", "c-next")
        return results, shared_wait, all_failed, time.monotonic() - again

    try:
        results, shared_wait, all_failed, next_call = asyncio.run(scenario())
    finally:
        memory.close()
    assert all(isinstance(r, MemoryUnavailable) for r in results)
    assert shared_wait < 0.25
    assert all_failed < 1.5  # each within its own timeout, none queued behind another
    assert next_call < 0.1


Gate = tuple[list[str], threading.Event, Callable[[], None]]


@pytest.fixture
def gated(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Counts the synthesis pieces the shared engine runs; the first one waits until released."""
    pieces: list[str] = []
    entered = threading.Event()
    release = threading.Event()
    original = engine.pool.submit

    def submit(fn: Callable[..., Any], *args: Any, **how: Any) -> Any:
        if not isinstance(getattr(fn, "__self__", None), Synthesis):
            return original(fn, *args, **how)  # a voice load or an arena trim, not a piece
        pieces.append(fn.__name__)
        if len(pieces) > 1:
            return original(fn, *args, **how)

        def first(*inner: Any) -> Any:
            entered.set()
            release.wait(30)
            return fn(*inner)

        return original(first, *args, **how)

    monkeypatch.setattr(engine.pool, "submit", submit)
    yield pieces, entered, release.set
    release.set()


def long_text() -> str:
    tag = uuid.uuid4().hex[:6]  # never a cache hit
    return " ".join(f"Sentence {n} of text {tag} goes here." for n in range(30))


def test_a_tts_whose_client_vanishes_stops_between_pieces(engine: Engine, gated: Gate, logs: LogCapture) -> None:
    pieces, entered, release = gated
    server, _ = live_app(Settings(rate_limit_enabled=False), tts.router)
    try:
        # GIVEN a long /tts whose first piece is being synthesized
        sock = raw.connect(server.port)
        raw.send_json(sock, "/tts", {"text": long_text()})
        assert entered.wait(30)
        # WHEN its client goes away
        raw.vanish(sock)
        assert wait_until(lambda: "client went away; request stopped" in logs.text)
        release()
        # THEN the synthesis stops between pieces: the rest of the text is never handed to a worker
        assert wait_until(lambda: engine.pool.admitted == 0)
    finally:
        server.stop()
    # Each piece is one frontend job (its decoder windows follow it); at most the look-ahead ran.
    assert pieces.count("_frontend") <= engine.plan.lookahead + 1 < 30


def test_a_tts_that_times_out_stops_between_pieces(make_client: AppFactory, engine: Engine, gated: Gate) -> None:
    pieces, entered, release = gated
    client, _ = make_client(request_timeout_secs=0.5, llm_timeout_secs=0.1)
    response = client.post("/tts", json={"text": long_text()})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert entered.is_set()
    release()
    assert wait_until(lambda: engine.pool.admitted == 0)
    # Each piece is one frontend job (its decoder windows follow it); at most the look-ahead ran.
    assert pieces.count("_frontend") <= engine.plan.lookahead + 1 < 30
