"""Sentence cutting for whole and incremental text, and the phoneme cutter that bounds memory."""

from __future__ import annotations

import pytest

from tts_service.engine.text import cut_phonemes, split_complete, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. How are you? Fine!", ["Hello world.", "How are you?", "Fine!"]),
        ("Dr. Smith arrived. He was late.", ["Dr. Smith arrived.", "He was late."]),
        ("Take 3.5 liters, e.g. a bottle. Then go.", ["Take 3.5 liters, e.g. a bottle.", "Then go."]),
        ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
        ("It ended... Then silence.", ["It ended...", "Then silence."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ("no punctuation at all", ["no punctuation at all"]),
        ("Title\n\nBody text here.", ["Title", "Body text here."]),
        ("  spaced   out.  ", ["spaced out."]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_complete_waits_for_what_follows_a_terminator() -> None:
    # GIVEN text whose last period may still become a decimal or an abbreviation
    # WHEN it is split incrementally
    done, rest = split_complete("It costs 3.")
    # THEN nothing is spoken yet
    assert done == []
    assert rest == "It costs 3."
    done, rest = split_complete("It costs 3.5 dollars. And")
    assert done == ["It costs 3.5 dollars."]
    assert rest.strip() == "And"


def test_word_by_word_feed_gives_the_same_sentences_as_the_whole_text() -> None:
    text = "Dr. Brown paid 3.5 dollars, e.g. a coffee. Wait... was that all? Yes! The end."
    spoken: list[str] = []
    pending = ""
    for word in text.split(" "):
        pending += word + " "
        done, pending = split_complete(pending)
        spoken += done
    spoken += split_sentences(pending)
    assert spoken == split_sentences(text)


def test_cut_phonemes_bounds_every_piece_and_keeps_every_phoneme() -> None:
    words = [list("ab") + [" "], list("cde") + [",", " "], list("fgh") + [" "]] * 60
    phonemes = [p for w in words for p in w][:-1]
    pieces = list(cut_phonemes(phonemes, 50))
    assert all(0 < len(p) <= 50 for p in pieces)
    # Only the spaces at the cuts are dropped.
    assert [p for piece in pieces for p in piece if p != " "] == [p for p in phonemes if p != " "]
    # Cuts prefer clause boundaries: most pieces end at a comma.
    assert sum(piece[-1] == "," for piece in pieces[:-1]) >= len(pieces) // 2


def test_cut_phonemes_hard_cuts_a_run_without_spaces() -> None:
    pieces = list(cut_phonemes(list("x" * 130), 50))
    assert [len(p) for p in pieces] == [50, 50, 30]


def test_short_sentence_is_not_cut() -> None:
    assert list(cut_phonemes(list("short one"), 50)) == [list("short one")]
