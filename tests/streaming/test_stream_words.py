"""Word timings in streams: a `words` event before the audio of each chunk whose words start in it."""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi.testclient import TestClient

from tests.support.streams import PARAGRAPH, collect, pcm_seconds
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


def test_words_after_a_sentence_gap_start_after_the_silence(stream_client: TestClient) -> None:
    # An incremental stream speaks each completed sentence as its own request and leads the next one with
    # `sentence_silence`: the words of that sentence must sound after the silence, not inside it.
    gap_ms = 1000
    with stream_client.websocket_connect("/ws/tts") as ws:
        ws.send_text(
            json.dumps({"type": "start", "encoding": "base64", "timestamps": "word", "sentence_silence": gap_ms / 1000})
        )
        ws.send_text(json.dumps({"type": "text", "text": "The first sentence is short. "}))
        ws.send_text(json.dumps({"type": "text", "text": "Then another one follows it."}))
        ws.send_text(json.dumps({"type": "end"}))
        events, _ = collect(ws)
    audio = [e for e in events if e["type"] == "audio"]
    spoken = [w for e in events if e["type"] == "words" for w in e["words"]]
    assert [w["word"] for w in spoken] == text_words("The first sentence is short. Then another one follows it.")
    then = next(w for w in spoken if w["word"] == "Then")
    before = audio[: [e["seq"] for e in audio].index(_seq_of(events, then))]
    first_sentence_ms = 1000 * sum(pcm_seconds(base64.b64decode(e["audio"])) for e in before)
    assert then["start_ms"] >= first_sentence_ms + gap_ms - 50, (then, first_sentence_ms)


def _seq_of(events: list[dict[str, Any]], word: dict[str, Any]) -> int:
    """The seq of the chunk whose `words` event names `word`."""
    return int(next(e["seq"] for e in events if e["type"] == "words" and word in e["words"]))
