"""Backpressure: a full synthesis queue answers 503 + Retry-After at once; health, metrics and cache hits go on."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tests.support.apps import AppFactory, parse_exposition
from tts_service.engine import Engine
from tts_service.engine.pipeline import Synthesis
from tts_service.errors import ServiceBusy


def test_full_queue_is_503_with_retry_after(make_client: AppFactory, tiny_engine: Engine) -> None:
    client, app_metrics = make_client(engine_override=tiny_engine)
    with tiny_engine.pool.admit():  # the only place is taken
        response = client.post("/tts", json={"text": "No room for this one."})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "busy"
        assert int(response.headers["retry-after"]) >= 1
        # Liveness, readiness of the shared engine, metrics and the voice list never queue for synthesis.
        assert client.get("/health").status_code == 200
        assert client.get("/voices").status_code == 200
        samples = parse_exposition(client.get("/metrics").text)
        assert samples['http_requests_total{method="POST",route="/tts",status="503"}'] == 1
    assert tiny_engine.metrics.value("http_requests_rejected_total", reason="busy") == 1
    assert tiny_engine.metrics.value("tts_synthesis_admitted") == 0
    assert tiny_engine.metrics.value("tts_synthesis_capacity") == 1
    # The place is free again: the same request now succeeds.
    assert client.post("/tts", json={"text": "Room for this one."}).status_code == 200
    assert app_metrics.value("http_requests_total", route="/tts", method="POST", status="200") == 1


def test_cache_hits_are_served_when_full(make_client: AppFactory, tiny_engine: Engine) -> None:
    client, _ = make_client(engine_override=tiny_engine)
    body = {"text": "A cached answer needs no worker."}
    assert client.post("/tts", json=body).status_code == 200
    with tiny_engine.pool.admit():
        assert client.post("/tts", json=body).status_code == 200
        assert client.post("/tts", json={"text": "But a new one does."}).status_code == 503


def test_a_real_synthesis_holds_the_place(tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    release = threading.Event()
    original = Synthesis._frontend

    def slow_frontend(self: Synthesis, *args: Any, **kw: Any) -> Any:
        started.set()
        release.wait(10)
        return original(self, *args, **kw)

    monkeypatch.setattr(Synthesis, "_frontend", slow_frontend)

    async def scenario() -> None:
        first = asyncio.create_task(tiny_engine.synthesize(tiny_engine.request("The first one runs.")))
        await asyncio.to_thread(started.wait, 10)
        with pytest.raises(ServiceBusy):
            await tiny_engine.synthesize(tiny_engine.request("The second one is refused."))
        release.set()
        speech = await first
        assert speech.pcm.size > 0

    asyncio.run(scenario())


def test_an_abandoned_call_keeps_its_worker_place(tiny_engine: Engine) -> None:
    running = threading.Event()
    release = threading.Event()

    def hold() -> bool:
        running.set()
        return release.wait(10)

    async def scenario() -> None:
        call = asyncio.create_task(tiny_engine.pool.run(hold))
        assert await asyncio.to_thread(running.wait, 10), "running on the worker now"
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert tiny_engine.pool.admitted == 1, "the worker is still busy with it"
        with pytest.raises(ServiceBusy), tiny_engine.pool.admit():
            pass
        release.set()
        for _ in range(100):
            if tiny_engine.pool.admitted == 0:
                break
            await asyncio.sleep(0.02)
        assert tiny_engine.pool.admitted == 0
        with tiny_engine.pool.admit():
            pass

    asyncio.run(scenario())
