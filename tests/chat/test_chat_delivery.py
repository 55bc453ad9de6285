"""Chat answers that are delivered whole: bounded to what a buffered response holds, and stored only once made."""

from __future__ import annotations

import base64

import pytest

from tests.chat.conftest import AppFactory
from tests.fakes.llm_server import FakeLlmServer
from tests.support.audio import parse_wav
from tts_service.api.delivery import BUFFERED_RESPONSE_LIMIT

# Each sentence is short to synthesize, and 5 s of silence follows it: minutes of audio for little compute.
PAUSED = "Yes. " * 40


def test_voice_chat_on_lambda_speaks_the_sentences_that_fit(
    make_client: AppFactory, fake_llm: FakeLlmServer, admissions: list[int]
) -> None:
    # GIVEN the chat routers as the chat function runs them, and an LLM that answers at length
    client, _ = make_client()
    client.app.state.buffered_responses = True  # type: ignore[attr-defined]
    fake_llm.script(PAUSED.strip())
    # WHEN the reply is spoken with 5 s between sentences (over 3 minutes in all, 11 MB of base64 WAV)
    response = client.post("/voice-chat", json={"message": "Say yes a lot.", "sentence_silence": 5.0})
    # THEN the answer fits a Lambda response: the whole sentences that fit, their text, the whole reply
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) <= BUFFERED_RESPONSE_LIMIT
    body = response.json()
    assert body["reply"] == PAUSED.strip()
    spoken = body["cleaned_text"]
    assert spoken.startswith("Yes. Yes.") and spoken.endswith("Yes.") and spoken.count("Yes.") < 40
    wav = parse_wav(base64.b64decode(body["audio_base64"]))
    assert wav.seconds == pytest.approx(body["duration_ms"] / 1000, abs=0.01)
    assert wav.seconds > 60
    assert admissions == [1]
