"""Incremental text (LLM tokens, any split) cut into sentences as they complete, and those sentences, each
synthesized as its own request, heard as one speech."""

from __future__ import annotations

import re

import numpy as np

from tts_service.engine import SpeechChunk, SpeechRequest
from tts_service.engine.audio import silence
from tts_service.engine.text import split_complete
from tts_service.errors import ServiceBusy, TextTooLong
from tts_service.streaming.messages import EndMessage, FlushMessage, TextMessage

_SPACE_RE = re.compile(r"\s+")


class IncrementalText:
    """Pending text of one stream; `feed` returns the sentences it completed, `flush` hands over the rest."""

    def __init__(self, max_pending: int, pending: str = "") -> None:
        self.max_pending = max_pending
        self.pending = pending

    def feed(self, text: str, room: int | None = None) -> list[str]:
        """Append text; return the sentences now complete. State unchanged and TextTooLong if too much is pending,
        ServiceBusy if it completes more sentences than `room`."""
        sentences, rest = split_complete(self.pending + text)
        if len(rest) > self.max_pending:
            raise TextTooLong(
                f"{len(rest)} characters are pending without a sentence end; the limit is {self.max_pending}",
                limit=self.max_pending,
            )
        if room is not None and len(sentences) > room:
            raise ServiceBusy(
                f"{len(sentences)} more sentences would wait to be spoken with room for {max(0, room)}; "
                "send more text later"
            )
        self.pending = rest
        return sentences

    def flush(self) -> str | None:
        """The unfinished rest as a sentence to speak now (None when only whitespace is pending)."""
        rest = _SPACE_RE.sub(" ", self.pending).strip()
        self.pending = ""
        return rest or None

    def take(self, msg: TextMessage | FlushMessage | EndMessage, room: int | None = None) -> list[str]:
        """The sentences a message of an incremental stream makes ready to speak: those its text completes (at
        most `room`, as `feed`), or for `flush` and `end` the unfinished rest."""
        if isinstance(msg, TextMessage):
            return self.feed(msg.text, room)
        rest = self.flush()
        return [rest] if rest else []


def keep_sentence_gap(first: SpeechChunk, req: SpeechRequest) -> None:
    """Lead the first chunk of a sentence that follows another with the silence the engine puts between the
    sentences of one request: queued sentences are separate requests, and would otherwise run together."""
    if req.sentence_silence > 0:
        gap = silence(req.sentence_silence, first.sample_rate)
        first.pcm = np.concatenate([gap, first.pcm])
        # Word timings count samples from the chunk's start, which the silence has just moved.
        first.words = [word.shifted(gap.size) for word in first.words]
