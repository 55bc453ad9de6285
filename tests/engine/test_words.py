"""Word timings from Piper's durations, and the subtitles built from them."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.audio import parse_wav
from tts_service.api.stream import stream_format
from tts_service.engine import Engine, SpeechOptions
from tts_service.engine.subtitles import LINE_CHARS, subtitle_cues
from tts_service.engine.words import WordTiming, owners, text_words
from tts_service.errors import ValidationFailed

PLAIN = "The quick brown fox jumps over the lazy dog near the quiet river."


def test_a_plain_sentence_has_one_ordered_entry_per_word(client: TestClient) -> None:
    response = client.post("/tts", json={"text": PLAIN, "timestamps": "word"})
    assert response.status_code == 200
    body = response.json()
    words = body["words"]
    assert [w["word"] for w in words] == text_words(PLAIN)
    starts = [w["start_ms"] for w in words]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    assert all(w["start_ms"] < w["end_ms"] for w in words)
    assert all(a["end_ms"] <= b["start_ms"] for a, b in zip(words, words[1:], strict=False))
    assert starts[0] >= 0
    assert words[-1]["end_ms"] <= body["duration_ms"]


def test_no_words_unless_asked(client: TestClient) -> None:
    assert "words" not in client.post("/tts", json={"text": "Hello there."}).json()


def _speech_onset_ms(pcm: np.ndarray, sample_rate: int, after_ms: int) -> int:
    """Where audio first rises clearly above silence after `after_ms`, by 10 ms frame energy."""
    frame = sample_rate // 100
    start = after_ms * sample_rate // 1000
    signal = pcm[start:].astype(np.float64)
    energies = [float(np.sqrt(np.mean(signal[i : i + frame] ** 2))) for i in range(0, signal.size - frame, frame)]
    peak = max(energies)
    first = next(i for i, e in enumerate(energies) if e > 0.1 * peak)
    return after_ms + first * 10


def test_a_word_after_a_long_pause_starts_where_the_speech_does(client: TestClient) -> None:
    text = "Wait for it. Now."
    response = client.post("/tts", json={"text": text, "timestamps": "word", "sentence_silence": 1.5})
    body = response.json()
    now = next(w for w in body["words"] if w["word"] == "Now")
    it = next(w for w in body["words"] if w["word"] == "it")
    wav = parse_wav(base64.b64decode(body["audio_base64"]))
    pcm = wav.samples
    # The 1.5 s pause sits between "it" and "Now": the energy check looks for speech after "it" ends plus a margin.
    onset = _speech_onset_ms(pcm, wav.sample_rate, it["end_ms"] + 1000)
    assert now["start_ms"] - it["end_ms"] >= 1400  # the pause is in the timings
    assert abs(now["start_ms"] - onset) <= 80, (now, onset)


def test_stream_chunks_carry_the_words_that_start_in_them(engine: Engine) -> None:
    req = engine.request(PLAIN + " It was a sunny day.", SpeechOptions())
    chunks = list(engine.iter_stream_chunks(req))
    names = [w.word for c in chunks for w in c.words]
    assert names == text_words(PLAIN) + ["It", "was", "a", "sunny", "day"]
    for chunk in chunks:
        assert all(0 <= w.start < chunk.pcm.size for w in chunk.words)


def test_numbers_and_joined_words_are_named_by_the_input() -> None:
    # espeak reads "42" as two words and joins "was a": every input word still gets its sounds, in order.
    assert owners(["paid", "42"], [3, 4, 3], lambda w: {"paid": 3, "42": 7}[w]) == [0] * 3 + [1] * 7
    assert owners(["was", "a"], [4], lambda w: {"was": 3, "a": 1}[w]) == [0, 0, 0, 1]


def test_subtitles_have_short_lines_and_follow_the_voice(client: TestClient) -> None:
    text = (
        "Subtitles should never run longer than two short lines. Each cue follows the voice closely, "
        "and a new sentence starts a new cue. This one is here to make the text long enough to need several cues."
    )
    srt = client.post("/tts", json={"text": text, "format": "srt"})
    assert srt.status_code == 200
    assert srt.headers["content-type"].startswith("application/x-subrip")
    blocks = srt.text.strip().split("\n\n")
    assert len(blocks) >= 3
    previous_end = -1
    for n, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(n)
        match = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", lines[1])
        assert match
        h1, m1, s1, f1, h2, m2, s2, f2 = map(int, match.groups())
        start, end = ((h1 * 60 + m1) * 60 + s1) * 1000 + f1, ((h2 * 60 + m2) * 60 + s2) * 1000 + f2
        assert previous_end <= start < end
        previous_end = end
        assert 1 <= len(lines[2:]) <= 2
        assert all(len(line) <= LINE_CHARS for line in lines[2:])
    vtt = client.post("/tts", json={"text": text, "format": "vtt"})
    assert vtt.text.startswith("WEBVTT\n\n")
    assert "-->" in vtt.text
    assert vtt.headers["content-type"].startswith("text/vtt")


def test_cues_break_at_sentence_ends_and_pauses() -> None:
    words = [
        WordTiming("One", 0, 100),
        WordTiming("two", 150, 300, ends_sentence=True),
        WordTiming("three", 400, 500),
        WordTiming("four", 30000, 30100),
    ]
    cues = subtitle_cues(words, 22050)
    assert [c.lines for c in cues] == [("One two",), ("three",), ("four",)]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_cannot_stream(fmt: str) -> None:
    with pytest.raises(ValidationFailed, match="subtitles"):
        stream_format(fmt, None)  # type: ignore[arg-type]
