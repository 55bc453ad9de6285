"""The local shim as users run it: a real uvicorn process on a loopback port, called over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

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
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"


@pytest.mark.slow
def test_the_shims_log_keeps_no_key_ticket_or_text(tmp_path: Path) -> None:
    # GIVEN the shim as users run it, with keys and DEBUG logging
    key, text = "sk-shim-log-6e0b2c", "words-nobody-should-log-19"
    log_path = tmp_path / "shim.log"
    env = {"API_KEYS": key, "LOG_LEVEL": "debug", "DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": ""}
    with running_shim(env, log_path) as running:
        ws_base = running.base.replace("http://", "ws://")
        ticket = httpx.post(f"{running.base}/ws-ticket", headers={"X-API-Key": key}, timeout=10).json()["ticket"]
        # WHEN a browser connects with a ticket and sends a chat message in a frame ...
        with connect(f"{ws_base}/ws/chat", subprotocols=[Subprotocol(f"ticket.{ticket}")]) as ws:
            ws.send(json.dumps({"type": "chat", "message": text, "conversation_id": f"conv-{text}"}))
            assert json.loads(ws.recv(timeout=10))["code"] == "llm_not_configured"
        # ... and others try a wrong key, the key in the URL, the spent ticket
        for url, headers in [
            (f"{ws_base}/ws/chat?message={text}", {"X-API-Key": f"{key}-wrong"}),
            (f"{ws_base}/ws/chat?api_key={key}&message={text}", {}),
            (f"{ws_base}/ws/chat?ticket={ticket}", {}),
        ]:
            with pytest.raises(InvalidStatus), connect(url, additional_headers=headers):
                pass
    # THEN the log (JSON lines, uvicorn's included) has the handshakes by route, and no key, ticket or text
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    statuses = [r["status"] for r in lines if r.get("logger") == "tts_service.access" and r["route"] == "/ws/chat"]
    assert statuses == [101, 401, 401, 401]
    raw = log_path.read_text()
    for secret in (key, ticket, text):
        assert secret not in raw
    assert not [r for r in lines if "?" in str(r.get("message"))]
