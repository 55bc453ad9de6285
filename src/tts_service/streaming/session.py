"""Incremental text (LLM tokens, any split) cut into sentences as they complete."""

from __future__ import annotations

import re

from tts_service.engine.text import split_complete
from tts_service.errors import ServiceBusy, TextTooLong

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
