"""Word timings in streams: a `words` event before the audio of each chunk whose words start in it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.support.streams import PARAGRAPH, collect
from tts_service.engine.words import text_words


def test_ws_stream_sends_words_before_their_audio(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "speak", "text": PARAGRAPH, "encoding": "base64", "timestamps": "word"}))
        events, _ = collect(ws)
    words_events = [e for e in events if e["type"] == "words"]
    audio = [e for e in events if e["type"] == "audio"]
    spoken = [w for e in words_events for w in e["words"]]
    assert [w["word"] for w in spoken] == text_words(PARAGRAPH)
    starts = [w["start_ms"] for w in spoken]
    assert starts == sorted(starts)
    assert spoken[-1]["end_ms"] <= events[-1]["duration_ms"]
    # Each words event comes right before the audio event it names, which carries its first word's sound.
    for event in words_events:
        following = events[events.index(event) + 1]
        assert following["type"] == "audio"
        assert following["seq"] == event["seq"]
    assert len(audio) >= len(words_events)


def test_no_words_events_unless_asked(stream_client: TestClient) -> None:
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(json.dumps({"type": "speak", "text": "Just audio.", "encoding": "base64"}))
        events, _ = collect(ws)
    assert not [e for e in events if e["type"] == "words"]
