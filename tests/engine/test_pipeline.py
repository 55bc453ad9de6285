"""Where a request's pieces are decoded: the all-core head sessions take the piece that would otherwise keep one
core busy while the others wait."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tts_service.engine import Engine
from tts_service.engine.pipeline import Synthesis

LONG = "The committee reviewed every proposal carefully, weighing the costs, the risks and the benefits of each"
SHORT = "Then it voted."


def head_decodes(engine: Engine, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], int]:
    """Synthesize `text` alone; (samples of each piece decoded on the head sessions, samples made)."""
    on_head: dict[int, int] = {}
    original = Synthesis._decode_on_head

    def recorded(self: Synthesis, state: Any, a: int, b: int) -> Any:
        hop = self.voice.graphs.hop if self.voice.graphs is not None else 0
        on_head[id(state)] = state.frames * hop  # a piece longer than a window comes in several calls
        return original(self, state, a, b)

    monkeypatch.setattr(Synthesis, "_decode_on_head", recorded)
    speech = engine.synthesize_blocking(engine.request(text))
    return list(on_head.values()), int(speech.pcm.size)


def test_a_long_sentence_before_a_short_one_decodes_on_the_head(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:4]
    on_head, samples = head_decodes(engine, f"{LONG} {tag}. {SHORT}", monkeypatch)
    # The long first sentence is the most work left once both are handed over: it goes to the head, the short
    # one to a single worker.
    assert len(on_head) == 1
    assert on_head[0] > samples / 2


def test_equal_sentences_keep_single_threaded_workers_until_the_last(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:4]
    sentences = [f"Sentence number {n} of this test {tag} has about the same length as the others." for n in range(6)]
    on_head, samples = head_decodes(engine, " ".join(sentences), monkeypatch)
    # Six similar pieces keep both workers busy; at most the last two (the work left at the end) use the head.
    assert len(on_head) <= 2
    assert samples > 6 * 22050  # all six were made
