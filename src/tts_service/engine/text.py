"""Cutting text into sentences, and over-long sentences into pieces Piper can synthesize in bounded memory."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Words after which a period does not end a sentence. Lower-case, without the final period.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs etc e.g i.e a.m p.m inc ltd corp co no vol fig approx dept est
    jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k
    """.split()
)

# Control characters that are not whitespace, and unpaired surrogates: espeak-ng cannot take them (NUL ends its
# C string, a surrogate has no UTF-8), and no reader speaks them.
_UNSPEAKABLE_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff]")

_TERMINATORS = ".!?…。！？"
_CLOSERS = "\"')]}»”’"
_SPACE_RE = re.compile(r"\s+")


def find_unspeakable(text: str) -> int | None:
    """The index of the first character no voice can take (a non-whitespace control character or an unpaired
    surrogate), or None."""
    found = _UNSPEAKABLE_RE.search(text)
    return None if found is None else found.start()


def drop_unspeakable(text: str) -> str:
    """`text` with every such character replaced by a space (for text the service did not get from a client)."""
    return _UNSPEAKABLE_RE.sub(" ", text)


def _ends_sentence(text: str, i: int) -> bool:
    """Whether the terminator at text[i] ends a sentence, given everything up to and just after it."""
    char = text[i]
    if char == ".":
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if prev.isdigit() and nxt.isdigit():
            return False  # decimal: 3.5
        if prev == "." or nxt == ".":
            return False  # part of an ellipsis written as dots; the last dot decides below
        word_start = i
        while word_start > 0 and not text[word_start - 1].isspace():
            word_start -= 1
        word = text[word_start:i].lstrip(_CLOSERS + "(\"'").lower()
        if word in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. R. R. Tolkien"
    return True


def _boundary_end(text: str, i: int) -> int | None:
    """If a sentence ends at text[i], the index just past it (closing quotes included); else None."""
    if text[i] not in _TERMINATORS:
        return None
    if text[i] == "." and i + 1 < len(text) and text[i + 1] == ".":
        return None
    if text[i] == "." and i >= 2 and text[i - 1] == "." and text[i - 2] == ".":
        # "..." ends a sentence only when a capital letter follows: "Wait... what" goes on.
        j = i + 1
        while j < len(text) and text[j] in _CLOSERS:
            j += 1
        k = j
        while k < len(text) and text[k].isspace():
            k += 1
        if k >= len(text) or not text[k].isupper():
            return None
        return j
    if not _ends_sentence(text, i):
        return None
    j = i + 1
    while j < len(text) and text[j] in _TERMINATORS:
        j += 1  # "?!" and "!!!" end once
    while j < len(text) and text[j] in _CLOSERS:
        j += 1
    return j


def split_complete(text: str) -> tuple[list[str], str]:
    """Split off the sentences of `text` known to be complete; return them and the unfinished rest.

    A terminator only counts once whitespace follows it, because the next token might still turn "3." into
    "3.5" or "Dr" into "Dr.": incremental text (LLM tokens) arrives in arbitrary pieces.
    """
    sentences: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        end = _boundary_end(text, i)
        if end is not None and end < len(text) and text[end].isspace():
            sentence = _SPACE_RE.sub(" ", text[start:end]).strip()
            if sentence:
                sentences.append(sentence)
            start = end
            i = end
            continue
        if text[i] == "\n" and i + 1 < len(text) and text[i + 1] == "\n":
            # A blank line ends a paragraph (and a sentence) even without punctuation: headings, list items.
            sentence = _SPACE_RE.sub(" ", text[start:i]).strip()
            if sentence:
                sentences.append(sentence)
            start = i + 2
            i = start
            continue
        i += 1
    return sentences, text[start:]


def split_sentences(text: str) -> list[str]:
    """All sentences of a complete text, in order; the tail counts as a sentence."""
    sentences, rest = split_complete(text)
    rest = _SPACE_RE.sub(" ", rest).strip()
    return [*sentences, rest] if rest else sentences


_SOFT_BREAKS = frozenset(",;:—–")


def cut_phonemes(phonemes: list[str], limit: int) -> Iterator[list[str]]:
    """Cut one sentence's phonemes into pieces of at most `limit`, preferring clause then word boundaries.

    Piper's memory grows faster than the sentence length (2.9 GB for 410 unpunctuated words), so a sentence
    is never handed to the model whole when it is longer than `limit` phonemes.
    """
    rest = phonemes
    while len(rest) > limit:
        window = rest[:limit]
        cut = _last_of(window, _SOFT_BREAKS, limit // 2)
        if cut is None:
            cut = _last_of(window, _WORD_BREAK, limit // 2)
        if cut is None:
            cut = limit - 1
        piece, rest = _strip(rest[: cut + 1]), _strip(rest[cut + 1 :])
        if piece:
            yield piece
    if rest:
        yield rest


_WORD_BREAK = frozenset(" ")


def _last_of(items: list[str], wanted: frozenset[str], floor: int) -> int | None:
    for idx in range(len(items) - 1, floor - 1, -1):
        if items[idx] in wanted:
            return idx
    return None


def _strip(items: list[str]) -> list[str]:
    start, end = 0, len(items)
    while start < end and items[start] == " ":
        start += 1
    while end > start and items[end - 1] == " ":
        end -= 1
    return items[start:end]
