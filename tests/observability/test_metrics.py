"""GET /metrics: Prometheus text, the families the issue lists, values that move with traffic."""

from __future__ import annotations

from tests.support.apps import AppFactory, parse_exposition
from tts_service.engine import Engine
from tts_service.observability import Metrics

FAMILIES = (
    "http_requests_total",
    "http_request_duration_seconds",
    "requests_in_flight",
    "http_requests_rejected_total",
    "tts_synthesis_duration_seconds",
    "tts_audio_seconds_total",
    "tts_real_time_factor",
    "tts_time_to_first_audio_seconds",
    "tts_cache_hits_total",
    "tts_cache_misses_total",
    "tts_llm_requests_total",
    "tts_llm_request_duration_seconds",
    "tts_voices_loaded",
    "tts_synthesis_admitted",
)


def test_exposition_format_and_families(make_client: AppFactory) -> None:
    client, _ = make_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for family in FAMILIES:
        assert f"# TYPE {family} " in response.text, family
    assert client.get("/api/metrics").status_code == 200


def test_request_counters_move(make_client: AppFactory) -> None:
    client, _ = make_client()
    for _ in range(3):
        client.get("/voices")
    client.get("/voices/nope-does-not-exist-xyz")
    samples = parse_exposition(client.get("/metrics").text)
    assert samples['http_requests_total{method="GET",route="/voices",status="200"}'] == 3
    assert samples['http_request_duration_seconds_count{method="GET",route="/voices"}'] == 3
    assert not any("nope-does-not-exist" in name for name in samples), "raw paths never become labels"
    assert samples['http_requests_total{method="GET",route="unmatched",status="404"}'] == 1
    # The scrape itself is in flight while it renders.
    assert samples["requests_in_flight"] == 1


def test_synthesis_metrics_move(make_client: AppFactory, engine: Engine) -> None:
    client, _ = make_client()
    m = engine.metrics
    voice = engine.registry.default_voice
    before_count = m.value("tts_synthesis_duration_seconds_count", voice=voice)
    before_audio = m.value("tts_audio_seconds_total", voice=voice)
    response = client.post("/tts", json={"text": "Metrics should count this unique sentence number seven."})
    assert response.status_code == 200
    audio_seconds = response.json()["duration_ms"] / 1000
    assert m.value("tts_synthesis_duration_seconds_count", voice=voice) == before_count + 1
    assert abs(m.value("tts_audio_seconds_total", voice=voice) - before_audio - audio_seconds) < 0.01
    assert m.value("tts_real_time_factor_count", voice=voice) >= 1
    assert m.value("tts_voices_loaded") >= 1


def test_recording_interface_bounds_labels() -> None:
    m = Metrics(process=False)
    m.llm_request("openai", "ok", 0.5)
    m.llm_request("openai", "weird outcome", 1.0)
    m.llm_request("ollama", "timeout", 30.0)
    m.observe_request("/tts", "BREW", 200, 0.1)
    m.observe_rejected("made-up")
    m.observe_ttfa("en_US-joe-medium", 0.2)
    assert m.value("tts_llm_requests_total", provider="openai", outcome="ok") == 1
    assert m.value("tts_llm_requests_total", provider="openai", outcome="error") == 1
    assert m.value("tts_llm_requests_total", provider="ollama", outcome="timeout") == 1
    assert m.value("tts_llm_request_duration_seconds_count", provider="openai") == 2
    assert m.value("http_requests_total", route="/tts", method="OTHER", status="200") == 1
    assert m.value("http_requests_rejected_total", reason="other") == 1
    assert m.value("tts_time_to_first_audio_seconds_count", voice="en_US-joe-medium") == 1


def test_registries_are_independent() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.cache_hit("audio")
    assert a.value("tts_cache_hits_total", cache="audio") == 1
    assert b.value("tts_cache_hits_total", cache="audio") == 0
