"""The local shim as users run it: a real uvicorn process on a loopback port, called over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.support.audio import assert_speech, parse_wav
from tests.support.shim import running_shim


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_shim(log_path=tmp_path_factory.mktemp("shim") / "shim.log") as running:
        yield running.base


@pytest.mark.slow
def test_readme_curl_example(shim: str) -> None:
    response = httpx.post(f"{shim}/tts", json={"text": "Hello world."}, timeout=30)
    assert response.status_code == 200
    wav = parse_wav(base64.b64decode(response.json()["audio_base64"]))
    assert_speech(wav, "Hello world.")
    assert 0.5 <= wav.seconds <= 2.0


@pytest.mark.slow
def test_voices_detail_and_errors_over_http(shim: str) -> None:
    detail = httpx.get(f"{shim}/voices/detail", timeout=10).json()
    assert any(v["id"] == "en_US-joe-medium" and v["sample_rate"] == 22050 for v in detail)
    bad = httpx.post(f"{shim}/tts", content=b'{"text":', headers={"content-type": "application/json"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
