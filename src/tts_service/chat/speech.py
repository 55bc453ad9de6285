"""Turning an LLM's written reply into text worth speaking: no markdown symbols, code or raw URLs read aloud."""

from __future__ import annotations

import re

from tts_service.engine.text import drop_unspeakable, split_sentences

_FENCE_RE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]*\)")
# A URL never ends in sentence punctuation: "see https://x.org." keeps its full stop.
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>()\]]*[^\s<>()\].,;:!?'\"]")
_INLINE_CODE_RE = re.compile(r"`([^`]*)`")
_EMPHASIS_RE = re.compile(r"(?<!\w)(\*\*|__|\*|~~)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_LINE_MARK_RE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|[-*+•][ \t]+|\d+[.)][ \t]+)", re.MULTILINE)
_TABLE_RE = re.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$", re.MULTILINE)
# Emoji and pictographs: Piper would read them as nothing or as their names.
_SYMBOL_RE = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d]")
_LEFTOVER_RE = re.compile(r"(?<!\w)[*_]+|[*_]+(?!\w)|[#|`~<>\[\]{}]")
_SPACE_RE = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"[ \t]+([.,!?;:])")


def speakable(text: str) -> str:
    """The words of `text` without formatting, keeping sentence punctuation and paragraph breaks."""
    text = drop_unspeakable(text)  # an LLM may write anything; no voice takes a NUL or a lone surrogate
    text = _FENCE_RE.sub(" ", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _URL_RE.sub("link", text)
    text = _INLINE_CODE_RE.sub(r"\1", text)
    text = _EMPHASIS_RE.sub(r"\2", text)
    text = _TABLE_RE.sub("", text)
    text = _LINE_MARK_RE.sub("", text)
    text = _SYMBOL_RE.sub("", text)
    text = _LEFTOVER_RE.sub(" ", text)
    text = _SPACE_RE.sub(" ", text)
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text).strip()


def speech_text(reply: str, limit: int) -> str:
    """What to speak of a whole reply: formatting removed, whole sentences up to the synthesis limit ("" when
    nothing in it is a word)."""
    text = speakable(reply)
    if not any(ch.isalnum() for ch in text):
        return ""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for sentence in split_sentences(text):
        if used + len(sentence) + 1 > limit:
            break
        kept.append(sentence)
        used += len(sentence) + 1
    return " ".join(kept) or text[:limit]
