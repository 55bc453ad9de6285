"""Word timings: Piper's per-phoneme durations, grouped into the words espeak spoke, named by the input's words.

The frontend gives the frames of every phoneme id (the durations Piper itself aligns by). espeak separates
spoken words with a space phoneme, so a piece's phonemes group into phoneme words with a start and an end. The
input's words are matched to them in order: one to one when the counts agree (plain prose), otherwise by how
many phoneme words espeak makes of each input word alone ("42" is "forty two", "Dr." is "doctor").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BOS, EOS, PAD, SPACE = "^", "$", "_", " "
# Phonemes that are pauses, not sounds of a word: a word ends before them.
_PAUSES = frozenset(',.;:!?¡¿—…"«»“”()-')
_WORD_RE = re.compile(r"\S+")
_EDGE_PUNCT = "\"'“”‘’«»()[]{}.,;:!?¡¿…—–-"


@dataclass(frozen=True)
class WordTiming:
    """A spoken word and where it sounds, in samples from the start of its chunk."""

    word: str
    start: int
    end: int
    ends_sentence: bool = False

    def shifted(self, samples: int) -> WordTiming:
        return WordTiming(self.word, self.start + samples, self.end + samples, self.ends_sentence)


def text_words(text: str) -> list[str]:
    """The words of a text as a listener would name them: punctuation at their edges removed, none empty."""
    words = (m.group().strip(_EDGE_PUNCT) for m in _WORD_RE.finditer(text))
    return [w for w in words if any(ch.isalnum() for ch in w)]


def is_sound(phoneme: str) -> bool:
    return phoneme != SPACE and phoneme not in _PAUSES


def sound_spans(
    phonemes: Sequence[str], durations: npt.NDArray[np.int64], id_map: Mapping[str, Sequence[int]], hop: int
) -> list[tuple[int, int]]:
    """(start, end) samples of each sound phoneme of one piece (spaces and pauses skipped), from the frames of
    its phoneme ids. Follows piper's phonemes_to_ids: BOS and a pad, then each known phoneme and a pad, then EOS.
    """
    pad = len(id_map.get(PAD, ()))
    frames = durations.tolist()
    pos = len(id_map.get(BOS, ())) + pad
    sample = sum(frames[:pos]) * hop
    spans: list[tuple[int, int]] = []
    for phoneme in phonemes:
        if phoneme not in id_map:
            continue  # piper skips it too
        n = len(id_map[phoneme]) + pad
        # The pad after a phoneme is the transition to the next one: the phoneme's own sound is its ids alone.
        own = sum(frames[pos : pos + len(id_map[phoneme])]) * hop
        if is_sound(phoneme):
            spans.append((sample, sample + own))
        sample += sum(frames[pos : pos + n]) * hop
        pos += n
    return spans


def sounds_of(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> int:
    return sum(1 for p in phonemes if p in id_map and is_sound(p))


def word_groups(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> list[int]:
    """How many sounds each phoneme word (espeak's space-separated groups) of a piece has."""
    groups: list[int] = []
    inside = False
    for phoneme in phonemes:
        if phoneme == SPACE:
            inside = False
        elif phoneme in id_map and is_sound(phoneme):
            if not inside:
                groups.append(0)
                inside = True
            groups[-1] += 1
    return groups


def owners(words: Sequence[str], groups: Sequence[int], solo: Callable[[str], int]) -> list[int]:
    """For each sound phoneme of a sentence, the index of the input word it belongs to.

    `groups`: sounds per phoneme word, across the sentence's pieces. When espeak spoke one phoneme word per input
    word they pair up. Otherwise (it joins unstressed words, "was a" -> "wʌzɐ", and reads "42" as two words)
    the sounds are shared out in order, in proportion to the sounds each word has when spoken alone (`solo`).
    """
    total = sum(groups)
    if not words or total <= 0:
        return []
    if len(groups) == len(words):
        return [i for i, n in enumerate(groups) for _ in range(n)]
    lengths = [max(1, solo(w)) for w in words]
    bounds = [round(total * sum(lengths[: i + 1]) / sum(lengths)) for i in range(len(lengths))]
    counts = [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
    return [i for i, n in enumerate(counts) for _ in range(n)]


def timings(
    words: Sequence[str], owner: Sequence[int], spans: Sequence[tuple[int, int]], ends_sentence: bool = False
) -> list[WordTiming]:
    """Word timings of one piece: consecutive sounds of one input word joined; the last one marked when the piece
    ends its sentence."""
    out: list[WordTiming] = []
    last = -1
    for index, (start, end) in zip(owner, spans, strict=False):
        if index == last and out:
            out[-1] = WordTiming(out[-1].word, out[-1].start, end, out[-1].ends_sentence)
        else:
            out.append(WordTiming(words[index], start, end))
        last = index
    if ends_sentence and out:
        out[-1] = WordTiming(out[-1].word, out[-1].start, out[-1].end, True)
    return out
