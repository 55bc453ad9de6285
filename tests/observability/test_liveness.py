"""Liveness fails when the engine can no longer speak: its default voice will not load, or syntheses keep failing.

`/health` stays cheap (it reads what requests recorded); client errors and busy answers never fail it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tts_service.api import health, tts
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine, SpeechRequest, get_engine
from tts_service.engine.registry import VoiceRegistry
from tts_service.errors import ServiceBusy
from tts_service.observability import Metrics
from tts_service.observability.liveness import Liveness, get_liveness

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_liveness() -> Iterator[Liveness]:
    # A new process-wide record for each test, and again after it.
    get_liveness.cache_clear()
    yield get_liveness()
    get_liveness.cache_clear()


def client_for(engine: Engine) -> TestClient:
    app = create_app(health.router, tts.router, settings=Settings(rate_limit_enabled=False))
    app.dependency_overrides[get_engine] = lambda: engine
    return TestClient(app)


def test_the_counting_rules() -> None:
    liveness = Liveness(max_failures=3)
    liveness.failed("SynthesisFailed")
    liveness.failed("RuntimeError")
    assert liveness.problem() is None
    liveness.succeeded(default_voice=False)  # any success breaks the run of failures
    for _ in range(3):
        liveness.failed("RuntimeError")
    assert liveness.problem() == "3 syntheses failed in a row"
    liveness.succeeded(default_voice=False)
    liveness.default_voice_unloadable("en_US-x", "voice_unavailable")
    liveness.succeeded(default_voice=False)  # another voice working says nothing about the default one
    assert liveness.problem() == "the default voice en_US-x cannot be loaded (voice_unavailable)"
    liveness.succeeded(default_voice=True)
    assert liveness.problem() is None


@pytest.fixture
def broken_default_voice(tmp_path: Path) -> Engine:
    """An engine whose voice map names a default voice whose files are not there."""
    raw = json.loads((REPO / "models/map.json").read_text())
    voice = raw["voices"][raw["default_voice"]]
    voice["model"]["path"] = "gone/voice.onnx"
    voice["config"]["path"] = "gone/voice.onnx.json"
    # Its own metrics: the process's would then read their gauges from this engine instead of the shared one.
    return Engine(Settings(), registry=VoiceRegistry.from_dict(raw, tmp_path), metrics=Metrics(process=False))


def test_a_default_voice_that_cannot_load_fails_liveness(broken_default_voice: Engine) -> None:
    with client_for(broken_default_voice) as client:
        assert client.get("/health").status_code == 200
        # WHEN a request needs the default voice and it cannot load
        refused = client.post("/tts", json={"text": "Hello."})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "voice_unavailable"
        # THEN liveness fails, saying why, so the orchestrator restarts the pod
        dead = client.get("/health")
        assert dead.status_code == 503
        assert dead.json()["error"]["code"] == "engine_unhealthy"
        assert "default voice" in dead.json()["error"]["message"]


def test_readiness_finding_the_default_voice_broken_fails_liveness_too(broken_default_voice: Engine) -> None:
    with client_for(broken_default_voice) as client:
        assert client.get("/healthz").status_code == 503
        assert client.get("/health").status_code == 503


def test_repeated_synthesis_failures_fail_liveness_and_a_success_heals_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an engine whose synthesis breaks (as a poisoned lock or a broken session would)
    real = engine.synthesize

    async def broken(req: SpeechRequest) -> None:
        raise RuntimeError("session poisoned")

    with client_for(engine) as client:
        monkeypatch.setattr(engine, "synthesize", broken)
        for attempt in range(3):
            assert client.get("/health").status_code == 200, attempt
            assert client.post("/tts", json={"text": f"Attempt {attempt}."}).status_code == 500
        # THEN after LIVENESS_MAX_SYNTH_FAILURES (3) in a row, liveness fails
        assert client.get("/health").json()["error"]["message"] == "restart needed: 3 syntheses failed in a row"
        # AND one good synthesis clears it
        monkeypatch.setattr(engine, "synthesize", real)
        assert client.post("/tts", json={"text": "Working again."}).status_code == 200
        assert client.get("/health").status_code == 200


def test_client_errors_and_busy_answers_never_fail_liveness(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    async def busy(req: SpeechRequest) -> None:
        raise ServiceBusy("every synthesis worker is busy", headers={"Retry-After": "1"})

    with client_for(engine) as client:
        for _ in range(5):
            assert client.post("/tts", json={"text": ""}).status_code == 422
            assert client.post("/tts", json={"text": "x", "voice": "nobody"}).status_code == 404
        monkeypatch.setattr(engine, "synthesize", busy)
        for _ in range(5):
            assert client.post("/tts", json={"text": "Busy."}).status_code == 503
        assert client.get("/health").status_code == 200
