"""POST /tts with the real voice: audio properties, options, formats and the error table."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.audio import assert_speech, parse_wav
from tts_service.api import tts
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine, get_engine
from tts_service.engine.registry import VoiceRegistry

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank. "
    "Dr. Smith measured 3.5 liters of water for the test. "
    "Meanwhile the weather stayed calm and the birds kept singing. "
    "Everyone agreed that the afternoon had been a pleasant surprise."
)


def speak(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/tts", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_hello_world_is_about_a_second_of_speech(client: TestClient) -> None:
    data = speak(client, text="Hello world.")
    wav = parse_wav(base64.b64decode(data["audio_base64"]))
    assert_speech(wav, "Hello world.")
    assert 0.5 <= wav.seconds <= 2.0
    assert data["sample_rate"] == 22050
    assert data["voice"] == "en_US-joe-medium"
    assert abs(data["duration_ms"] - wav.seconds * 1000) <= 1


def test_paragraph_duration_matches_its_words(client: TestClient) -> None:
    wav = parse_wav(base64.b64decode(speak(client, text=PARAGRAPH)["audio_base64"]))
    assert_speech(wav, PARAGRAPH)


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Accept": "audio/wav"}, ""), ({}, "?format=wav"), ({"Accept": "audio/*, application/json;q=0.5"}, "")],
)
def test_raw_wav_when_asked(client: TestClient, headers: dict[str, str], query: str) -> None:
    response = client.post(f"/tts{query}", json={"text": "Raw audio please."}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert_speech(parse_wav(response.content), "Raw audio please.")


def test_format_query_overrides_accept(client: TestClient) -> None:
    response = client.post("/tts?format=json", json={"text": "Hi there."}, headers={"Accept": "audio/wav"})
    assert response.headers["content-type"].startswith("application/json")


def test_speed_changes_duration(client: TestClient) -> None:
    text = "Speed changes how long this sentence takes to say."
    normal = parse_wav(base64.b64decode(speak(client, text=text, noise_w=0.0)["audio_base64"]))
    fast = parse_wav(base64.b64decode(speak(client, text=text, speed=2.0, noise_w=0.0)["audio_base64"]))
    slow = parse_wav(base64.b64decode(speak(client, text=text, speed=0.5, noise_w=0.0)["audio_base64"]))
    assert_speech(fast, text, speed=2.0)
    assert fast.seconds < 0.7 * normal.seconds < 0.7 * 0.7 * slow.seconds


def test_volume_scales_loudness(client: TestClient) -> None:
    text = "Volume test sentence."
    loud = parse_wav(base64.b64decode(speak(client, text=text, noise_scale=0, noise_w=0)["audio_base64"]))
    quiet = parse_wav(base64.b64decode(speak(client, text=text, noise_scale=0, noise_w=0, volume=0.5)["audio_base64"]))
    assert quiet.rms == pytest.approx(loud.rms * 0.5, rel=0.05)


def test_zero_noise_is_deterministic(client: TestClient) -> None:
    body = {"text": "Same every time.", "noise_scale": 0, "noise_w": 0}
    assert speak(client, **body)["audio_base64"] == speak(client, **body)["audio_base64"]


def test_sentence_silence_adds_gaps(client: TestClient) -> None:
    text = "First sentence. Second sentence. Third one."
    plain = parse_wav(base64.b64decode(speak(client, text=text, noise_w=0)["audio_base64"]))
    gapped = parse_wav(base64.b64decode(speak(client, text=text, noise_w=0, sentence_silence=0.5)["audio_base64"]))
    assert gapped.seconds - plain.seconds == pytest.approx(1.0, abs=0.05)


def test_spectrogram_on_request(client: TestClient) -> None:
    data = speak(client, text="Show me the spectrum.", include_spectrogram=True)
    spec = data["spectrogram"]
    frames = np.array(spec["frames"])
    assert spec["n_mels"] == 80
    assert frames.shape[1] == 80
    samples = data["duration_ms"] * 22050 / 1000
    assert abs(frames.shape[0] - (1 + samples // 256)) <= 1
    assert "spectrogram" not in speak(client, text="No spectrum.")


def test_language_picks_its_default_voice(client: TestClient) -> None:
    assert speak(client, text="Language default.", language="en_US")["voice"] == "en_US-joe-medium"
    assert speak(client, text="Family match.", language="en")["voice"] == "en_US-joe-medium"


def test_legacy_api_prefix(client: TestClient) -> None:
    response = client.post("/api/tts", json={"text": "Old clients."})
    assert response.status_code == 200
    assert "audio_base64" in response.json()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": ""}, 422, "validation_error"),
        ({"text": "   \n\t "}, 422, "validation_error"),
        ({"text": "x" * 5001}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"text": 42}, 422, "validation_error"),
        ({"text": "hi", "speed": 0.1}, 422, "validation_error"),
        ({"text": "hi", "speed": 4.5}, 422, "validation_error"),
        ({"text": "hi", "speed": "fast"}, 422, "validation_error"),
        ({"text": "hi", "noise_scale": -1}, 422, "validation_error"),
        ({"text": "hi", "volume": 10}, 422, "validation_error"),
        ({"text": "hi", "speaker": 5}, 422, "validation_error"),
        ({"text": "hi", "speaker": "nobody"}, 422, "validation_error"),
        ({"text": "hi", "unknown_field": 1}, 422, "validation_error"),
        ({"text": "hi", "voice_id": "amy"}, 422, "validation_error"),
        ({"text": "hi", "voice": "nope"}, 404, "voice_not_found"),
        ({"text": "hi", "language": "de_DE"}, 404, "language_not_found"),
        ({"text": "hi", "language": "not a language"}, 422, "validation_error"),
        ({"text": "hi", "voice": "en_US-joe-medium", "language": "fr_FR"}, 422, "validation_error"),
        ({"text": "...."}, 422, "validation_error"),
        ([1, 2], 422, "validation_error"),
    ],
)
def test_error_table(client: TestClient, body: Any, status: int, code: str) -> None:
    response = client.post("/tts", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b'{"text": ', {"content-type": "application/json"}),
        (b"not json at all", {"content-type": "application/json"}),
        (b'{"text": "hi"', {}),
        (b"\xff\xfe\x00garbage", {"content-type": "application/json"}),
    ],
)
def test_malformed_json_is_400(client: TestClient, raw: bytes, headers: dict[str, str]) -> None:
    response = client.post("/tts", content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_json_without_content_type_is_accepted(client: TestClient) -> None:
    # API Gateway test events and some clients send no content type; a browser cannot, cross-site.
    response = client.post("/tts", content=json.dumps({"text": "No header."}).encode())
    assert response.status_code == 200
    declared = client.post(
        "/tts", json={"text": "Declared."}, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert declared.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_cross_site_simple_content_types_are_refused(client: TestClient, content_type: str) -> None:
    # GIVEN the body a web page may POST to any site without a CORS preflight (a form, or fetch with text/plain)
    body = json.dumps({"text": "Spend the operator's CPU."}).encode()
    # WHEN it arrives with that content type
    response = client.post(
        "/tts", content=body, headers={"content-type": content_type, "Origin": "https://evil.example"}
    )
    # THEN it is not read as JSON: 415 with the usual error body
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in response.json()["error"]["message"]


def test_text_limit_counts_characters_not_bytes(client: TestClient) -> None:
    # 5000 two-byte characters are within the limit even though they are 10000 bytes.
    response = client.post("/tts", json={"text": "é" * 5001})
    assert response.status_code == 422
    assert "5001 characters" in response.json()["error"]["message"]


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    response = client.get("/tts")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_concurrent_requests_to_a_cold_voice_load_it_once(tmp_path: Path) -> None:
    # GIVEN a fresh engine whose voices are all cold, behind its own app
    repo = Path(__file__).resolve().parents[2]
    raw = json.loads((repo / "models" / "map.json").read_text())
    raw["voices"]["cold-alias"] = raw["voices"]["en_US-joe-medium"]
    engine = Engine(Settings(synth_workers=4), VoiceRegistry.from_dict(raw, tmp_path))
    app = create_app(tts.router)
    app.dependency_overrides[get_engine] = lambda: engine
    statuses: list[int] = []
    with TestClient(app) as cold_client:
        barrier = threading.Barrier(4)

        def request() -> None:
            barrier.wait()
            statuses.append(cold_client.post("/tts", json={"text": "Cold start.", "voice": "cold-alias"}).status_code)

        # WHEN four requests hit the cold voice together
        threads = [threading.Thread(target=request) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    # THEN all succeed and the voice was loaded exactly once
    assert statuses == [200] * 4
    assert engine.voice_cache.loads == 1
    assert engine.voice_cache.loaded_ids() == ["cold-alias"]


def test_broken_voice_is_503_and_others_keep_working(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    raw = json.loads((repo / "models" / "map.json").read_text())
    good = raw["voices"]["en_US-joe-medium"]
    raw["voices"]["tampered"] = {**good, "model": {**good["model"], "sha256": "0" * 64}}
    engine = Engine(Settings(), VoiceRegistry.from_dict(raw, tmp_path))
    app = create_app(tts.router)
    app.dependency_overrides[get_engine] = lambda: engine
    with TestClient(app) as c:
        bad = c.post("/tts", json={"text": "Hello.", "voice": "tampered"})
        assert bad.status_code == 503
        assert bad.json()["error"]["code"] == "voice_unavailable"
        assert c.post("/tts", json={"text": "Hello."}).status_code == 200
