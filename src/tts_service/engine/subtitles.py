"""Subtitles from word timings: SubRip and WebVTT cues of at most two lines of 42 characters.

42 characters a line and two lines a cue are the usual broadcast limits (and what most players wrap to). A cue
also ends at the end of a sentence and where the speech pauses, so captions follow the voice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from tts_service.engine.words import WordTiming

SUBTITLE_MEDIA_TYPES: Final = {"srt": "application/x-subrip", "vtt": "text/vtt"}
LINE_CHARS = 42
LINES = 2
_PAUSE_MS = 700


def ms(samples: int, sample_rate: int) -> int:
    return round(1000 * samples / sample_rate)


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def _wrap(words: Sequence[str]) -> list[str] | None:
    """The words on lines of at most LINE_CHARS (a longer word gets a line of its own); None past LINES lines."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= LINE_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines if len(lines) <= LINES else None


def subtitle_cues(words: Sequence[WordTiming], sample_rate: int) -> list[Cue]:
    """Group timed words into cues; a cue closes when the next word would not fit, after a sentence, or at a pause."""
    cues: list[Cue] = []
    current: list[WordTiming] = []

    def close() -> None:
        if current:
            lines = _wrap([w.word for w in current]) or [" ".join(w.word for w in current)]
            cues.append(Cue(ms(current[0].start, sample_rate), ms(current[-1].end, sample_rate), tuple(lines)))
            current.clear()

    for word in words:
        if current:
            pause = ms(word.start - current[-1].end, sample_rate) >= _PAUSE_MS
            if pause or _wrap([w.word for w in [*current, word]]) is None:
                close()
        current.append(word)
        if word.ends_sentence:
            close()
    close()
    return cues


def _clock(value_ms: int, separator: str) -> str:
    hours, rest = divmod(value_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def render_subtitles(cues: Sequence[Cue], kind: Literal["srt", "vtt"]) -> str:
    """The cues as a SubRip (numbered, comma before milliseconds) or WebVTT (header, dot) document."""
    blocks = []
    for n, cue in enumerate(cues, start=1):
        sep = "," if kind == "srt" else "."
        timing = f"{_clock(cue.start_ms, sep)} --> {_clock(cue.end_ms, sep)}"
        body = "\n".join(cue.lines)
        blocks.append(f"{n}\n{timing}\n{body}" if kind == "srt" else f"{timing}\n{body}")
    head = "" if kind == "srt" else "WEBVTT\n\n"
    return head + "\n\n".join(blocks) + ("\n" if blocks else "")
