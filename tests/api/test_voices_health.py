"""GET /voices, /voices/detail, /health and /healthz."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tts_service.api import health
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine, get_engine


def test_voices_maps_languages_to_voices(client: TestClient) -> None:
    assert client.get("/voices").json() == {"en_US": ["en_US-joe-medium"]}


def test_voice_detail_lists_the_default_voice(client: TestClient) -> None:
    voices = client.get("/voices/detail").json()
    joe = next(v for v in voices if v["id"] == "en_US-joe-medium")
    assert joe["sample_rate"] == 22050
    assert joe["language"] == "en_US"
    assert joe["quality"] == "medium"
    assert joe["num_speakers"] == 1
    assert joe["speakers"] == {}
    assert joe["default"] is True
    assert joe["available"] is True
    assert joe["loaded"] is True  # the session fixture warmed it


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/healthz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert "en_US-joe-medium" in ready.json()["voices_loaded"]


def test_readiness_warms_a_cold_engine() -> None:
    # GIVEN an engine that has loaded nothing
    engine = Engine(Settings())
    app = create_app(health.router)
    app.dependency_overrides[get_engine] = lambda: engine
    assert not engine.ready()
    # WHEN the readiness probe runs THEN it loads and tries the default voice before answering ready
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
    assert engine.ready()
    assert engine.voice_cache.loads == 1
