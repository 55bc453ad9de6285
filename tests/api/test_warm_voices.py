"""WARM_VOICES: the named voices load and speak at start, and readiness waits for them."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tts_service.api import health
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine, get_engine, warm
from tts_service.engine.registry import VoiceRegistry

REPO = Path(__file__).resolve().parents[2]


def engine_with(tmp_path: Path, warm_voices: str) -> Engine:
    """A fresh engine whose map also registers `joe-copy` (the default voice's files under another id)."""
    raw = json.loads((REPO / "models" / "map.json").read_text())
    raw["voices"]["joe-copy"] = raw["voices"]["en_US-joe-medium"]
    return Engine(Settings(warm_voices=warm_voices), VoiceRegistry.from_dict(raw, tmp_path))


def client_for(engine: Engine) -> TestClient:
    app = create_app(health.router)
    app.dependency_overrides[get_engine] = lambda: engine
    return TestClient(app)


def test_readiness_waits_until_every_warm_voice_has_spoken(tmp_path: Path) -> None:
    # GIVEN an engine told to warm a second voice, nothing loaded yet
    engine = engine_with(tmp_path, "joe-copy, en_US-joe-medium")
    assert engine.settings.warm_voice_ids == ["joe-copy", "en_US-joe-medium"]
    assert warm.pending(engine) == ["joe-copy"]
    assert not warm.ready(engine)
    assert engine.voice_cache.loaded_ids() == []
    # WHEN readiness is asked
    with client_for(engine) as client:
        response = client.get("/healthz")
    # THEN it answers only once both voices have loaded and spoken
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["warm_voices"] == ["joe-copy", "en_US-joe-medium"]
    assert sorted(body["voices_loaded"]) == ["en_US-joe-medium", "joe-copy"]
    assert warm.ready(engine)
    assert warm.pending(engine) == []


def test_lambda_init_warms_them_without_an_event_loop(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "joe-copy")
    warm.warm_blocking(engine)
    assert warm.ready(engine)
    assert sorted(engine.voice_cache.loaded_ids()) == ["en_US-joe-medium", "joe-copy"]


def test_an_unknown_warm_voice_keeps_the_service_unready(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "nobody")
    with client_for(engine) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "WARM_VOICES names 'nobody'" in response.json()["error"]["message"]
