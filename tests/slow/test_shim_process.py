"""The local shim as users run it: a real uvicorn process on a loopback port, called over HTTP."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audio import assert_speech, parse_wav

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("shim") / "shim.log").open("wb")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODELS_DIR": str(REPO / "models")}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "local" / "serve.py")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("shim did not become ready within 60 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
